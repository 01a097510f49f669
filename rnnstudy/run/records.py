"""One run's record while it trains, packed or alone: its folder (new, or resumed at the checkpoint's step), what it
was made with, its sinks (results store, W&B), and its final write."""

from __future__ import annotations

import functools
import math
import os
import platform
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning
import optuna
import pandas as pd
import torch

from rnnstudy.model.tasks import Task
from rnnstudy.names import FAILED, NORM_LOSS, PROBE, RUNNING, SWEEP_COMMAND_ENV, VAL
from rnnstudy.run.config import RunConfig
from rnnstudy.run.device import device_name
from rnnstudy.run.record import Packing, Provenance, RunInfo, StudyFacts
from rnnstudy.run.runs import command_line, new_run_id, run_name
from rnnstudy.run.store import RunWriter, hold

#: The fields of run.json a recorded run is read back from.
RESULT_FIELDS = ("run_id", "status", "reason", "final", "best", "steps", "steps_to_solve", "wall_s")
#: The fields of run.json that say how the run was made; W&B's config carries the same, under the same names.
MADE_FIELDS = {"probe_method", "tf32", "deterministic", "versions", "provenance", "command", "launched_by", "device",
               "packed"}  # fmt: skip


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
    """One run's folder while it trains: a new one, or a killed run's folder resumed at the checkpoint's ``step``."""

    def __init__(self, cfg: RunConfig, key: str, meta: dict[str, Any] | None,
                 resumed: tuple[Path, Any] | None = None, step: int | None = None) -> None:  # fmt: skip
        self.cfg, self.key, self.meta = cfg, key, meta
        if resumed is not None:
            self.folder, self.lock = resumed
            self.writer = RunWriter(self.folder)
            self.writer.resume(int(step or 0))
        else:
            self.folder = cfg.out / cfg.experiment / new_run_id(cfg, meta)
            self.writer = RunWriter(self.folder)
            self.lock = hold(self.folder)
        self.run_id = self.folder.name
        self.resumed_from = step if resumed is not None else None
        self.tracker: Any = None
        self.info: RunInfo | None = None

    def start(self, task: Task, probe_method: str | None, parameters: int, packed: Packing | None) -> StoreSink:
        """Write run.json's opening state (status running); the sink that sends the run's numbers to the store."""
        cfg = self.cfg
        self.info = RunInfo(
            key=self.key,
            resumed_from_step=self.resumed_from,
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
        self.tracker = WandbSink(self.cfg, self.folder, self.run_id, group, extra)
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
