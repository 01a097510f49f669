"""One run's record while it trains, packed or alone: its folder (new, or resumed at the checkpoint's step), what it
was made with, its sinks (results store, W&B), and its final write."""

from __future__ import annotations

import functools
import math
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning
import optuna
import pandas as pd
import torch

from rnnstudy.model.tasks import Task
from rnnstudy.names import FAILED, NORM_LOSS, RUNNING
from rnnstudy.run.config import RunConfig
from rnnstudy.run.device import device_name
from rnnstudy.run.lit import Member
from rnnstudy.run.runs import new_run_id, run_name
from rnnstudy.run.store import RunWriter, hold

#: The fields of run.json a recorded run is read back from.
RESULT_FIELDS = ("run_id", "status", "reason", "final", "best", "steps", "steps_to_solve", "wall_s")


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
        if split == "val":
            self.writer.flush()

    def profile(self, step: int, frame: pd.DataFrame, scalars: dict[str, float]) -> None:
        self.writer.add_gradflow(frame)
        self.writer.add_metrics(step, "probe", scalars)


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


def provenance(parameters: int) -> dict[str, Any]:
    """Where a run's code came from (git commit, dirty tree; None outside a git checkout) and its parameter count."""
    commit, dirty = source_revision()
    return {"commit": commit, "dirty": dirty, "parameters": parameters}


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


def read_back(folder: Path, info: dict[str, Any]) -> RunResult:
    """The result of a run that already ended, from its run.json."""
    return RunResult(path=folder, **{f: info.get(f) for f in RESULT_FIELDS})


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
        self.made: dict[str, Any] = {}

    def start(self, member: Member, task: Task, packed: dict[str, Any] | None) -> None:
        """Write run.json's opening state (status running) and point the member's numbers at the store."""
        cfg = self.cfg
        # What run.json records of how the run was made; W&B's config carries the same, under the same names.
        self.made = {
            "probe_method": member.probe.method if member.probe else None,
            "tf32": {"cuda.matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
            "deterministic": cfg.train.deterministic,
            "versions": versions(),
            "provenance": provenance(sum(p.numel() for p in member.net.parameters())),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),  # the program by name: no path of this box
            "device": device_name(cfg.train.accelerator, cfg.train.devices),
            "packed": packed,
        }
        self.writer.flush(
            key=self.key,
            resumed_from_step=self.resumed_from,
            reason=None,
            run_id=self.run_id,
            experiment=cfg.experiment,
            name=run_name(cfg, self.meta),
            status=RUNNING,
            config=cfg.model_dump(mode="json"),
            meta=self.meta or {},
            baseline=task.baseline,
            seq_len=task.seq_len,
            **self.made,
            started=datetime.now(timezone.utc).isoformat(),
        )
        member.sinks = [StoreSink(self.writer)]

    def track(self, member: Member, group: str | None) -> None:
        """Open the run's W&B run (unless W&B is disabled) and send the member's numbers there too."""
        if self.cfg.wandb.mode == "disabled":
            return
        from rnnstudy.run.tracking import WandbSink

        extra = {"meta": self.meta or {}, "run_id": self.run_id, **self.made}
        self.tracker = WandbSink(self.cfg, self.folder, self.run_id, group, extra)
        member.sinks.append(self.tracker)

    def finish(self, result: RunResult) -> None:
        """Write the final state to run.json and close the W&B run (Ctrl-C held off meanwhile)."""
        with _no_interrupts():
            try:
                self.writer.flush(
                    **{k: v for k, v in asdict(result).items() if k != "path"},
                    steps_per_s=result.steps / result.wall_s if result.wall_s > 0 else math.nan,
                    ended=datetime.now(timezone.utc).isoformat(),
                )
            finally:
                if self.tracker:
                    self.tracker.finish(result.summary, exit_code=1 if result.status == FAILED else 0)  # diverged: a result

    def result(self, member: Member, status: str, reason: str | None, steps: int, wall: float) -> RunResult:
        """How the run ended, from its member's numbers."""
        result = RunResult(
            run_id=self.run_id,
            path=self.folder,
            status=status,
            reason=reason,
            final=member.last_val,
            best=member.best,
            steps=steps,
            steps_to_solve=member.solved_at,
            wall_s=wall,
        )
        result.summary = {
            "status": status,
            "reason": reason,
            "steps": steps,
            "solved": result.solved,
            "steps_to_solve": result.steps_to_solve,
            "final_norm_loss": member.last_val.get(NORM_LOSS, math.nan),
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
