"""Optuna initialisation search: one study per grid cell, worker processes, resumable.

``rnnstudy sweep EXP.yaml`` opens the storage (SQLite under the results root by default, a
PostgreSQL URL for many boxes), creates every study before any worker starts, then runs worker
processes that take trials study by study until each holds ``study.trials`` finished (complete
or pruned) trials, so a rerun tops up and never repeats. Heartbeats let a restarted sweep fail
the trial of a killed worker and retry it with the same parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url

from rnnstudy.config import (
    CategoricalParam,
    ConfigError,
    Experiment,
    IntParam,
    RunConfig,
    apply_overrides,
    load_experiment,
    param_path,
)
from rnnstudy.store import RUN_FILE, run_folders, write_json

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)
MONITOR = "val/norm_loss"
STORAGE_ENV = "RNNSTUDY_STORAGE"
PROGRESS_EVERY_S = 15


@dataclass
class Cell:
    """One grid cell: its study name and run config (before the trial's parameters)."""

    study: str
    cfg: RunConfig


def cells(exp: Experiment) -> list[Cell]:
    """The experiment's grid cells and their study names."""
    base = exp.base()
    out = []
    for label, cell_overrides in exp.cells():
        cfg = apply_overrides(base, cell_overrides)
        name = f"{exp.name}/{cfg.model.cell}/{cfg.task.name}/T={cfg.task.T}" + (f"/{label}" if label else "")
        out.append(Cell(name, cfg))
    names = [c.study for c in out]
    if len(set(names)) != len(names):
        raise ConfigError("grid: two grid cells map to the same study name; give rows distinct `name`s")
    return out


def mask(url: str) -> str:
    """A storage URL safe to print or store: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable storage URL>"


def default_storage(cfg: RunConfig) -> str:
    """SQLite file under the experiment's results folder."""
    path = (cfg.out / cfg.experiment / "optuna.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class _RetryAndMark:
    """On a stale heartbeat: retry the trial and mark its unfinished store runs failed."""

    def __init__(self, root: Path) -> None:
        self.root, self.retry = root, RetryHeartbeatStaleTrialCallback(max_retry=3)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.retry(study, trial)
        for folder in run_folders(self.root):
            info = json.loads((folder / RUN_FILE).read_text())
            meta = info.get("meta", {})
            if meta.get("study") == study.study_name and meta.get("trial") == trial.number and info["status"] == "running":
                info.update(status="failed", reason="worker stopped: its heartbeat went stale; the trial was retried")
                write_json(folder / RUN_FILE, info)


def open_storage(url: str | None, exp: Experiment, cfg: RunConfig) -> tuple[RDBStorage, str]:
    """Connect to the storage (creating the schema once); unreachable URLs are config errors."""
    url = url or default_storage(cfg)
    heartbeat = exp.study.heartbeat_s
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        storage = RDBStorage(
            url,
            engine_kwargs=kwargs,
            heartbeat_interval=heartbeat,
            grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=_RetryAndMark(cfg.out / cfg.experiment),
        )
    except Exception as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        password = _password(url)
        if password:
            text = text.replace(password, "***")
        raise ConfigError(f"storage {mask(url)}: cannot open: {text}") from None
    return storage, url


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except Exception:
        return None


def _sampler(exp: Experiment) -> optuna.samplers.BaseSampler:
    s = exp.study
    if s.sampler == "random":
        return optuna.samplers.RandomSampler()
    return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, n_startup_trials=s.startup_trials)


def _pruner(exp: Experiment, cfg: RunConfig) -> optuna.pruners.BasePruner:
    s = exp.study
    if s.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s.startup_trials, n_warmup_steps=s.warmup_steps)
    if s.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, cfg.train.steps // cfg.train.val_every))
    return optuna.pruners.NopPruner()


def load_study(name: str, storage: RDBStorage, exp: Experiment, cfg: RunConfig) -> optuna.Study:
    """Create or open one study with the experiment's sampler and pruner."""
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=_sampler(exp),
        pruner=_pruner(exp, cfg),
    )


def _current(cfg: RunConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def suggest(trial: optuna.Trial, exp: Experiment, cfg: RunConfig) -> dict[str, Any]:
    """Sample the search space; a parameter with ``when`` is sampled only where it applies."""
    chosen: dict[str, Any] = {}
    for key, spec in exp.search.items():
        path = param_path(key)
        applies = True
        for cond_key, wanted in spec.when.items():
            value = chosen.get(cond_key, _current(cfg, cond_key))
            applies &= value in wanted if isinstance(wanted, list) else value == wanted
        if not applies:
            continue
        if isinstance(spec, CategoricalParam):
            chosen[path] = trial.suggest_categorical(path, spec.choices)
        elif isinstance(spec, IntParam):
            chosen[path] = trial.suggest_int(path, spec.low, spec.high, log=spec.log)
        else:
            chosen[path] = trial.suggest_float(path, spec.low, spec.high, log=spec.log)
    return chosen


def objective(trial: optuna.Trial, exp: Experiment, cell: Cell) -> float:
    """Mean final normalised validation loss over the experiment's seeds.

    The first seed reports every validation to the pruner; a diverging run prunes the trial
    with its reason recorded.
    """
    from optuna_integration import PyTorchLightningPruningCallback

    from rnnstudy.train import train

    params = suggest(trial, exp, cell.cfg)
    cfg = apply_overrides(cell.cfg, params)
    values, runs = [], []
    for i, seed in enumerate(exp.seeds):
        run_cfg = cfg.model_copy(update={"seed": seed})
        callbacks = [PyTorchLightningPruningCallback(trial, MONITOR)] if i == 0 and exp.study.pruner != "none" else []
        meta = {"study": cell.study, "trial": trial.number, "params": params, "seed": seed}
        result = train(run_cfg, callbacks=callbacks, meta=meta, group=cell.study, tag=f"-t{trial.number}")
        runs.append(result.run_id)
        trial.set_user_attr("run_ids", runs)
        if result.status == "diverged":
            trial.set_user_attr("reason", f"diverged: {result.reason}")
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        values.append(result.final.get("norm_loss", math.nan))
        trial.set_user_attr("solved", [*trial.user_attrs.get("solved", []), result.solved])
    return float(sum(values) / len(values))


def _counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    return counts


def work(exp: Experiment, storage: RDBStorage) -> None:
    """One worker: take trials study by study until every study holds its target.

    Running trials of other workers count towards the target, so N workers do not overshoot
    it; stale trials of killed workers are failed (and re-queued) first.
    """
    target = exp.study.trials
    for cell in cells(exp):
        study = load_study(cell.study, storage, exp, cell.cfg)
        while True:
            fail_stale_trials(study)
            counts = _counts(study)
            if counts["complete"] + counts["pruned"] + counts["running"] >= target:
                break
            if counts["fail"] >= 2 * target:
                print(f"{cell.study}: {counts['fail']} failed trials; giving up on it (see run.json reasons)", file=sys.stderr)
                break
            study.optimize(lambda trial, cell=cell: objective(trial, exp, cell), n_trials=1, catch=(Exception,))


def _worker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rnnstudy-worker")
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    exp = load_experiment(args.experiment, args.overrides)
    storage, _ = open_storage(os.environ.get(STORAGE_ENV), exp, exp.base())
    try:
        work(exp, storage)
    except KeyboardInterrupt:
        return 130
    return 0


def summary(studies: list[optuna.Study], target: int) -> dict[str, Any]:
    """Trial counts over all studies and the best value per study."""
    totals = {"complete": 0, "pruned": 0, "fail": 0, "running": 0}
    best = {}
    for study in studies:
        c = _counts(study)
        for k in totals:
            totals[k] += c[k]
        try:
            best[study.study_name] = (study.best_value, study.best_params)
        except ValueError:
            pass
    totals["target"] = target * len(studies)
    return {"totals": totals, "best": best}


def _progress_line(s: dict[str, Any], started: float) -> str:
    t = s["totals"]
    done = t["complete"] + t["pruned"]
    elapsed = time.time() - started
    eta = ""
    if done and t["target"] > done:
        eta = f", ETA {(t['target'] - done) * elapsed / done / 60:.1f} min (this session's pace)"
    best = min(s["best"].items(), key=lambda kv: kv[1][0], default=None)
    best_text = f", best {best[0]} = {best[1][0]:.4f}" if best else ""
    return (
        f"[{time.strftime('%H:%M:%S')}] trials {done}/{t['target']} finished (complete {t['complete']}, "
        f"pruned {t['pruned']}), failed {t['fail']}, running {t['running']}{best_text}{eta}"
    )


def _prepare(path: str, storage_url: str | None, overrides: list[str]) -> tuple[Experiment, RunConfig, str, list[optuna.Study]]:
    exp = load_experiment(path, overrides)
    base = exp.base()
    storage, url = open_storage(storage_url, exp, base)
    studies = [load_study(c.study, storage, exp, c.cfg) for c in cells(exp)]
    return exp, base, url, studies


def run_sweep(path: str, workers: int = 1, gpus: str = "", storage: str | None = None, overrides: list[str] | None = None) -> int:
    """Create the studies, start the workers, print progress until they finish."""
    if workers < 1:
        raise ConfigError(f"--workers = {workers}: need at least 1")
    exp, base, url, studies = _prepare(path, storage, overrides or [])
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()]
    slots = [(g, w) for g in gpu_list for w in range(workers)] or [(None, w) for w in range(workers)]
    threads = max(1, (os.cpu_count() or 1) // len(slots))
    print(
        f"sweep {exp.name}: {len(studies)} studies x {exp.study.trials} trials x {len(exp.seeds)} seeds, "
        f"{len(slots)} workers{' on GPUs ' + ','.join(gpu_list) if gpu_list else ''}; storage {mask(url)}; "
        f"results {base.out / exp.name}",
        flush=True,
    )
    procs = []
    for gpu, _ in slots:
        env = {**os.environ, STORAGE_ENV: url}
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        cmd = [sys.executable, "-m", "rnnstudy.sweep", path, *(overrides or []), "--threads", str(threads)]
        procs.append(subprocess.Popen(cmd, env=env))
    started, code = time.time(), 0
    next_line = started + PROGRESS_EVERY_S
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1)
            if time.time() >= next_line:
                next_line += PROGRESS_EVERY_S
                print(_progress_line(summary(studies, exp.study.trials), started), flush=True)
    except KeyboardInterrupt:
        print("stopping workers (their running trials end as failed) ...", file=sys.stderr, flush=True)
        _stop(procs)
        code = 130
    failed = [p.returncode for p in procs if p.returncode not in (0, None)]
    print(_progress_line(summary(studies, exp.study.trials), started), flush=True)
    _print_table(studies, exp.study.trials)
    _summarise_to_wandb(exp, base, studies)
    return code or (1 if failed else 0)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Let workers that got Ctrl-C with us finish; interrupt the others, then kill what still hangs."""
    for signal_to_send, grace in ((None, 15), (signal.SIGINT, 60), (signal.SIGKILL, 5)):
        deadline = time.time() + grace
        for p in procs:
            if signal_to_send is not None and p.poll() is None:
                p.send_signal(signal_to_send)
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.2)


def _print_table(studies: list[optuna.Study], target: int) -> None:
    width = max([len("study"), *(len(s.study_name) for s in studies)])
    print(f"{'study':<{width}} {'done':>5} {'pruned':>6} {'failed':>6} {'run':>4} {'best':>9}  best parameters")
    for study in studies:
        c = _counts(study)
        try:
            best, params = f"{study.best_value:.4f}", json.dumps(study.best_params)
        except ValueError:
            best, params = "-", ""
        done = f"{c['complete'] + c['pruned']}/{target}"
        print(f"{study.study_name:<{width}} {done:>5} {c['pruned']:>6} {c['fail']:>6} {c['running']:>4} {best:>9}  {params}")


def print_status(path: str, storage: str | None = None, overrides: list[str] | None = None) -> int:
    """``rnnstudy status``: the table of studies, trial counts and best parameters."""
    exp, _, url, studies = _prepare(path, storage, overrides or [])
    print(f"experiment {exp.name}; storage {mask(url)}")
    _print_table(studies, exp.study.trials)
    return 0


def _summarise_to_wandb(exp: Experiment, base: RunConfig, studies: list[optuna.Study]) -> None:
    """One W&B run per study: best parameters, best value, parameter importances."""
    if base.wandb.mode == "disabled":
        return
    import wandb

    from rnnstudy.tracking import SETTINGS

    folder = base.out / exp.name / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    for study in studies:
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not finished:
            continue
        importances = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError):
            pass
        run = wandb.init(
            project=base.wandb.project or exp.name,
            entity=base.wandb.entity,
            group=study.study_name,
            job_type="study-summary",
            name=f"summary {study.study_name}",
            dir=str(folder),
            mode=base.wandb.mode,
            config={"best_params": study.best_params, "study": study.study_name},
            settings=wandb.Settings(**SETTINGS),
            reinit="create_new",
        )
        try:
            run.summary.update(
                {
                    "best_value": study.best_value,
                    "complete_trials": len(finished),
                    **{f"importance/{k}": v for k, v in importances.items()},
                }
            )
        finally:
            run.finish()


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
