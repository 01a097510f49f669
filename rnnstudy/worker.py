"""A sweep worker: takes trials study by study until every study holds exactly its target, then ends.

Runs in its own process (``python -m rnnstudy.worker EXP.yaml [overrides] --threads N``, started by
the sweep or as a scheduler's array task), with the storage URL in its environment. Holds the
objective, the trial's callbacks (pruning at the training step, the init-time pre-screen) and the
worker loop with its exact-count and give-up rules.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time

import lightning.pytorch as pl
import optuna
from optuna.storages import RDBStorage, fail_stale_trials

from rnnstudy.experiment import Experiment, GridPoint, load_experiment
from rnnstudy.overrides import apply_overrides
from rnnstudy.space import suggest
from rnnstudy.storage import STORAGE_ENV, open_storage
from rnnstudy.store import DIVERGED
from rnnstudy.studies import LIVE, SURPLUS, counts, load_study


class PreScreen(pl.Callback):
    """Prunes a trial before its first step when its initialisation is predicted not to reach the study's T.

    Pruned when predicted memory length < ``threshold`` x T (rnnstudy.diagnostics), on the exact initial network.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from rnnstudy.diagnostics import diagnose_net

        task = pl_module.task
        d = diagnose_net(pl_module.net, task, pl_module.cfg.probe.eps)
        limit = self.threshold * task.T
        if d.predicted_memory < limit:
            raise optuna.TrialPruned(
                f"pre-screen: predicted memory length {d.predicted_memory:.1f} < {self.threshold:g} x T = {limit:g}"
            )


class StepPruning(pl.Callback):
    """Reports each validation's normalised loss to the trial at the training step, and prunes when Optuna says so.

    Optuna-integration's Lightning callback reports at the epoch index, which here is only the
    validation period; dashboards and pruners should see the training step.
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = pl_module.last_val.get("norm_loss", math.nan)
        step = trainer.global_step
        if math.isfinite(value):
            self.trial.report(value, step=step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: normalised validation loss {value:.4g}")


class Surplus(RuntimeError):
    """A trial started after the study's places were all taken (two workers raced for the last one)."""


def objective(trial: optuna.Trial, exp: Experiment, point: GridPoint) -> float:
    """Mean final normalised validation loss over the experiment's seeds.

    The first seed reports every validation to the pruner; a diverging run prunes the trial
    with its reason recorded.
    """
    from rnnstudy.train import train

    live = sorted(t.number for t in trial.study.get_trials(deepcopy=False, states=LIVE))
    if live.index(trial.number) >= exp.study.trials:
        trial.set_user_attr("reason", SURPLUS)
        raise Surplus(SURPLUS)
    params = suggest(trial, exp.search, point.cfg)
    cfg = apply_overrides(point.cfg, params)
    values, runs = [], []
    for i, seed in enumerate(exp.seeds):
        run_cfg = cfg.model_copy(update={"seed": seed})
        callbacks = [StepPruning(trial)] if i == 0 and exp.study.pruner != "none" else []
        if i == 0 and exp.study.prescreen:
            callbacks.append(PreScreen(exp.study.prescreen))
        meta = {**point.facts(), "trial": trial.number, "params": params, "seed": seed}
        try:
            result = train(run_cfg, callbacks=callbacks, meta=meta, group=point.study, tag=f"-t{trial.number}")
        except optuna.TrialPruned as err:
            trial.set_user_attr("reason", str(err))
            raise
        runs.append(result.run_id)
        trial.set_user_attr("run_ids", runs)
        if result.status == DIVERGED:
            trial.set_user_attr("reason", f"diverged: {result.reason}")
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        values.append(result.final.get("norm_loss", math.nan))
        trial.set_user_attr("solved", [*trial.user_attrs.get("solved", []), result.solved])
    return float(sum(values) / len(values))


def _run_one(study: optuna.Study, exp: Experiment, point: GridPoint) -> None:
    """One trial; a failure is one line on stderr (its reason is in run.json), never a traceback."""

    def report(trial: optuna.Trial) -> float:
        try:
            return objective(trial, exp, point)
        except (optuna.TrialPruned, Surplus):
            raise
        except KeyboardInterrupt:
            print(f"{point.study}: trial {trial.number} interrupted (Ctrl-C); it ends as failed", file=sys.stderr, flush=True)
            raise
        except Exception as err:
            print(f"{point.study}: trial {trial.number} failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            raise

    study.optimize(report, n_trials=1, catch=(Exception,))


def work(exp: Experiment, storage: RDBStorage) -> None:
    """One worker: take trials study by study until every study holds exactly its target.

    Running and waiting (re-queued) trials count towards the target; a trial that starts when
    every place is taken (two workers raced for the last) ends at once as a surplus failure
    without training, so the study never holds more than its target of finished trials.
    Stale trials of killed workers are failed and re-queued first. The loop is bounded: after
    ``2 x study.trials`` failed or surplus trials of a study, the worker gives up on it.
    """
    target = exp.study.trials
    for point in exp.points():
        study = load_study(point, storage, exp)
        while True:
            fail_stale_trials(study)
            c = counts(study)
            if not c["waiting"] and c["complete"] + c["pruned"] + c["running"] >= target:
                break
            if c["fail"] + c["surplus"] >= 2 * target:
                print(
                    f"{point.study}: {c['fail']} failed and {c['surplus']} surplus trials; giving up on it "
                    "(see run.json reasons)",
                    file=sys.stderr,
                )
                break
            _run_one(study, exp, point)


def main(argv: list[str]) -> int:
    """The worker process: parse its arguments, open the storage from the environment, work until done."""
    p = argparse.ArgumentParser(prog="rnnstudy-worker")
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    from rnnstudy.quiet import quiet_libraries

    quiet_libraries()
    _end_with_parent()
    if args.threads:
        torch.set_num_threads(args.threads)
    exp = load_experiment(args.experiment, args.overrides)
    storage, _ = open_storage(os.environ.get(STORAGE_ENV), exp, exp.base())
    try:
        work(exp, storage)
    except KeyboardInterrupt:
        return 130
    return 0


def _end_with_parent(every_s: float = 1.0) -> None:
    """Interrupt this worker (its trial ends as failed, cleanly) as soon as the sweep that started it is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
