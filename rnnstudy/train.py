"""The training core: ``train(config) -> RunResult``, called by the CLI, the tests and the sweep."""

from __future__ import annotations

import functools
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning
import lightning.pytorch as pl
import optuna
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from rnnstudy.config import RunConfig
from rnnstudy.device import device_name, flush_subnormals, preflight, set_tf32, uses_cuda
from rnnstudy.lit import Diverged, RecurrentModule, StepLines, StepProgressBar, TaskData
from rnnstudy.names import COMPLETE, DIVERGED, FAILED, NORM_LOSS, PRUNED, RUNNING
from rnnstudy.runs import CHECKPOINT, claimed, new_run_id, recorded, resumable, run_key
from rnnstudy.store import RunWriter, hold
from rnnstudy.tasks import build_task
from rnnstudy.tracking import run_name


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
def _source_revision() -> tuple[str | None, bool | None]:
    """The git commit of the rnnstudy checkout and whether its tree is dirty (None outside a git checkout); once a process."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=source.parent, capture_output=True,
                                    text=True, check=True).stdout.strip())  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit, dirty


def provenance(module: pl.LightningModule) -> dict[str, Any]:
    """Where a run's code came from (git commit, dirty tree; None outside a git checkout) and its parameter count."""
    commit, dirty = _source_revision()
    return {"commit": commit, "dirty": dirty, "parameters": sum(p.numel() for p in module.parameters())}


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


class _StopAtBudget(pl.Callback):
    """Stops at ``max_steps`` through ``should_stop`` so a last validation always runs."""

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


def checkpointing(folder: Path) -> ModelCheckpoint:
    """Lightning's checkpointing, last only: overwritten after every validation, removed when the run ends for good."""
    return ModelCheckpoint(
        dirpath=folder / CHECKPOINT.parent,
        filename=CHECKPOINT.stem,
        save_top_k=1,
        every_n_epochs=1,
        enable_version_counter=False,
    )


def make_trainer(cfg: RunConfig, callbacks: list[pl.Callback]) -> pl.Trainer:
    """A Trainer whose 'epochs' are validation periods of ``val_every`` steps (the module sends numbers to its sinks)."""
    t = cfg.train
    bar = t.progress and sys.stderr.isatty()
    progress = [StepProgressBar(run_name(cfg))] if bar else [StepLines(run_name(cfg))] if t.progress else []
    for name in ("lightning.pytorch", "lightning.fabric"):  # set after Lightning's import, which resets them to INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=[t.devices] if t.devices is not None and uses_cuda(t.accelerator) else 1,
        deterministic=True if t.deterministic else None,
        max_steps=t.steps,
        max_epochs=-1,
        limit_train_batches=t.val_every,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        precision=f"{t.precision}-true",
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_model_summary=False,
        enable_progress_bar=bar,
        callbacks=[_StopAtBudget(), *progress, *callbacks],
    )


def train(
    cfg: RunConfig,
    *,
    callbacks: list[pl.Callback] | None = None,
    meta: dict[str, Any] | None = None,
    group: str | None = None,
    tag: str = "",
) -> RunResult:
    """Train one run, write it to the results store (and W&B), and return how it ended.

    Divergence ends the run with status ``diverged``; an Optuna prune with ``pruned``; any
    other exception is recorded as ``failed`` and re-raised. Files are complete either way. A run of a
    study (``meta`` given) that already ended as a result is not trained again: its recorded result is
    returned (a retried trial whose worker died after some of its seeds finished, or a trial whose
    family reads none of the searched parameters); one that another process is training is waited for.
    """
    preflight(cfg)
    set_tf32(cfg.train.tf32)
    flush_subnormals()
    if cfg.train.deterministic:  # cuBLAS refuses deterministic mode without a fixed workspace
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    key = run_key(cfg, meta)
    if meta is None:
        return _train(cfg, key, callbacks, meta, group, tag)
    with claimed(cfg, key):  # a study's run is trained once: whoever holds its key trains it, the others read it back
        if found := recorded(cfg, key):
            folder, info = found
            names = ("run_id", "status", "reason", "final", "best", "steps", "steps_to_solve", "wall_s")
            return RunResult(path=folder, **{f: info.get(f) for f in names})
        return _train(cfg, key, callbacks, meta, group, tag)


def _train(
    cfg: RunConfig, key: str, callbacks: list[pl.Callback] | None, meta: dict[str, Any] | None, group: str | None, tag: str
) -> RunResult:
    """Train one run of the given key (resuming a killed one), write it, and return how it ended."""
    pl.seed_everything(cfg.seed, verbose=False)
    task = build_task(cfg)
    module = RecurrentModule(cfg, task)
    found = resumable(cfg, key) if cfg.train.checkpoint else None
    resume_step = None
    if found:  # a killed run of the same config: continue it from its last checkpoint, in its own folder
        folder, lock = found
        run_id = folder.name
        writer = RunWriter(folder)
        resume_step = int(torch.load(folder / CHECKPOINT, map_location="cpu", weights_only=False)["global_step"])
        writer.resume(resume_step)
    else:
        run_id = new_run_id(cfg, tag)
        folder = cfg.out / cfg.experiment / run_id
        writer = RunWriter(folder)
        lock = hold(folder)
    store = StoreSink(writer)
    origin = provenance(module)
    started = time.time()
    # What run.json records of how the run was made; W&B's config carries the same, under the same names.
    made = {
        "probe_method": module.probe.method if module.probe else None,
        "tf32": {"cuda.matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        "deterministic": cfg.train.deterministic,
        "versions": versions(),
        "provenance": origin,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),  # the program by name: no path of this box
        "device": device_name(cfg.train.accelerator, cfg.train.devices),
    }
    writer.flush(
        key=key,
        resumed_from_step=resume_step,
        reason=None,
        run_id=run_id,
        experiment=cfg.experiment,
        name=run_name(cfg),
        status=RUNNING,
        config=cfg.model_dump(mode="json"),
        meta=meta or {},
        baseline=task.baseline,
        seq_len=task.seq_len,
        **made,
        started=datetime.now(timezone.utc).isoformat(),
    )
    tracker = None
    trainer = None
    status, reason, error = COMPLETE, None, None
    try:  # from here on, whatever ends the run, run.json ends in a final status with a reason
        if cfg.wandb.mode != "disabled":
            from rnnstudy.tracking import WandbSink

            tracker = WandbSink(cfg, folder, run_id, group, {"meta": meta or {}, "run_id": run_id, **made})
        module.sinks = [store] + ([tracker] if tracker else [])
        checkpoints = [checkpointing(folder)] if cfg.train.checkpoint else []
        trainer = make_trainer(cfg, [*checkpoints, *(callbacks or [])])
        trainer.fit(module, datamodule=TaskData(cfg, task), ckpt_path=folder / CHECKPOINT if resume_step is not None else None)
    except Diverged as err:
        status, reason = DIVERGED, str(err)
    except optuna.TrialPruned as err:
        status, reason, error = PRUNED, str(err), err
    except (KeyboardInterrupt, SystemExit):
        # Lightning turns Ctrl-C into sys.exit(1); hand callers (Optuna marks the trial failed) the interrupt back.
        status, reason, error = FAILED, "interrupted (Ctrl-C)", KeyboardInterrupt()
    except BaseException as err:
        status, reason, error = FAILED, f"{type(err).__name__}: {err}", err
    wall = time.time() - started
    result = RunResult(
        run_id=run_id,
        path=folder,
        status=status,
        reason=reason,
        final=module.last_val,
        best=module.best,
        steps=trainer.global_step if trainer else 0,
        steps_to_solve=module.solved_at,
        wall_s=wall,
    )
    result.summary = {
        "status": status,
        "reason": reason,
        "steps": result.steps,
        "solved": result.solved,
        "steps_to_solve": result.steps_to_solve,
        "final_norm_loss": module.last_val.get(NORM_LOSS, math.nan),
    }
    with _no_interrupts():
        _finish(writer, tracker, result, wall)
        if status != FAILED:  # finished for good: nothing left to resume
            (folder / CHECKPOINT).unlink(missing_ok=True)
        if lock is not None:
            lock.close()
    if error is not None:
        raise error
    return result


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


def _finish(writer: RunWriter, tracker: Any, result: RunResult, wall: float) -> None:
    try:
        writer.flush(
            **{k: v for k, v in asdict(result).items() if k != "path"},
            steps_per_s=result.steps / wall if wall > 0 else math.nan,
            ended=datetime.now(timezone.utc).isoformat(),
        )
    finally:
        if tracker:
            tracker.finish(result.summary, exit_code=1 if result.status == FAILED else 0)  # a diverged run is a result
