"""Optuna initialisation search: one study per grid cell, worker processes, resumable.

``rnnstudy sweep EXP.yaml`` opens the storage (SQLite under the results root by default, a
PostgreSQL URL for many boxes), creates every study before any worker starts, then runs worker
processes that take trials study by study until each holds ``study.trials`` finished (complete
or pruned) trials, so a rerun tops up and never repeats. Heartbeats let a restarted sweep fail
the trial of a killed worker and retry it with the same parameters.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from rnnstudy.config import (
    CategoricalParam,
    ConfigError,
    Experiment,
    GridPoint,
    IntParam,
    RunConfig,
    apply_overrides,
    current,
    load_experiment,
    param_applies,
    param_path,
)
from rnnstudy.launch import ClusterOptions
from rnnstudy.store import RUN_FILE, run_folders, write_json
from rnnstudy.tracking import check_mode

SCHEMA_ATTEMPTS = 10
#: What losing the race to create a new storage's schema looks like (SQLite and PostgreSQL); anything else is an error.
SCHEMA_RACE = ("unique", "locked", "already exists", "duplicate")
#: Trials that hold or will hold one of a study's places (a failed trial holds none).
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
STORAGE_ENV = "RNNSTUDY_STORAGE"
PROGRESS_EVERY_S = 15


def mask(url: str) -> str:
    """A storage URL safe to print or store: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable storage URL>"


def default_db(cfg: RunConfig) -> Path:
    """The default storage: a SQLite file under the experiment's results folder."""
    return (cfg.out / cfg.experiment / "optuna.db").resolve()


def default_storage(cfg: RunConfig) -> str:
    """The default storage's URL (its folder is created)."""
    path = default_db(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def storage_url(given: str | None = None, file: str | None = None) -> str | None:
    """The storage URL: ``--storage-file``, then ``--storage``, then ``$RNNSTUDY_STORAGE``; None means the default.

    A password is accepted only from the file or the environment: on a command line every local user sees it.
    """
    if file:
        try:
            given = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"--storage-file = {file!r}: cannot read it ({type(err).__name__})") from None
        if not given:
            raise ConfigError(f"--storage-file = {file!r}: the file is empty; it should hold one storage URL")
    elif given and _password(given):
        raise ConfigError(
            f"--storage = {mask(given)}: a password on the command line is visible to every local user; "
            f"allowed: --storage-file FILE or the {STORAGE_ENV} environment variable"
        )
    return given or os.environ.get(STORAGE_ENV) or None


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


def open_storage(url: str | None, exp: Experiment, cfg: RunConfig, create: bool = True) -> tuple[RDBStorage, str]:
    """Connect to the storage (creating the schema unless ``create`` is off); unreachable URLs are config errors.

    Several sweeps may start at once on a new storage: whoever loses the race to create the schema retries.
    """
    url = url or default_storage(cfg)
    heartbeat = exp.study.heartbeat_s
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                storage = RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=_RetryAndMark(cfg.out / cfg.experiment),
                    skip_table_creation=not create,
                )
                break
            except (IntegrityError, OperationalError) as err:
                if attempt == SCHEMA_ATTEMPTS - 1 or not any(w in str(err).lower() for w in SCHEMA_RACE):
                    raise
                time.sleep(0.2 + random.random())
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
    """The pruner; its steps are training steps (intermediate values are reported at the training step)."""
    s, every = exp.study, cfg.train.val_every
    if s.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=s.startup_trials, n_warmup_steps=s.warmup_validations * every, interval_steps=every
        )
    if s.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=max(every, cfg.train.steps))
    return optuna.pruners.NopPruner()


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


OBJECTIVE = "final validation loss / memoryless baseline (mean over seeds)"
SURPLUS = "surplus: other workers already hold every place of the study; nothing was trained"


class Surplus(RuntimeError):
    """A trial started after the study's places were all taken (two workers raced for the last one)."""


def load_study(point: GridPoint, storage: RDBStorage, exp: Experiment) -> optuna.Study:
    """Create or open one study with the experiment's sampler and pruner, its facts as user attributes."""
    study = optuna.create_study(
        study_name=point.study,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=_sampler(exp),
        pruner=_pruner(exp, point.cfg),
    )
    if study.user_attrs.get("study") != point.study:
        for key, value in {**point.facts(), "description": exp.description, "objective": OBJECTIVE}.items():
            study.set_user_attr(key, value)
        study.set_metric_names([OBJECTIVE])
    return study


def suggest(trial: optuna.Trial, exp: Experiment, cfg: RunConfig) -> dict[str, Any]:
    """Sample the search space: a parameter only where its ``when`` holds and a chosen scheme reads it."""
    chosen: dict[str, Any] = {}
    for key, spec in exp.search.items():
        path = param_path(key)
        if not param_applies(key, spec, lambda k: chosen[k] if k in chosen else current(cfg, k)):
            continue
        if isinstance(spec, CategoricalParam):
            chosen[path] = trial.suggest_categorical(path, spec.choices)
        elif isinstance(spec, IntParam):
            chosen[path] = trial.suggest_int(path, spec.low, spec.high, log=spec.log)
        else:
            chosen[path] = trial.suggest_float(path, spec.low, spec.high, log=spec.log)
    return chosen


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
    params = suggest(trial, exp, point.cfg)
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
        if result.status == "diverged":
            trial.set_user_attr("reason", f"diverged: {result.reason}")
            raise optuna.TrialPruned(f"diverged: {result.reason}")
        values.append(result.final.get("norm_loss", math.nan))
        trial.set_user_attr("solved", [*trial.user_attrs.get("solved", []), result.solved])
    return float(sum(values) / len(values))


def _counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state; ``fail`` leaves out the surplus trials a race ended before they trained."""
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("reason") != SURPLUS:
            counts[t.state.name.lower()] += 1
    return counts


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
    Stale trials of killed workers are failed and re-queued first.
    """
    target = exp.study.trials
    for point in exp.points():
        study = load_study(point, storage, exp)
        while True:
            fail_stale_trials(study)
            counts = _counts(study)
            if not counts["waiting"] and counts["complete"] + counts["pruned"] + counts["running"] >= target:
                break
            if counts["fail"] >= 2 * target:
                print(f"{point.study}: {counts['fail']} failed trials; giving up on it (see run.json reasons)", file=sys.stderr)
                break
            _run_one(study, exp, point)


def _worker_main(argv: list[str]) -> int:
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
    check_mode(base)  # before the storage or any study exists
    storage, url = open_storage(storage_url, exp, base)
    studies = [load_study(p, storage, exp) for p in exp.points()]
    return exp, base, url, studies


def run_sweep(
    path: str,
    workers: int = 1,
    gpus: str = "",
    storage: str | None = None,
    overrides: list[str] | None = None,
    launcher: str = "local",
    cluster: ClusterOptions | None = None,
) -> int:
    """Create the studies, start the workers (local processes or a scheduler's array tasks), print progress until they finish."""
    if workers < 1:
        raise ConfigError(f"--workers = {workers}: need at least 1")
    exp, base, url, studies = _prepare(path, storage, overrides or [])
    results = base.out / exp.name
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()]
    slots = [(g, w) for g in gpu_list for w in range(workers)] or [(None, w) for w in range(workers)]
    where = f"{launcher} array of {workers} tasks" if launcher != "local" else f"{len(slots)} local workers"
    device = f"GPUs {','.join(gpu_list)}" if gpu_list else ("cuda" if _has_cuda() else "cpu")
    print(
        f"sweep {exp.name}: {len(studies)} studies x {exp.study.trials} trials x {len(exp.seeds)} seeds, {where}; "
        f"device {device}; storage {mask(url)}; results {results}",
        flush=True,
    )
    if launcher == "local":
        threads = max(1, (os.cpu_count() or 1) // len(slots))
        handles = [_start_worker(path, overrides or [], url, gpu, threads) for gpu, _ in slots]
        alive, stop = (lambda: any(p.poll() is None for p in handles)), (lambda: _stop(handles))
    else:
        from rnnstudy.launch import storage_for_cluster, submit

        if warning := storage_for_cluster(url):
            print(warning, file=sys.stderr)
        previous = os.environ.get(STORAGE_ENV)
        os.environ[STORAGE_ENV] = url  # the tasks inherit it at submission: never written to a file or a command line
        try:
            handles = submit(results, path, overrides or [], launcher, workers, cluster or ClusterOptions())
        finally:
            if previous is None:
                del os.environ[STORAGE_ENV]
            else:
                os.environ[STORAGE_ENV] = previous
        print(f"submitted {launcher} jobs {', '.join(str(j.job_id) for j in handles)}; logs under {results / 'jobs'}", flush=True)
        alive, stop = (lambda: not all(j.done() for j in handles)), (lambda: [j.cancel() for j in handles])
    started, code = time.time(), 0
    next_line = started + PROGRESS_EVERY_S
    try:
        while alive():
            time.sleep(1)
            if time.time() >= next_line:
                next_line += PROGRESS_EVERY_S
                print(_progress_line(summary(studies, exp.study.trials), started), flush=True)
    except KeyboardInterrupt:
        print("stopping workers (their running trials end as failed) ...", file=sys.stderr, flush=True)
        stop()
        code = 130
    failed = [p.returncode for p in handles if p.returncode not in (0, None)] if launcher == "local" else []
    print(_progress_line(summary(studies, exp.study.trials), started), flush=True)
    _print_table(studies, exp.study.trials)
    _summarise_to_wandb(exp, base, studies)
    return code or (1 if failed else 0)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _start_worker(path: str, overrides: list[str], url: str, gpu: str | None, threads: int) -> subprocess.Popen:
    """One local worker process; the storage URL goes in its environment, never its command line."""
    env = {**os.environ, STORAGE_ENV: url}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return subprocess.Popen([sys.executable, "-m", "rnnstudy.sweep", path, *overrides, "--threads", str(threads)], env=env)


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
    """``rnnstudy status``: the table of studies, trial counts and best parameters; it creates nothing."""
    exp = load_experiment(path, overrides or [])
    base = exp.base()
    if storage is None and not default_db(base).exists():
        print(f"experiment {exp.name}: not swept yet (no {default_db(base)}); {len(exp.points())} studies planned")
        return 0
    opened, url = open_storage(storage, exp, base, create=False)
    try:
        existing = set(optuna.get_all_study_names(opened))
    except Exception as err:
        raise ConfigError(f"storage {mask(url)}: cannot read it: {' '.join(str(err).split())[:200]}") from None
    points = exp.points()
    studies = [optuna.load_study(study_name=p.study, storage=opened) for p in points if p.study in existing]
    print(f"experiment {exp.name}; storage {mask(url)}; {len(studies)} of {len(points)} studies started")
    _print_table(studies, exp.study.trials)
    from rnnstudy.launch import job_states

    jobs = job_states(base.out / exp.name)
    if jobs:
        print("scheduler jobs: " + ", ".join(f"{job} {state}" for job, state in jobs))
    return 0


#: Fewer finished trials than this give importances that mean nothing; they are not computed.
MIN_TRIALS_FOR_IMPORTANCE = 4


def study_importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances of one study, or nothing where they cannot mean anything.

    Needs ``MIN_TRIALS_FOR_IMPORTANCE`` complete trials; a parameter with a single value is left out.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [p for p in {k for t in complete for k in t.params} if len({t.params.get(p) for t in complete}) > 1]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE or not varied:
        return {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.importance.get_param_importances(study, params=sorted(varied))
        except (ValueError, RuntimeError):
            return {}


def summary_run_id(project: str, study: str) -> str:
    """A stable W&B run id for a study's summary run, so a rerun of the sweep updates it."""
    return "study-" + hashlib.sha1(f"{project}\0{study}".encode()).hexdigest()[:16]


def _summarise_to_wandb(exp: Experiment, base: RunConfig, studies: list[optuna.Study]) -> None:
    """One W&B run per study (stable id): best parameters, best value, parameter importances where they mean something."""
    if base.wandb.mode == "disabled":
        return
    import wandb

    from rnnstudy.tracking import SETTINGS

    folder = base.out / exp.name / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    project = base.wandb.project or exp.name
    for study in studies:
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not finished:
            continue
        run = wandb.init(
            project=project,
            entity=base.wandb.entity,
            id=summary_run_id(project, study.study_name),
            group=study.study_name,
            job_type="study-summary",
            name=f"summary {study.study_name}",
            dir=str(folder),
            mode=base.wandb.mode,
            config={"best_params": study.best_params, **study.user_attrs},
            settings=wandb.Settings(**SETTINGS),
            reinit="create_new",
            resume="allow",
        )
        try:
            run.summary.update(
                {
                    "best_value": study.best_value,
                    "complete_trials": len(finished),
                    **{f"importance/{k}": v for k, v in study_importances(study).items()},
                }
            )
        finally:
            run.finish()


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
