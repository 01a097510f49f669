"""Chaos soak: a sweep under repeated worker kills, a killed and restarted parent and a database restart.

Afterwards nothing is lost or doubled: every study holds exactly its trials, no run key holds two
completed runs, every run's record is final, no worker is left, every W&B record is finished and the
report reads every run. Slow (minutes): ``make test-slow``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from conftest import cli
from wandb_records import inspect

from rnnstudy.names import COMPLETE, DIVERGED, FAILED, PRUNED
from rnnstudy.run.store import load, run_folders, status_of
from rnnstudy.study.experiment import load_experiment

pytestmark = pytest.mark.slow

TRIALS = 20  # per study; two studies: 40 trials, 80 runs
#: The soak's length is bounded: it fails rather than hangs.
DEADLINE_S = 1200


def soak_experiment(tmp_path: Path, name: str) -> Path:
    """Two searched studies of 20 two-seed trials, each run a few seconds (long enough that the chaos schedule of
    :func:`soak` lands while the sweep runs), offline W&B, 1 s heartbeats."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: {{hidden_size: 4, cell: rnn_tanh}}\ntask: {{name: adding, T: 6, val_size: 16}}\n"
        "train: {steps: 1000, batch_size: 8, val_every: 250, progress: false}\nprobe: {every: 250}\n"
        "wandb: {mode: offline}\nseeds: [0, 1]\n"
        "families: {orthogonal: {init.recurrent: orthogonal}, xavier: {init.recurrent: xavier}}\n"
        "search: {init.gain: {type: float, low: 0.5, high: 1.5}}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: {TRIALS}, pruner: none, heartbeat_s: 1}}\n"
    )
    return path


@dataclass
class Chaos:
    """What the soak did to the sweep, for the assertions and the record."""

    worker_kills: int = 0
    parent_kills: int = 0
    database_restarts: int = 0
    logs: list[Path] = field(default_factory=list)


def _workers(parent: subprocess.Popen) -> list[int]:
    """The parent's worker processes (not the W&B service it starts for the study summaries)."""
    out = subprocess.run(["pgrep", "-P", str(parent.pid), "-f", "rnnstudy.study.worker"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _sweep(path: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen(cli("sweep", str(path), "--workers", str(env["SOAK_WORKERS"])), env=env,
                                stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip


def soak(path: Path, env: dict, tmp_path: Path, server=None, seed: int = 0) -> Chaos:
    """Run the sweep under chaos until it ends: SIGKILL a random worker every 10-20 s, the parent once, the database once."""
    rng, chaos = random.Random(seed), Chaos()
    started = time.time()
    chaos.logs.append(tmp_path / "sweep-0.log")
    parent = _sweep(path, env, chaos.logs[-1])
    next_kill = started + rng.uniform(10, 20)
    parent_kill_at, restart_db_at = started + 35, started + 60
    while parent.poll() is None:
        assert time.time() - started < DEADLINE_S, "the soaked sweep did not end"
        now = time.time()
        if now >= next_kill and (workers := _workers(parent)):
            os.kill(rng.choice(workers), signal.SIGKILL)
            chaos.worker_kills += 1
            next_kill = now + rng.uniform(10, 20)
        if not chaos.parent_kills and now >= parent_kill_at:
            parent.kill()
            parent.wait()
            chaos.parent_kills += 1
            chaos.logs.append(tmp_path / "sweep-1.log")
            parent = _sweep(path, env, chaos.logs[-1])
        if server is not None and not chaos.database_restarts and now >= restart_db_at:
            server.stop()
            time.sleep(5)
            server.start()
            chaos.database_restarts += 1
        time.sleep(0.2)
    chaos.logs.append(tmp_path / "sweep-rerun.log")
    rerun = subprocess.run(cli("sweep", str(path), "--workers", str(env["SOAK_WORKERS"])), env=env,
                           capture_output=True, text=True)  # fmt: skip
    chaos.logs[-1].write_text(rerun.stdout + rerun.stderr)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return chaos


def check_nothing_lost_or_doubled(path: Path, url: str, tmp_path: Path, chaos: Chaos) -> None:
    """The soak's acceptance: exact counts, no doubled run, every record final, no process left, report reads all."""
    exp = load_experiment(str(path))
    for point in exp.points():
        trials = optuna.load_study(study_name=point.study, storage=url).trials
        finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
        running = [(t.number, t.datetime_start, t.user_attrs, t.intermediate_values) for t in trials if t.state.name == "RUNNING"]
        assert len(finished) == TRIALS and not running, (point.study, len(finished), running)
    folder = tmp_path / "runs" / exp.name
    runs = load(folder).runs
    completed = runs.loc[runs["status"] == "complete", "key"]
    assert not completed.duplicated().any(), completed[completed.duplicated()].tolist()
    statuses = {f.name: status_of(f) for f in run_folders(folder)}
    assert not {n: s for n, s in statuses.items() if s not in (COMPLETE, PRUNED, DIVERGED, FAILED)}, statuses
    assert len(runs) == len(statuses)
    left = subprocess.run(["pgrep", "-f", f"rnnstudy.study.worker {path}"], capture_output=True, text=True).stdout.split()
    assert not left, f"workers left alive: {left}"
    unfinished = 0
    for wandb_file in folder.rglob("*.wandb"):
        types = {r["type"] for r in inspect(wandb_file.parent)}  # flushed every second: a kill keeps all but its last second
        unfinished += "exit" not in types
    assert unfinished <= chaos.worker_kills, (unfinished, chaos.worker_kills)  # only a killed process's own run
    report = subprocess.run(cli("report", str(folder), "--out", str(tmp_path / "report")), capture_output=True, text=True)
    assert report.returncode == 0 and "skipping" not in report.stderr, report.stderr[-2000:]
    text = "".join(log.read_text() for log in chaos.logs)
    assert "Traceback" not in text, text[text.index("Traceback") - 200 :][:3000]
    print(f"soak: {chaos.worker_kills} worker kills, {chaos.parent_kills} parent kill, "
          f"{chaos.database_restarts} database restarts, {len(statuses)} run folders, {unfinished} W&B records "
          "ended by a kill")  # fmt: skip


def test_soak_on_postgresql(tmp_path, postgres_server):
    path = soak_experiment(tmp_path, "soakpg")
    env = {**os.environ, "RNNSTUDY_STORAGE": postgres_server.url, "SOAK_WORKERS": "3"}
    chaos = soak(path, env, tmp_path, server=postgres_server)
    assert chaos.worker_kills >= 3 and chaos.parent_kills == 1 and chaos.database_restarts == 1
    said = [line.split(":")[0] for log in chaos.logs for line in log.read_text().splitlines() if "storage unreachable" in line]
    assert said and len(said) == len(set(said)), said  # the wait is said, once per outage and process
    check_nothing_lost_or_doubled(path, postgres_server.url, tmp_path, chaos)


def test_soak_on_sqlite(tmp_path):
    path = soak_experiment(tmp_path, "soaksq")
    env = {**os.environ, "SOAK_WORKERS": "2"}
    env.pop("RNNSTUDY_STORAGE", None)
    chaos = soak(path, env, tmp_path)
    assert chaos.worker_kills >= 3 and chaos.parent_kills == 1
    check_nothing_lost_or_doubled(path, f"sqlite:///{tmp_path / 'runs' / 'soaksq' / 'optuna.db'}", tmp_path, chaos)
