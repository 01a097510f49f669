"""A run's folder in the results store, owned by one module: the run's identity (its one name, its study's name, its
key), the folder it trains in (a new one; the same run read back once it ended, resumed from its checkpoint when it was
killed, and claimed while one process trains it, so no run is trained twice or lost), and its record while it trains,
packed or alone: what it was made with, its sinks (results store, W&B) and its final write. No torch import: the
config path and the report read names and keys from here without it."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import math
import os
import platform
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rnnstudy.model import inits
from rnnstudy.names import COMPLETE, DEAD, DIVERGED, FAILED, NORM_LOSS, PROBE, RUNNING, SWEEP_COMMAND_ENV, VAL
from rnnstudy.run.config import LATER_FIELDS, RunConfig
from rnnstudy.run.device import device_name
from rnnstudy.run.record import Packing, Provenance, RunInfo, StudyFacts
from rnnstudy.run.store import RUN_FILE, RunWriter, hold, read_info

if TYPE_CHECKING:
    from rnnstudy.model.tasks import Task

#: The fields of run.json a recorded run is read back from.
RESULT_FIELDS = ("run_id", "status", "reason", "final", "best", "steps", "steps_to_solve", "wall_s")
#: The fields of run.json that say how the run was made; W&B's config carries the same, under the same names.
MADE_FIELDS = {"probe_method", "tf32", "deterministic", "versions", "provenance", "command", "launched_by", "device",
               "packed"}  # fmt: skip


def schemes(cfg: RunConfig) -> str:
    """The run's initialisation schemes in a name: ``orthogonal``, ``default+chrono``."""
    return inits.schemes_name(cfg.init.recurrent, cfg.init.bias)


def run_name(cfg: RunConfig, meta: dict[str, Any] | None = None) -> str:
    """A run's one name, shown everywhere (its folder, run.json, W&B, the progress lines): [stage-]cell-task-T-init
    [-axis=value]-s<seed>[-t<trial>]. A study's run says its family and the value it is held at (a calibration's: its
    lr); a searched study's, its trial, whose parameters tell its runs apart; a hand run, its schemes."""
    meta = meta or {}
    if not meta.get("study"):
        return f"{cfg.model.cell}-{cfg.task.name}-T{cfg.task.T}-{schemes(cfg)}-s{cfg.seed}"
    value = meta.get("value")
    setting = f"-{meta['axis'].split('.')[-1]}={value:g}" if meta.get("axis") else ""
    family = meta.get("family") or schemes(cfg)
    stage = f"{meta['stage']}-" if meta.get("stage") else ""
    trial = f"-t{meta['trial']}" if meta.get("params") and "trial" in meta else ""
    return f"{stage}{cfg.model.cell}-{cfg.task.name}-T{cfg.task.T}-{family}{setting}-s{cfg.seed}{trial}"


def command_line() -> str:
    """This process's command line, the program by name (no path of this box)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def study_name(experiment: str, cfg: RunConfig, stage: str = "", family: str = "", setting: str = "", row: str = "") -> str:
    """A study's name, for people: experiment/[stage/]cell/task/T=../[family/][setting/][row] (a hand run's: its
    experiment, cell, task and T)."""
    parts = [experiment, stage, cfg.model.cell, cfg.task.name, f"T={cfg.task.T}", family, setting, row]
    return "/".join(p for p in parts if p)


CHECKPOINT = Path("checkpoints") / "last.ckpt"
#: The folder (under the experiment's results) of the per-run-key claim locks.
KEYS = ".keys"
#: The folder (under the experiment's results) of packed runs' shared checkpoints.
PACKS = ".packs"


def run_key(cfg: RunConfig, meta: dict[str, Any] | None, device: str = "cpu") -> str:
    """What makes two runs the same run: the config, the study's facts and the device type it trains on, not the trial
    number (a retry is the same run). A CPU run's key is the key it always had; another device type's adds it, so a
    run recorded on a CPU is never read back into a GPU study, nor resumed from a CPU checkpoint (whose generator
    state a CUDA generator cannot take)."""
    facts = {k: v for k, v in (meta or {}).items() if k != "trial"}
    if device != "cpu":
        facts["device"] = device
    config = cfg.model_dump(mode="json")
    for section, names in LATER_FIELDS.items():
        defaults = type(getattr(cfg, section))()
        for name in names:
            if getattr(getattr(cfg, section), name) == getattr(defaults, name):
                del config[section][name]
    text = json.dumps({"config": config, "meta": facts}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _same_named(cfg: RunConfig, meta: dict[str, Any] | None) -> list[tuple[Path, RunInfo]]:
    """The readable run folders of the experiment that carry this run's name but for its trial (only they can hold the
    same run: a retried trial reaches the runs of the trial before it)."""
    out = []
    untried = {k: v for k, v in (meta or {}).items() if k != "trial"}
    for info_path in sorted((cfg.out / cfg.experiment).glob(f"*-{run_name(cfg, untried)}*/{RUN_FILE}")):
        try:
            out.append((info_path.parent, read_info(info_path.parent)))
        except (OSError, ValueError):
            continue
    return out


def recorded(cfg: RunConfig, meta: dict[str, Any] | None, key: str) -> tuple[Path, RunInfo] | None:
    """The folder and run.json of a run of the same key that already ended as a result (complete or diverged)."""
    for folder, info in _same_named(cfg, meta):
        if info.key == key and info.status in (COMPLETE, DIVERGED):
            return folder, info
    return None


@contextmanager
def claimed(cfg: RunConfig, key: str) -> Iterator[None]:
    """Hold the claim on a run key for as long as this process trains it; another process waits here until it is free.

    The claim is a lock file per key under the experiment's ``.keys`` folder (flock, dropped by the OS when the
    process dies), so two workers that reach the same run at once never both train it.
    """
    folder = cfg.out / cfg.experiment / KEYS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def unfinished(cfg: RunConfig, meta: dict[str, Any] | None, key: str) -> tuple[Path, Any] | None:
    """An unfinished, unlocked run of the same key (killed, or ended by a stop signal or a failure) and its lock; None
    when there is none. Its folder is the run's: trained again there, from its checkpoint or from the start."""
    for folder, info in _same_named(cfg, meta):
        if info.key == key and info.status in (RUNNING, FAILED):
            lock = hold(folder)
            if lock is not None:
                return folder, lock
    return None


def checkpoint_and_folders(
    cfgs: list[RunConfig], metas: list[dict[str, Any] | None], keys: list[str], todo: list[int]
) -> tuple[Path | None, dict[int, tuple[Path, Any]], int | None]:
    """Where the run's (or pack's) checkpoint goes, the unfinished runs' folders to train in again, and the step they
    resume at (None: from the start, as for a run killed before its first checkpoint).

    A single run keeps its checkpoint in its folder; a pack keeps one for all its members under the experiment's
    ``.packs``, named by its members' keys. A pack resumes only when every member still to train has its folder.
    """
    import torch  # loaded already by the training that asks

    cfg = cfgs[0]
    folders = {i: found for i in todo if (found := unfinished(cfgs[i], metas[i], keys[i]))}
    if not cfg.train.checkpoint:
        return None, folders, None
    if len(cfgs) == 1:
        path = folders[0][0] / CHECKPOINT if folders else None
    else:
        path = cfg.out / cfg.experiment / PACKS / hashlib.sha1(" ".join(keys).encode()).hexdigest()[:16] / CHECKPOINT.name
    if path is None or not path.exists():
        return path, folders, None
    if len(folders) < len(todo):  # a member's folder is gone: the pack starts again, in the folders it still has
        path.unlink()
        return path, folders, None
    return path, folders, int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def new_run_id(cfg: RunConfig, meta: dict[str, Any] | None) -> str:
    """A unique, sortable run id: the time it started, the run's name, and a random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{run_name(cfg, meta)}-{secrets.token_hex(3)}"


@dataclass
class RunResult:
    """What one run ended with; the same numbers are in its ``run.json``."""

    run_id: str
    path: Path
    status: str
    reason: str | None
    final: dict[str, float]
    best: dict[str, float]
    steps: int
    steps_to_solve: int | None
    wall_s: float
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def solved(self) -> bool:
        """Whether any validation met the task's criterion."""
        return self.steps_to_solve is not None


class StoreSink:
    """Sends a run's numbers to its results-store folder; flushes at every validation."""

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer

    def metrics(self, step: int, split: str, values: dict[str, float]) -> None:
        self.writer.add_metrics(step, split, values)
        if split == VAL:
            self.writer.flush()

    def profile(self, step: int, frame: pd.DataFrame, scalars: dict[str, float]) -> None:
        self.writer.add_gradflow(frame)
        self.writer.add_metrics(step, PROBE, scalars)


@functools.cache
def source_revision() -> tuple[str | None, bool | None]:
    """The git commit of the rnnstudy checkout and whether its tree is dirty (None outside a git checkout); once a process."""
    package = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=package.parent, capture_output=True,
                                    text=True, check=True).stdout.strip())  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, dirty


def provenance(parameters: int) -> Provenance:
    """Where a run's code came from (git commit, dirty tree; None outside a git checkout) and its parameter count."""
    commit, dirty = source_revision()
    return Provenance(commit=commit, dirty=dirty, parameters=parameters)


def versions() -> dict[str, str]:
    """Library versions recorded with every run (W&B's from its metadata: a run without W&B need not import it)."""
    import lightning
    import optuna
    import torch

    from rnnstudy import __version__

    return {
        "rnnstudy": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "optuna": optuna.__version__,
        "wandb": metadata.version("wandb"),
    }


def read_back(folder: Path, info: RunInfo) -> RunResult:
    """The result of a run that already ended, from its run.json."""
    return RunResult(path=folder, **{f: getattr(info, f) for f in RESULT_FIELDS})


class RunRecord:
    """One run's folder while it trains: a new one, or an unfinished run's own folder, resumed at the checkpoint's ``step``
    (None: trained again from the start)."""

    def __init__(self, cfg: RunConfig, key: str, meta: dict[str, Any] | None,
                 resumed: tuple[Path, Any] | None = None, step: int | None = None) -> None:  # fmt: skip
        self.cfg, self.key, self.meta = cfg, key, meta
        if resumed is not None:
            self.folder, self.lock = resumed
            self.writer = RunWriter(self.folder)
            self.writer.resume(step)
        else:
            self.folder = cfg.out / cfg.experiment / new_run_id(cfg, meta)
            self.writer = RunWriter(self.folder)
            self.lock = hold(self.folder)
        self.run_id = self.folder.name
        self.resumed_from = step
        self.tracker: Any = None
        self.info: RunInfo | None = None

    def start(self, task: Task, probe_method: str | None, parameters: int, packed: Packing | None) -> StoreSink:
        """Write run.json's opening state (status running); the sink that sends the run's numbers to the store."""
        import torch  # loaded already: the run's own TF32 state is recorded

        cfg = self.cfg
        before = self.writer.info  # an unfinished attempt's record, where this one trains again in its folder
        earlier = [*before.earlier, (DEAD if before.status == RUNNING else before.status)
                   + (f": {before.reason}" if before.reason else "")] if before else []  # fmt: skip
        self.info = RunInfo(
            key=self.key,
            resumed_from_step=self.resumed_from,
            earlier=earlier,
            run_id=self.run_id,
            experiment=cfg.experiment,
            name=run_name(cfg, self.meta),
            status=RUNNING,
            config=cfg,
            meta=StudyFacts.model_validate(self.meta or {}),
            baseline=task.baseline,
            seq_len=task.seq_len,
            probe_method=probe_method,
            tf32={"cuda.matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
            deterministic=cfg.train.deterministic,
            versions=versions(),
            provenance=provenance(parameters),
            command=command_line(),
            launched_by=os.environ.get(SWEEP_COMMAND_ENV),
            device=device_name(cfg.train.accelerator, cfg.train.devices),
            packed=packed,
            started=datetime.now(timezone.utc),
        )
        self.writer.flush(self.info)
        return StoreSink(self.writer)

    def track(self, group: str | None) -> Any | None:
        """Open the run's W&B run (unless W&B is disabled): the sink that sends the run's numbers there too."""
        if self.cfg.wandb.mode == "disabled" or self.info is None:
            return None
        from rnnstudy.run.tracking import WandbSink

        extra = {"meta": self.meta or {}, "run_id": self.run_id, **self.info.model_dump(mode="json", include=MADE_FIELDS)}
        group = self.cfg.wandb.group or group or study_name(self.cfg.experiment, self.cfg)
        self.tracker = WandbSink(self.cfg, self.folder, self.run_id, self.info.name, group, extra)
        return self.tracker

    def finish(self, result: RunResult, checkpoint: Path | None = None) -> None:
        """Write the final state to run.json and close the W&B run, its record artifact holding ``checkpoint`` when
        given (Ctrl-C held off meanwhile)."""
        with _no_interrupts():
            try:
                assert self.info is not None, "a run finishes after it started"
                ended = {f: getattr(result, f) for f in RESULT_FIELDS}
                final = self.info.model_copy(update={
                    **ended,
                    "summary": result.summary,
                    "steps_per_s": result.steps / result.wall_s if result.wall_s > 0 else math.nan,
                    "ended": datetime.now(timezone.utc),
                })  # fmt: skip
                try:
                    self.writer.flush(final)
                except OSError as err:  # a full disk: the record still ends, failed, saying which file it lost
                    why = f"its files could not be written ({err.strerror or err}: {err.filename})"
                    self.writer.write_record(final.model_copy(update={"status": FAILED, "reason": why}))
                    raise
            finally:
                if self.tracker:
                    exit_code = 1 if result.status == FAILED else 0  # diverged: a result
                    self.tracker.finish(result.summary, exit_code, checkpoint if self.cfg.wandb.checkpoint else None)

    def result(self, status: str, reason: str | None, steps: int, wall: float, final: dict[str, float],
               best: dict[str, float], solved_at: int | None) -> RunResult:  # fmt: skip
        """How the run ended, from its numbers."""
        result = RunResult(
            run_id=self.run_id,
            path=self.folder,
            status=status,
            reason=reason,
            final=final,
            best=best,
            steps=steps,
            steps_to_solve=solved_at,
            wall_s=wall,
        )
        result.summary = {
            "status": status,
            "reason": reason,
            "steps": steps,
            "solved": result.solved,
            "steps_to_solve": result.steps_to_solve,
            "final_norm_loss": final.get(NORM_LOSS, math.nan),
        }
        return result

    def release(self) -> None:
        """Let go of the folder's lock."""
        if self.lock is not None:
            self.lock.close()


@contextmanager
def _no_interrupts() -> Iterator[None]:
    """Hold off Ctrl-C while a run writes its final state (a second Ctrl-C must not leave it half done)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
