"""``rnnstudy sweep``: create every study of an experiment, start its workers, print progress until they end.

The parent opens the storage (`rnnstudy.study.storage`), creates each study before any worker starts,
then runs worker processes (`rnnstudy.study.worker`) locally or as a scheduler's array tasks
(`rnnstudy.study.launch`). Each worker takes trials until every study holds ``study.trials`` finished
(complete or pruned) trials, so a rerun tops up and never repeats; heartbeats let a restarted
sweep fail the trial of a killed worker and retry it with the same parameters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from optuna.storages import BaseStorage

from rnnstudy.errors import ConfigError, stop_reason, stop_signal, stop_status
from rnnstudy.names import DEAD, SUPERSEDED, SWEEP_COMMAND_ENV
from rnnstudy.run.config import RunConfig
from rnnstudy.run.device import check_gpus, has_cuda, preflight, query_compute_modes, worker_threads, workers_per_gpu
from rnnstudy.run.records import command_line
from rnnstudy.run.store import status_counts
from rnnstudy.study.experiment import Experiment, load_experiment
from rnnstudy.study.launch import ClusterOptions
from rnnstudy.study.stages import adaptive, lines
from rnnstudy.study.storage import JOURNAL, STORAGE_ENV, check_journal, default_db, mask, open_storage
from rnnstudy.study.studies import experiment_studies, load_study, print_table, summary

PROGRESS_EVERY_S = 15
#: How many times a local worker slot is restarted after its worker was killed (the OOM killer, kill -9).
RESTARTS_PER_WORKER = 10
#: Signals that ask a worker to stop: a worker ended by one is not replaced.
STOPPING = (signal.SIGINT, signal.SIGTERM)


def _progress_line(exp: Experiment, storage: BaseStorage, started: float) -> str:
    """One progress line: trials finished, failed and running, the best study, and an ETA (or, staged, the lines done)."""
    s = summary(experiment_studies(storage, exp.name), exp.target)
    t = s["totals"]
    done = t["complete"] + t["pruned"]
    elapsed = time.time() - started
    if adaptive(exp):
        planned = lines(exp)
        finished = sum(stage.next(storage, line).done for stage, line in planned)
        where = f"; {finished}/{len(planned)} lines of every stage done (a line's T are chosen as it goes)"
        total = "?"
    else:
        total = t["target"]
        where = f", ETA {(total - done) * elapsed / done / 60:.1f} min (this session's pace)" if done and total > done else ""
    best = min(s["best"].items(), key=lambda kv: kv[1][0], default=None)
    best_text = f", best {best[0]} = {best[1][0]:.4f}" if best and not exp.T_search else ""
    return (
        f"[{time.strftime('%H:%M:%S')}] trials {done}/{total} finished (complete {t['complete']}, "
        f"pruned {t['pruned']}), failed {t['fail']}, running {t['running']}{best_text}{where}"
    )


def _prepare(path: str, storage_url: str | None, overrides: list[str]) -> tuple[Experiment, RunConfig, BaseStorage, str]:
    """Load and check the experiment, open the storage, create the studies known before any trial (the first T of a search)."""
    exp = load_experiment(path, overrides)
    base = exp.base()
    if storage_url and storage_url.startswith(JOURNAL):
        check_journal(storage_url, create=True)  # before the results folder exists: a bad storage writes nothing
    existed = (base.out / exp.name).exists()
    preflight(base)  # before the storage or any study exists
    try:
        storage, url = open_storage(storage_url, exp, base)
    except ConfigError:
        if not existed and not any((base.out / exp.name).iterdir()):
            (base.out / exp.name).rmdir()  # a rejected sweep leaves no empty results folder behind
        raise
    for stage, point in lines(exp):
        if stage.upfront(point):
            load_study(point, storage, exp)
    return exp, base, storage, url


def run_sweep(
    path: str,
    workers: int = 1,
    gpus: str = "",
    storage: str | None = None,
    overrides: list[str] | None = None,
    launcher: str = "local",
    cluster: ClusterOptions | None = None,
    on_done: Callable[[Experiment, RunConfig, list], None] | None = None,
) -> int:
    """Create the studies, start the workers (local processes or a scheduler's array tasks), print progress until they
    finish; ``on_done`` then gets the experiment, its run defaults and its studies (the CLI summarises them to W&B)."""
    if workers < 1:
        raise ConfigError(f"--workers = {workers}: need at least 1")
    check_gpus([g.strip() for g in gpus.split(",") if g.strip()])  # before the storage or any study exists
    exp, base, opened, url = _prepare(path, storage, overrides or [])
    studies = experiment_studies(opened, exp.name)
    results = base.out / exp.name
    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()]
    per_gpu = workers_per_gpu(gpu_list, workers, query_compute_modes() if gpu_list and workers > 1 else {})
    if single := [g for g, n in per_gpu.items() if n < workers]:
        print(f"GPU {', '.join(single)}: exclusive-process compute mode, so one worker there (not {workers})", flush=True)
    slots = [(g, w) for g in gpu_list for w in range(per_gpu[g])] or [(None, w) for w in range(workers)]
    where = f"{launcher} array of {workers} tasks" if launcher != "local" else f"{len(slots)} local workers"
    device = f"GPUs {','.join(gpu_list)}" if gpu_list else ("cuda" if has_cuda() else "cpu")
    print(
        f"sweep {exp.name}: {len(studies)} studies{' so far' if exp.T_search else ''} x {exp.target} trials x "
        f"{len(exp.seeds)} seeds, {where}; "
        f"device {device}; storage {mask(url)}; results {results}",
        flush=True,
    )
    if launcher == "local":
        threads = worker_threads(len(slots), dict(os.environ))
        handles = [_start_worker(path, overrides or [], url, gpu, threads) for gpu, _ in slots]
        restarts = [0] * len(slots)

        def alive() -> bool:
            for i, p in enumerate(handles):
                code = p.poll()
                if code is not None and code < 0 and -code not in STOPPING and restarts[i] < RESTARTS_PER_WORKER:
                    restarts[i] += 1
                    handles[i] = _start_worker(path, overrides or [], url, slots[i][0], threads)
                    said = f"worker {p.pid} was killed ({signal.Signals(-code).name}); started worker {handles[i].pid}"
                    print(f"{said} in its place (restart {restarts[i]} of {RESTARTS_PER_WORKER})", file=sys.stderr, flush=True)
            return any(p.poll() is None for p in handles)

        def stop() -> None:
            _stop(handles, stop_signal())
    else:
        from rnnstudy.study.launch import storage_for_cluster, submit

        if warning := storage_for_cluster(url):
            print(warning, file=sys.stderr)
        handed = {STORAGE_ENV: url, SWEEP_COMMAND_ENV: command_line()}
        previous = {name: os.environ.get(name) for name in handed}
        os.environ.update(handed)  # the tasks inherit them at submission: never written to a file or a command line
        try:
            handles = submit(results, path, overrides or [], launcher, workers, cluster or ClusterOptions())
        finally:
            for name, value in previous.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value
        print(f"submitted {launcher} jobs {', '.join(str(j.job_id) for j in handles)}; logs under {results / 'jobs'}", flush=True)
        alive, stop = (lambda: not all(j.done() for j in handles)), (lambda: [j.cancel() for j in handles])
    started, code = time.time(), 0
    next_line = started + PROGRESS_EVERY_S
    try:
        while alive():
            time.sleep(1)
            if time.time() >= next_line:
                next_line += PROGRESS_EVERY_S
                print(_progress_line(exp, opened, started), flush=True)
    except KeyboardInterrupt:
        print(f"stopping workers ({stop_reason()}: their running trials end as failed) ...", file=sys.stderr, flush=True)
        stop()
        code = stop_status()
    failed = [p.returncode for p in handles if p.returncode not in (0, None)] if launcher == "local" else []
    print(_progress_line(exp, opened, started), flush=True)
    studies = experiment_studies(opened, exp.name)
    print_table(studies, exp.target)
    if on_done is not None:
        on_done(exp, base, studies)
    return code or (1 if failed else 0)


def _start_worker(path: str, overrides: list[str], url: str, gpu: str | None, threads: int) -> subprocess.Popen:
    """One local worker process; the storage URL goes in its environment, never its command line."""
    env = {**os.environ, STORAGE_ENV: url, SWEEP_COMMAND_ENV: command_line()}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # an index means what nvidia-smi (and the Makefile) numbers
    return subprocess.Popen([sys.executable, "-m", "rnnstudy.study.worker", path, *overrides, "--threads", str(threads)], env=env)


def _stop(procs: list[subprocess.Popen], came: signal.Signals = signal.SIGINT) -> None:
    """Hand the signal that came on to every worker at once (one that got it already, as a terminal's Ctrl-C reaches
    the whole group, notes the repeat and finishes its records: rnnstudy.errors.stop_on_signals), so their records
    name it; kill what still hangs a minute later."""
    for signal_to_send, grace in ((came, 60), (signal.SIGKILL, 5)):
        deadline = time.time() + grace
        for p in procs:
            if signal_to_send is not None and p.poll() is None:
                p.send_signal(signal_to_send)
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.2)


def print_status(path: str, storage: str | None = None, overrides: list[str] | None = None) -> int:
    """``rnnstudy status``: the table of studies, trial counts and best parameters; it creates nothing."""
    exp = load_experiment(path, overrides or [])
    base = exp.base()
    if storage is None and not default_db(base).exists():
        print(f"experiment {exp.name}: not swept yet (no {default_db(base)}); {len(exp.points())} studies planned")
        return 0
    opened, url = open_storage(storage, exp, base, create=False)
    try:
        studies = experiment_studies(opened, exp.name)
    except Exception as err:
        raise ConfigError(f"storage {mask(url)}: cannot read it: {' '.join(str(err).split())[:200]}") from None
    points = exp.points()
    planned = f"{len(points)} lines, their T chosen as they go" if exp.T_search else f"{len(points)} studies planned"
    print(f"experiment {exp.name}; storage {mask(url)}; {len(studies)} studies started ({planned})")
    print_table(studies, exp.target)
    runs = status_counts(base.out / exp.name)
    if runs:
        dead = f" ({DEAD}: killed, their lock is free; rerun the sweep to resume them)" if runs.get(DEAD) else ""
        if runs.get(SUPERSEDED):
            dead += f" ({SUPERSEDED}: earlier attempts at runs trained again in another folder; no report reads them)"
        print("runs: " + ", ".join(f"{n} {status}" for status, n in sorted(runs.items())) + dead)
    from rnnstudy.study.launch import job_states

    jobs = job_states(base.out / exp.name)
    if jobs:
        print("scheduler jobs: " + ", ".join(f"{job} {state}" for job, state in jobs))
    return 0
