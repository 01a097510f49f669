"""Local results store: one folder per run, written atomically, read back as pandas frames.

Layout: ``<out>/<experiment>/<run_id>/`` holding ``run.json`` (config, status, final metrics,
timings, versions), ``metrics.parquet`` (tidy: step, split, metric, value),
``gradflow.parquet`` (step, loss, layer, state, t, lag, norm [, pNN percentiles]) and, while the run
lives, its lock ``run.lock``. The loader reports a ``running`` run whose lock is free as ``dead``. Each run writes only its
own folder, so parallel workers never contend; every file is written to a temporary name and
renamed, so a killed run leaves whole files.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from rnnstudy.names import DEAD, FAILED, RUNNING, SUPERSEDED, VAL
from rnnstudy.run.record import RunInfo

RUN_FILE = "run.json"
METRICS_FILE = "metrics.parquet"
GRADFLOW_FILE = "gradflow.parquet"
#: Held (flock) by the process that runs a run, for as long as it runs; the OS drops it when that process dies.
LOCK_FILE = "run.lock"
#: run.json's size on disk at least (JSON and trailing blanks): room its final record is written into in place when
#: the disk is full.
RECORD_RESERVE = 16384


def read_info(folder: Path) -> RunInfo:
    """A run folder's run.json as its typed record (raises OSError/ValueError when it is missing or damaged)."""
    return RunInfo.model_validate_json((Path(folder) / RUN_FILE).read_bytes())


def hold(folder: Path) -> Any | None:
    """Take a run folder's lock for as long as the returned handle is open; None when another process holds it."""
    handle = open(folder / LOCK_FILE, "a")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def alive(folder: Path) -> bool:
    """Whether a process holds the run's lock now (read-only: creates nothing)."""
    try:
        handle = open(Path(folder) / LOCK_FILE)  # noqa: SIM115
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def _atomic(path: Path, write: Any) -> None:
    """Write ``path`` through a temporary file beside it; an OSError names ``path`` itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        # A library's own message (pyarrow's "Error writing bytes to file") names no file, the temporary file's is ours.
        if err.filename in (None, tmp):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _write_record(path: Path, data: dict[str, Any]) -> None:
    """Write run.json atomically, padded with trailing blanks to :data:`RECORD_RESERVE` bytes; on a full disk, over
    the bytes the file already holds (the last record of a run that cannot write anything new still lands)."""
    text = json.dumps(data, indent=2, allow_nan=True).encode()

    def write(tmp: str) -> None:
        Path(tmp).write_bytes(text.ljust(RECORD_RESERVE - 1) + b"\n")

    try:
        _atomic(path, write)
    except OSError as err:
        size = path.stat().st_size if path.is_file() else 0
        if err.errno not in (errno.ENOSPC, errno.EDQUOT) or size <= len(text):
            raise
        with open(path, "r+b") as f:  # blocks the file already has: nothing to allocate
            f.write(text.ljust(size - 1) + b"\n")
            f.flush()
            os.fsync(f.fileno())


def write_frame(path: Path, frame: pd.DataFrame) -> None:
    """Write a parquet file atomically."""
    _atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))


class RunWriter:
    """Accumulates one run's rows in memory and flushes them to its folder atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.info: RunInfo | None = None
        self.metrics: list[tuple[int, str, str, float]] = []
        self.gradflow: list[pd.DataFrame] = []
        folder.mkdir(parents=True, exist_ok=True)

    def resume(self, step: int | None) -> None:
        """Continue an unfinished run from its checkpoint at ``step``: keep what it recorded before, drop the rest; with
        no checkpoint (``None``) it starts again and keeps nothing.

        Kept: training and probe rows of steps before ``step`` and validations up to it (the checkpoint
        is written right after the validation at ``step``).
        """
        self.info = read_info(self.folder)
        if step is None:
            for name in (METRICS_FILE, GRADFLOW_FILE):
                (self.folder / name).unlink(missing_ok=True)
            return
        if (self.folder / METRICS_FILE).exists():
            m = pd.read_parquet(self.folder / METRICS_FILE)
            m = m[(m["step"] < step) | ((m["split"] == VAL) & (m["step"] <= step))]
            self.metrics = list(m.itertuples(index=False, name=None))
        if (self.folder / GRADFLOW_FILE).exists():
            g = pd.read_parquet(self.folder / GRADFLOW_FILE)
            self.gradflow = [g[g["step"] < step]]

    def add_metrics(self, step: int, split: str, values: dict[str, float]) -> None:
        """Record scalar metrics of one split at one step."""
        self.metrics.extend((step, split, name, float(v)) for name, v in values.items())

    def add_gradflow(self, frame: pd.DataFrame) -> None:
        """Record one probe's profile rows."""
        self.gradflow.append(frame)

    def flush(self, info: RunInfo | None = None) -> None:
        """Rewrite every file, run.json from ``info`` when given (else the record last written)."""
        self.info = info or self.info
        if self.metrics:
            frame = pd.DataFrame(self.metrics, columns=["step", "split", "metric", "value"])
            write_frame(self.folder / METRICS_FILE, frame)
        if self.gradflow:
            write_frame(self.folder / GRADFLOW_FILE, pd.concat(self.gradflow, ignore_index=True))
        if self.info is not None:
            _write_record(self.folder / RUN_FILE, self.info.as_json())

    def write_record(self, info: RunInfo) -> None:
        """Rewrite run.json alone (its data files could not be written)."""
        self.info = info
        _write_record(self.folder / RUN_FILE, info.as_json())


class Stored(NamedTuple):
    """A run read back: its folder and its record (status as it stands now, :func:`status_of`)."""

    path: Path
    info: RunInfo


@dataclass
class Results:
    """A results store read back: the typed records, one row per run (run.json flattened), the tidy metric/profile rows."""

    records: list[Stored]
    runs: pd.DataFrame
    metrics: pd.DataFrame
    gradflow: pd.DataFrame
    #: Run folders that could not be read: (folder, why); the rest of the store is still read.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Earlier, unfinished attempts at a run another folder of the same key holds (:func:`superseded`), left out.
    superseded: list[str] = field(default_factory=list)

    def wide_metrics(self, split: str) -> pd.DataFrame:
        """Metrics of one split as columns, one row per (run, step)."""
        rows = self.metrics[self.metrics["split"] == split]
        return rows.pivot_table(index=["run_id", "step"], columns="metric", values="value").reset_index()


def run_folders(path: str | Path) -> list[Path]:
    """Every run folder at or under ``path`` (a results root, an experiment, or one run)."""
    path = Path(path)
    return sorted(p.parent for p in path.rglob(RUN_FILE) if "wandb" not in p.relative_to(path).parts)


def status_of(folder: Path, info: RunInfo | None = None) -> str:
    """A run's status as it stands now: run.json's, except ``dead`` for a ``running`` run whose lock is free."""
    status = (info or read_info(folder)).status
    return DEAD if status == RUNNING and not alive(folder) else status


def superseded(runs: list[tuple[Path, RunInfo]]) -> set[Path]:
    """The folders that are earlier attempts at a run: unfinished (``dead`` or failed) while another folder of the same
    key ended, trains, or started later. A run killed before its first checkpoint by a harness older than the one that
    trains such runs again in their own folder left them; they are derived here, as ``dead`` is, and never rewritten."""
    by_key: dict[str, list[tuple[Path, RunInfo]]] = {}
    for folder, info in runs:
        by_key.setdefault(info.key, []).append((folder, info))
    out = set()
    for same in by_key.values():
        if len(same) < 2:
            continue
        held = [f for f, i in same if i.status not in (DEAD, FAILED)]
        keep = set(held) or {max(same, key=lambda fi: fi[1].started)[0]}
        out |= {f for f, i in same if f not in keep and i.status in (DEAD, FAILED)}
    return out


def status_counts(path: str | Path) -> dict[str, int]:
    """How many runs at or under ``path`` have each status (:func:`status_of`; ``unreadable`` for damaged ones, and
    ``superseded`` for an earlier attempt at a run, :func:`superseded`)."""
    counts: dict[str, int] = {}
    read = []
    for folder in run_folders(path):
        try:
            info = read_info(folder)
            read.append((folder, info.model_copy(update={"status": status_of(folder, info)})))
        except (OSError, ValueError):
            counts["unreadable"] = counts.get("unreadable", 0) + 1
    earlier = superseded(read)
    for folder, info in read:
        status = SUPERSEDED if folder in earlier else info.status
        counts[status] = counts.get(status, 0) + 1
    return counts


def _read_run(folder: Path) -> tuple[RunInfo, list[pd.DataFrame | None]]:
    info = read_info(folder)
    info = info.model_copy(update={"status": status_of(folder, info)})
    frames = [
        pd.read_parquet(folder / name).assign(run_id=info.run_id) if (folder / name).exists() else None
        for name in (METRICS_FILE, GRADFLOW_FILE)
    ]
    return info, frames


def load(*paths: str | Path) -> Results:
    """Read every run under the given folders (results roots, experiments or runs) into frames keyed by ``run_id``.

    A run whose files cannot be read (truncated, not JSON, not parquet) is skipped and listed in ``skipped``.
    """
    records, metrics, gradflow, skipped = [], [], [], []
    for folder in sorted({f for path in paths for f in run_folders(path)}):
        try:
            info, (m, g) = _read_run(folder)
        except Exception as err:  # any damage to one run must not hide the others
            skipped.append((str(folder), f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"))
            continue
        records.append(Stored(folder, info))
        metrics += [m] if m is not None else []
        gradflow += [g] if g is not None else []
    earlier = superseded([(r.path, r.info) for r in records])
    if earlier:
        gone = {r.info.run_id for r in records if r.path in earlier}
        records = [r for r in records if r.path not in earlier]
        metrics = [m for m in metrics if not m["run_id"].isin(gone).any()]
        gradflow = [g for g in gradflow if not g["run_id"].isin(gone).any()]
    empty_metrics = pd.DataFrame(columns=["step", "split", "metric", "value", "run_id"])
    empty_gradflow = pd.DataFrame(columns=["step", "loss", "layer", "state", "t", "norm", "run_id"])
    rows = [{**r.info.as_json(), "path": str(r.path)} for r in records]
    return Results(
        records=records,
        runs=pd.json_normalize(rows) if rows else pd.DataFrame(),
        metrics=pd.concat(metrics, ignore_index=True) if metrics else empty_metrics,
        gradflow=pd.concat(gradflow, ignore_index=True) if gradflow else empty_gradflow,
        skipped=skipped,
        superseded=sorted(map(str, earlier)),
    )
