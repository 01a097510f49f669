"""The training core: ``train(config) -> RunResult``, and ``train_pack`` for a point's seeds trained together exactly as
if apart; called by the CLI, the tests and the sweep."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
from lightning.pytorch.callbacks import ModelCheckpoint

from rnnstudy.errors import interrupted, stopping
from rnnstudy.model.cells import CELLS
from rnnstudy.model.tasks import build_task
from rnnstudy.names import COMPLETE, FAILED, PRUNED
from rnnstudy.run.config import RunConfig
from rnnstudy.run.device import preflight, prepare, uses_cuda
from rnnstudy.run.lit import Member, RecurrentModule, StepLines, StepProgressBar, TaskData
from rnnstudy.run.record import Packing
from rnnstudy.run.records import (
    CHECKPOINT,
    RunRecord,
    RunResult,
    checkpoint_and_folders,
    claimed,
    read_back,
    recorded,
    run_key,
    run_name,
)


class _StopAtBudget(pl.Callback):
    """Stops at ``max_steps`` through ``should_stop`` so a last validation always runs."""

    def on_train_batch_end(self, trainer: pl.Trainer, *_: Any) -> None:
        if trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class Clock:
    """A run's training time: this session's, and what a run resumed from a checkpoint had trained before it."""

    def __init__(self) -> None:
        self.start, self.before = time.time(), 0.0

    def seconds(self) -> float:
        """Seconds trained so far, across every session up to the checkpoint this one resumed from."""
        return self.before + time.time() - self.start


class _Checkpointing(ModelCheckpoint):
    """Lightning's checkpointing, whose write errors name the checkpoint (Lightning's name its temporary file), and which
    carries the training time so far, so a resumed run's ``wall_s`` (and its steps per second) counts every session."""

    def __init__(self, path: Path, clock: Clock) -> None:
        super().__init__(dirpath=path.parent, filename=path.stem, save_top_k=1, every_n_epochs=1,
                         enable_version_counter=False)  # fmt: skip
        self.path, self.clock = path, clock

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "trained_s": self.clock.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.clock.before = float(state_dict.get("trained_s", 0.0))  # a checkpoint written before it carried none: 0

    def _named(self, hook: Any, *args: Any) -> None:
        try:
            hook(*args)
        except OSError as err:
            raise OSError(err.errno, f"{err.strerror or err}: writing the checkpoint {self.path}") from err

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._named(super().on_train_epoch_end, trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._named(super().on_validation_end, trainer, pl_module)


def checkpointing(path: Path, clock: Clock) -> ModelCheckpoint:
    """Lightning's checkpointing to ``path``, last only: overwritten after every validation, removed at the end for good."""
    return _Checkpointing(path, clock)


def make_trainer(
    cfg: RunConfig, callbacks: list[pl.Callback], members: int = 1, meta: dict[str, Any] | None = None
) -> pl.Trainer:
    """A Trainer whose 'epochs' are validation periods of ``val_every`` steps (the module sends numbers to its sinks).

    Validation runs under ``no_grad``, not inference mode: a run that stops there (solved) takes its last probe at once.
    """
    t = cfg.train
    bar = t.progress and sys.stderr.isatty()
    name = run_name(cfg, meta) + (f" ({members} seeds packed)" if members > 1 else "")
    progress = [StepProgressBar(name)] if bar else [StepLines(name)] if t.progress else []
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
        inference_mode=False,
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
) -> RunResult:
    """Train one run, write it to the results store (and W&B), and return how it ended.

    Divergence ends the run with status ``diverged``; an Optuna prune with ``pruned``; any
    other exception is recorded as ``failed`` and re-raised. Files are complete either way. A run of a
    study (``meta`` given) that already ended as a result is not trained again: its recorded result is
    returned (a retried trial whose worker died after some of its seeds finished, or a trial whose
    family reads none of the searched parameters); one that another process is training is waited for.
    """
    return train_pack([cfg], callbacks=callbacks, metas=[meta], group=group)[0]


def train_pack(
    cfgs: list[RunConfig],
    *,
    callbacks: list[pl.Callback] | None = None,
    metas: list[dict[str, Any] | None],
    group: str | None = None,
    executor: str = "auto",
) -> list[RunResult]:
    """Train runs that differ only in their seed in one process and one loop, each exactly as if alone (see
    :class:`~rnnstudy.run.lit.RecurrentModule`); each is recorded as its own run, as :func:`train` records one.

    A killed pack resumes from its shared checkpoint; members that had already ended are read back, not trained.
    ``executor``: ``stacked``, ``loop`` or ``auto`` (the cell's measured rule, ``CellSpec.executor``; where it says the
    seeds train faster apart, a pack asked for anyway runs the loop).
    """
    cfg = cfgs[0]
    if any(c.model_copy(update={"seed": cfg.seed}) != cfg for c in cfgs):
        raise ValueError("a pack's runs must differ only in their seed")
    preflight(cfg)
    device = prepare(cfg.train)
    keys = [run_key(c, m, device) for c, m in zip(cfgs, metas)]
    if metas[0] is None:
        return _train(cfgs, keys, metas, callbacks or [], group, {}, executor, device)
    with ExitStack() as claims:  # a study's run is trained once: whoever holds its key trains it, the others read it back
        for key, c in sorted(zip(keys, cfgs), key=lambda pair: pair[0]):  # one order: two packs never wait on each other
            claims.enter_context(claimed(c, key))
        done = {i: read_back(*found) for i, (c, key) in enumerate(zip(cfgs, keys)) if (found := recorded(c, metas[i], key))}
        if len(done) == len(cfgs):
            return [done[i] for i in range(len(cfgs))]
        return _train(cfgs, keys, metas, callbacks or [], group, done, executor, device)


def _numbers(member: Member) -> tuple[dict[str, float], dict[str, float], int | None]:
    """What a member's run ended with: its last validation, its best, the step it solved at."""
    return member.last_val, member.best, member.solved_at


def _train(
    cfgs: list[RunConfig],
    keys: list[str],
    metas: list[dict[str, Any] | None],
    callbacks: list[pl.Callback],
    group: str | None,
    done: dict[int, RunResult],
    executor: str,
    device: str,
) -> list[RunResult]:
    """Train the runs not ``done`` (resuming killed ones) on ``device``, write each, and return how each ended."""
    cfg = cfgs[0]
    task = build_task(cfg)
    module = RecurrentModule(cfgs, task, CELLS[cfg.model.cell].executor(executor, device) == "stacked")
    todo = [i for i in range(len(cfgs)) if i not in done]
    path, folders, step = checkpoint_and_folders(cfgs, metas, keys, todo)
    records: dict[int, RunRecord] = {}
    results: dict[int, RunResult] = dict(done)
    clock = Clock()
    packed = len(cfgs) > 1

    def ended(member: Member) -> None:
        i = module.members.index(member)
        status, reason, steps = member.ended
        results[i] = records[i].result(status, reason, steps, clock.seconds(), *_numbers(member))
        records[i].finish(results[i], path)

    for i in todo:
        records[i] = RunRecord(cfgs[i], keys[i], metas[i], folders.get(i), step)
        member = module.members[i]
        how = Packing(members=len(cfgs), index=i, stacked=module.stacked) if packed else None
        probe = member.probe.method if member.probe else None
        member.report_to([records[i].start(task, probe, sum(p.numel() for p in member.net.parameters()), how)], ended)
    if path is None and cfg.train.checkpoint:
        path = records[0].folder / CHECKPOINT
    for i, result in done.items():
        module.members[i].ended_before(result.status, result.reason, result.steps)
    trainer = None
    status, reason, error = COMPLETE, None, None
    try:  # from here on, whatever ends the runs, each run.json ends in a final status with a reason
        for i in todo:
            if (sink := records[i].track(group)) is not None:
                module.members[i].add_sink(sink)
        checkpoints = [checkpointing(path, clock)] if path is not None else []
        trainer = make_trainer(cfg, [*checkpoints, *callbacks], len(cfgs), metas[0])
        data = TaskData(cfgs, task, module.wanted)
        trainer.fit(module, datamodule=data, ckpt_path=path if step is not None else None)
    except optuna.TrialPruned as err:
        status, reason, error = PRUNED, str(err), err
    except (KeyboardInterrupt, SystemExit):
        # Lightning turns Ctrl-C into sys.exit(1); hand callers (Optuna marks the trial failed) the interrupt back.
        status, reason, error = FAILED, interrupted(), KeyboardInterrupt()
    except BaseException as err:
        if stopping():  # the stop signal landed inside a library call, which wrapped it
            status, reason, error = FAILED, interrupted(), KeyboardInterrupt()
        else:
            status, reason, error = FAILED, f"{type(err).__name__}: {err}", err
    for i in todo:
        if i not in results:
            steps = trainer.global_step if trainer else 0
            results[i] = records[i].result(status, reason, steps, clock.seconds(), *_numbers(module.members[i]))
            records[i].finish(results[i], path)
    if path is not None and FAILED not in (r.status for r in results.values()):
        path.unlink(missing_ok=True)  # finished for good: nothing left to resume
        with suppress(OSError):  # its folder too, once empty (a pack's may still hold another's)
            path.parent.rmdir()
    for record in records.values():
        record.release()
    if error is not None:
        raise error
    return [results[i] for i in range(len(cfgs))]
