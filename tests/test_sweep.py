"""The sweep end to end: worker processes, resumption, top-up, a killed worker, bad storage."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from conftest import cli

from rnnstudy.cli import main
from rnnstudy.config import load_experiment
from rnnstudy.store import load
from rnnstudy.sweep import cells, load_study, mask, open_storage

SHRINK = [
    "train.steps=20",
    "train.val_every=10",
    "task.val_size=64",
    "model.hidden_size=8",
    "train.batch_size=16",
    "wandb.mode=disabled",
]


def study_states(db, names):
    url = f"sqlite:///{db}"
    return {n: [t.state for t in optuna.load_study(study_name=n, storage=url).trials] for n in names}


def finished(states):
    return sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)


def test_demo_sweep_resumes_and_tops_up(tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["sweep", "experiments/demo.yaml", "--workers", "2", f"out={out}", *SHRINK, "study.trials=2"]
    assert main(args) == 0
    exp = load_experiment("experiments/demo.yaml", [f"out={out}"])
    names = [c.study for c in cells(exp)]
    assert names[0] == "demo/rnn_tanh/adding/T=10" and len(names) == 6
    db = out / "demo" / "optuna.db"
    first = study_states(db, names)
    assert all(finished(s) >= 2 for s in first.values())
    runs = load(out / "demo").runs
    n_trials = sum(len(s) for s in first.values())
    assert len(runs) == n_trials  # one seed: one run per trial
    assert set(runs["meta.study"]) == set(names)
    assert set(runs["status"]) <= {"complete", "pruned"}
    assert main(args) == 0  # rerun: nothing to do
    assert study_states(db, names) == first
    assert main([*args[:-1], "study.trials=3"]) == 0  # raise the target: top up
    assert all(finished(s) >= 3 for s in study_states(db, names).values())
    table = capsys.readouterr().out
    assert "demo/gru/adding/T=30" in table and "best parameters" in table


def _second_run_training(tmp_path):
    """Whether trial 1's run has flushed its first validation (it is inside Lightning's training loop)."""
    return any((f / "metrics.parquet").exists() for f in (tmp_path / "runs" / "kill").glob("*-t1-*"))


def start_sweep_until_second_trial_runs(tmp_path):
    """Start a 1-worker sweep as its own process group; return it once trial 1 completed and trial 2 trains."""
    exp = tmp_path / "kill.yaml"
    exp.write_text(
        "name: kill\nmodel: {hidden_size: 16, cell: gru}\ntask: {name: adding, T: 30, val_size: 64}\n"
        "train: {steps: 400, batch_size: 32, val_every: 100, progress: false}\nwandb: {mode: disabled}\n"
        "search:\n  init.gain: {type: float, low: 0.5, high: 1.5}\n  init.recurrent: {type: categorical, choices: [orthogonal]}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: 3, heartbeat_s: 1, pruner: none}}\n"
    )
    db = tmp_path / "runs" / "kill" / "optuna.db"
    cmd = cli("sweep", str(exp), "--workers", "1")
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # poll read-only: never race the sweep creating the schema
        time.sleep(0.3)
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                states = [row[0] for row in con.execute("select state from trials")]
        except sqlite3.Error:
            continue
        if states.count("COMPLETE") == 1 and "RUNNING" in states and _second_run_training(tmp_path):
            return proc, cmd, db
    proc.kill()
    pytest.fail("sweep never reached a running second trial")


def test_killed_worker_trial_is_failed_and_retried(tmp_path):
    name = "kill/gru/adding/T=30"
    proc, cmd, db = start_sweep_until_second_trial_runs(tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.5)  # past the heartbeat grace period (2 x heartbeat_s)
    assert subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    trials = study.trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(failed) == 1 and len(done) == 3
    retry = [t for t in done if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].params == failed[0].params

    runs = load(tmp_path / "runs" / "kill").runs
    by_trial = runs.groupby("meta.trial")["status"].apply(list).to_dict()
    assert by_trial[failed[0].number] == ["failed"]
    assert "heartbeat" in runs.loc[runs["meta.trial"] == failed[0].number, "reason"].iloc[0]
    assert sorted(t.number for t in done) == sorted(k for k, v in by_trial.items() if v == ["complete"])
    for t in done:  # the store holds the same final value Optuna does
        run = runs[runs["meta.trial"] == t.number].iloc[0]
        assert run["final.norm_loss"] == pytest.approx(t.value)


def test_unreachable_storage_is_masked_exit_2(capsys):
    code = main(["sweep", "experiments/demo.yaml", "--storage", "postgresql+psycopg2://bob:s3cret@127.0.0.1:9/db"])
    err = capsys.readouterr().err
    assert code == 2 and "postgresql+psycopg2://bob:***@127.0.0.1:9/db" in err and "s3cret" not in err
    assert mask("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_diverging_trial_is_pruned_with_reason(tmp_path):
    exp = tmp_path / "div.yaml"
    exp.write_text(
        "name: div\nmodel: {hidden_size: 8, cell: rnn_relu}\ntask: {name: adding, T: 30, val_size: 64}\n"
        "train: {steps: 20, batch_size: 16, val_every: 10, progress: false, optimizer: sgd, lr: 1.0e+30, clip: null}\n"
        "init: {recurrent: identity, scale: 50.0}\nwandb: {mode: disabled}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: 1}}\n"
    )
    assert main(["sweep", str(exp)]) == 0
    study = optuna.load_study(study_name="div/rnn_relu/adding/T=30", storage=f"sqlite:///{tmp_path}/runs/div/optuna.db")
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.user_attrs["reason"].startswith("diverged")
    info = json.loads(next((tmp_path / "runs" / "div").glob("*/run.json")).read_text())
    assert info["status"] == "diverged" and info["meta"]["trial"] == 0


def test_conditional_and_per_cell_parameters(tmp_path):
    from rnnstudy.sweep import suggest

    exp = load_experiment("experiments/memory_length.yaml")
    by_cell = {c.cfg.model.cell: c.cfg for c in cells(exp) if c.cfg.task.name == "adding" and c.cfg.task.T == 100}
    space = {"init.recurrent": "identity", "init.scale": 0.9, "init.bias": "chrono", "train.lr": 1e-3}
    lstm = suggest(optuna.trial.FixedTrial(space), exp, by_cell["lstm"])
    assert lstm == {"init.recurrent": "identity", "init.scale": 0.9, "init.bias": "chrono", "train.lr": 1e-3}
    rnn = suggest(optuna.trial.FixedTrial({**space, "init.bias": "zero"}), exp, by_cell["rnn_tanh"])
    assert rnn["init.bias"] == "zero" and "init.gain" not in rnn and "init.forget_bias" not in rnn
    forget = suggest(optuna.trial.FixedTrial({**space, "init.bias": "forget", "init.forget_bias": 2.0}), exp, by_cell["lstm"])
    assert forget["init.forget_bias"] == 2.0


def test_study_summary_run_in_wandb(tmp_path):
    from wandb_records import finished_run

    from rnnstudy.sweep import _summarise_to_wandb

    exp = load_experiment("experiments/demo.yaml", [f"out={tmp_path}", "wandb.mode=offline"])
    study = optuna.create_study(study_name="demo/lstm/adding/T=10")
    for gain, value in ((0.5, 0.3), (1.0, 0.1), (1.5, 0.2)):
        study.enqueue_trial({"init.gain": gain})
        study.optimize(lambda t, v=value: (t.suggest_float("init.gain", 0.1, 2.0), v)[1], n_trials=1)
    _summarise_to_wandb(exp, exp.base(), [study])
    (run_dir,) = (tmp_path / "demo" / "studies" / "wandb").glob("offline-run-*")
    run = finished_run(run_dir)
    assert run.job_type == "study-summary" and run.group == "demo/lstm/adding/T=10" and run.project == "demo"
    assert run.config["best_params"] == {"init.gain": 1.0}
    assert run.summary["best_value"] == pytest.approx(0.1) and run.summary["complete_trials"] == 3


WORKER = """
import sys
from rnnstudy.config import load_experiment
from rnnstudy.sweep import load_study, open_storage
exp = load_experiment("experiments/demo.yaml", ["out=" + sys.argv[1]])
storage, _ = open_storage(sys.argv[2] or None, exp, exp.base())
study = load_study("concurrency", storage, exp, exp.base())
study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=25)
"""


def run_four_workers(out, url):
    exp = load_experiment("experiments/demo.yaml", [f"out={out}"])
    storage, _ = open_storage(url, exp, exp.base())
    load_study("concurrency", storage, exp, exp.base())  # created before the workers start, as the sweep does
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(out), url or ""], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert not any("locked" in e.lower() or "error" in e.lower() for e in errors), errors
    trials = optuna.load_study(study_name="concurrency", storage=storage).trials
    assert len(trials) == 100
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(100))


def test_four_workers_on_default_storage(tmp_path):
    run_four_workers(tmp_path, None)
    assert (tmp_path / "demo" / "optuna.db").exists()


def test_four_workers_on_postgresql(tmp_path, postgres_url):
    run_four_workers(tmp_path, postgres_url)


def test_ctrl_c_fails_running_trial_and_finishes_cleanly(tmp_path):
    proc, _, db = start_sweep_until_second_trial_runs(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=120) == 130
    study = optuna.load_study(study_name="kill/gru/adding/T=30", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]
    runs = load(tmp_path / "runs" / "kill").runs.sort_values("meta.trial")
    assert list(runs["status"]) == ["complete", "failed"] and runs["reason"].iloc[1] == "interrupted (Ctrl-C)"
