"""A sweep worker: takes trials study by study until every study holds exactly its target, then ends.

Runs in its own process (``python -m rnnstudy.study.worker EXP.yaml [overrides] --threads N``, started by
the sweep or as a scheduler's array task), with the storage URL in its environment. Holds the
objective, the trial's callbacks (pruning at the training step, the init-time pre-screen) and the
worker loop with its exact-count and give-up rules.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time

import lightning.pytorch as pl
import optuna

from rnnstudy.errors import ConfigError, interrupted, stop_on_signals, stop_status, stopping
from rnnstudy.names import DIVERGED, NORM_LOSS, TrialAttr
from rnnstudy.run.device import uses_cuda
from rnnstudy.run.overrides import apply_overrides
from rnnstudy.study.experiment import Experiment, GridPoint, load_experiment
from rnnstudy.study.space import suggest
from rnnstudy.study.stages import Stage, adaptive, lines
from rnnstudy.study.storage import PATIENCE_S, STORAGE_ENV, Storage, database_away, open_storage, patiently
from rnnstudy.study.studies import LIVE, SURPLUS, counts, load_study

#: How often a worker of a staged experiment (T search, calibration) with nothing it may run looks again.
POLL_S = 2.0
#: Set when the sweep that started this worker is gone: the running run stops at its next step, no new trial starts.
ORPHANED = threading.Event()


class EndWithSweep(pl.Callback):
    """Interrupts a run (as Ctrl-C would: it ends failed, its trial too) at the first step after the sweep is gone."""

    def on_train_batch_end(self, *_: object) -> None:
        if ORPHANED.is_set():
            raise KeyboardInterrupt


class PreScreen(pl.Callback):
    """Prunes a trial before its first step when its initialisation is predicted not to reach the study's T.

    Pruned when predicted memory length < ``threshold`` x T (rnnstudy.model.diagnostics), on the exact initial network.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from rnnstudy.model.diagnostics import diagnose_net

        task = pl_module.task
        d = diagnose_net(pl_module.members[0].net, task, pl_module.cfg.probe.eps)
        limit = self.threshold * task.T
        if d.predicted_memory < limit:
            raise optuna.TrialPruned(
                f"pre-screen: predicted memory length {d.predicted_memory:.1f} < {self.threshold:g} x T = {limit:g}"
            )


class StepPruning(pl.Callback):
    """Reports each validation's normalised loss to the trial at the training step, and prunes when Optuna says so.

    Optuna-integration's Lightning callback reports at the epoch index, which here is only the
    validation period; dashboards and pruners should see the training step. With ``prune`` off (a fixed point of
    a grid, a calibration or a T search: a result, never pruned) it only reports, so Optuna's intermediate-value
    plots show every study's curves.
    """

    def __init__(self, trial: optuna.Trial, prune: bool = True) -> None:
        self.trial, self.prune = trial, prune

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        first, step = pl_module.members[0], trainer.global_step
        if first.validated_at != step:
            return  # the first seed ended (solved or diverged) while its pack trains on
        value = first.last_val.get(NORM_LOSS, math.nan)
        if math.isfinite(value):
            self.trial.report(value, step=step)
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: normalised validation loss {value:.4g}")


class Surplus(RuntimeError):
    """A trial started after the study's places were all taken (two workers raced for the last one)."""


def objective(trial: optuna.Trial, exp: Experiment, stage: Stage, point: GridPoint) -> float:
    """Mean final normalised validation loss over the seeds of the point's stage.

    The first seed reports every validation to the trial; when searching, the pruner reads them and a diverging
    run prunes the trial with its reason recorded. A fixed point (no search) is never pruned: a diverged seed counts
    as unsolved with an infinite loss, and every seed runs, packed into one run where ``study.pack`` allows it.
    """
    from rnnstudy.run.train import train_pack

    live = sorted(t.number for t in trial.study.get_trials(deepcopy=False, states=LIVE))
    if live.index(trial.number) >= exp.target:
        trial.set_user_attr(TrialAttr.REASON, SURPLUS)
        raise Surplus(SURPLUS)
    params = suggest(trial, exp.search, point.cfg)
    cfg = apply_overrides(point.cfg, params)
    prune = exp.pruner_for(point.cfg) != "none"
    values, runs, solved = [], [], []
    device = "cuda" if uses_cuda(cfg.train.accelerator) else "cpu"
    for i, seeds in enumerate(exp.packs(stage.seeds, cfg.model.cell, device)):
        callbacks = [EndWithSweep(), *([StepPruning(trial, prune)] if i == 0 else [])]
        if i == 0 and exp.study.prescreen:
            callbacks.append(PreScreen(exp.study.prescreen))
        cfgs = [cfg.model_copy(update={"seed": seed}) for seed in seeds]
        metas = [{**point.facts(), "trial": trial.number, "params": params, "seed": seed} for seed in seeds]
        try:
            results = train_pack(cfgs, callbacks=callbacks, metas=metas, group=point.study)
        except optuna.TrialPruned as err:
            trial.set_user_attr(TrialAttr.REASON, str(err))
            raise
        for result in results:
            runs.append(result.run_id)
            trial.set_user_attr(TrialAttr.RUN_IDS, runs)
            if result.status == DIVERGED and exp.searching:
                trial.set_user_attr(TrialAttr.REASON, f"diverged: {result.reason}")
                raise optuna.TrialPruned(f"diverged: {result.reason}")
            values.append(math.inf if result.status == DIVERGED else result.final.get(NORM_LOSS, math.nan))
            solved.append(result.solved)
            trial.set_user_attr(TrialAttr.SOLVED, solved)
            trial.set_user_attr(TrialAttr.FINAL, values)
    return float(sum(values) / len(values))


def run_one(study: optuna.Study, storage: Storage, exp: Experiment, stage: Stage, point: GridPoint) -> None:
    """One trial; a failure is one line on stderr (its reason is in run.json), never a traceback."""

    ran: list[int] = []

    def report(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        try:
            with storage.beating(trial):
                return objective(trial, exp, stage, point)
        except (optuna.TrialPruned, Surplus, optuna.exceptions.UpdateFinishedTrialError):
            raise  # the last: another worker failed and retried this trial meanwhile (said below)
        except Exception as err:
            if not stopping():
                print(f"{point.study}: trial {trial.number} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                raise
            stop: BaseException = KeyboardInterrupt()  # the stop signal, wrapped by the library call it landed in
            stop.__cause__ = err
        except KeyboardInterrupt as err:
            stop = err
        trial.set_user_attr(TrialAttr.REASON, interrupted())  # a stop, not the point's failure: no step to giving up
        print(f"{point.study}: trial {trial.number} {interrupted()}; it ends as failed", file=sys.stderr, flush=True)
        raise stop

    try:
        study.optimize(report, n_trials=1, catch=(Exception,))
    except Exception:
        mine = [t for t in study.get_trials(deepcopy=False) if ran and t.number == ran[0]]
        if not mine or mine[0].state == optuna.trial.TrialState.RUNNING:
            raise
        # Another worker found this trial's heartbeat stale (this one was cut off from the database) and failed and
        # retried it while it ran here; the retry reads back the runs recorded here.
        print(f"{point.study}: trial {ran[0]} was retried by another worker while this one ran it (its heartbeat "
              "went stale); the retry counts", file=sys.stderr, flush=True)  # fmt: skip


def work(exp: Experiment, storage: Storage, poll_s: float = POLL_S) -> None:
    """One worker: take trials until every point of every stage holds exactly its target, then return.

    The stages are taken in plan order (rnnstudy.study.stages: the calibration first); a line whose learning rate
    is not calibrated yet, or whose next T waits on another worker's trial, is passed over and come back to
    (one line said, then a poll every ``poll_s``); in a plain grid, a worker whose remaining places are all held
    by other workers ends. Running and waiting (re-queued) trials count towards a study's target; a trial that starts
    when every place is taken (two workers raced for the last) ends at once as a surplus failure without
    training, so a study never holds more than its target. Stale trials of killed workers are failed and
    re-queued first. The loop is bounded: after ``2 x target`` failed or surplus trials of a study, the
    worker gives up on it (a trial a stop signal ended does not count: a stopped sweep resumes when rerun).
    """
    given_up, said = set(), ""
    while True:
        # The storage's own calls wait out an outage; this also covers Optuna's stale-trial sweep between them.
        pending, ran, waiting = patiently(storage.url, lambda: _round(exp, storage, given_up))
        if not pending or (not ran and not adaptive(exp)):
            return  # a grid's places are all taken by others: a rerun of the sweep retries any trial they leave stale
        if not ran:
            if waiting != said:
                print(f"worker {os.getpid()}: waiting for {waiting}; polling every {poll_s:g} s", file=sys.stderr, flush=True)
                said = waiting
            time.sleep(poll_s)


def _round(exp: Experiment, storage: Storage, given_up: set[str]) -> tuple[int, bool, str]:
    """One pass over every line: run what is runnable; how many points are pending, whether any ran, what is waited for."""
    target = exp.target
    pending, ran, waiting = 0, False, ""
    for stage, line in lines(exp):
        nxt = stage.next(storage, line)
        if nxt.done:
            continue
        if nxt.point is None:
            pending, waiting = pending + 1, nxt.waiting_for
            continue
        point = nxt.point
        if point.study in given_up:
            continue
        pending += 1
        study = load_study(point, storage, exp)
        while True:
            storage.fail_stale(study)
            c = counts(study)
            if not c["waiting"] and c["complete"] + c["pruned"] + c["running"] >= target:
                waiting = waiting or f"another worker's trial of {point.study}"
                break
            if c["fail"] - c["interrupted"] + c["surplus"] >= 2 * target:
                print(
                    f"{point.study}: {c['fail'] - c['interrupted']} failed and {c['surplus']} surplus trials; giving up "
                    "on it (see run.json reasons)",
                    file=sys.stderr,
                )
                given_up.add(point.study)
                break
            if ORPHANED.is_set():
                raise KeyboardInterrupt  # the sweep is gone: end as a Ctrl-C would, with no new trial
            run_one(study, storage, exp, stage, point)
            ran = True
    return pending, ran, waiting


def main(argv: list[str]) -> int:
    """The worker process: parse its arguments, open the storage from the environment, work until done."""
    p = argparse.ArgumentParser(prog="rnnstudy-worker")
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    from rnnstudy.quiet import quiet_libraries
    from rnnstudy.run.device import flush_subnormals

    flush_subnormals()  # before any intra-op thread starts, so every one inherits it
    quiet_libraries()
    stop_on_signals()
    _end_with_parent()
    if args.threads:
        torch.set_num_threads(args.threads)
    exp = load_experiment(args.experiment, args.overrides)
    try:
        storage, _ = open_storage(os.environ.get(STORAGE_ENV), exp, exp.base(), wait=True)
        work(exp, storage)
    except KeyboardInterrupt:
        return stop_status()
    except ConfigError as err:
        print(f"worker {os.getpid()}: {err}", file=sys.stderr, flush=True)
        return 2
    except Exception as err:
        if (away := database_away(err)) is None:
            raise
        print(f"worker {os.getpid()}: storage unreachable for over {PATIENCE_S / 60:g} min ({away.__class__.__name__}); "
              "giving up (rerun the sweep when it is back)", file=sys.stderr, flush=True)  # fmt: skip
        return 1
    return 0


def _end_with_parent(every_s: float = 1.0) -> None:
    """Mark this worker orphaned as soon as the sweep that started it is gone: its run stops at the next step.

    A flag the training step and the worker loop read, not a signal: an interrupt can land where Python only
    prints it (a garbage-collector callback) or while a run writes its final state, and be lost.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        ORPHANED.set()

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
