"""The sweep end to end: worker processes, resumption, top-up, a killed worker, bad storage."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import cli
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from rnnstudy.cli import main
from rnnstudy.names import SWEEP_COMMAND_ENV
from rnnstudy.run.records import command_line
from rnnstudy.run.store import load, run_folders
from rnnstudy.study.experiment import load_experiment
from rnnstudy.study.storage import mask, open_storage
from rnnstudy.study.studies import OBJECTIVE, SURPLUS


def study_states(db, names):
    url = f"sqlite:///{db}"
    return {n: [t.state for t in optuna.load_study(study_name=n, storage=url).trials] for n in names}


def finished(states):
    return sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)


def tiny_experiment(tmp_path, name="tiny", extra=""):
    """A two-study experiment (two families on the grid) that trains in about a second per trial."""
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(
        f"name: {name}\nmodel: {{hidden_size: 4, cell: gru}}\ntask: {{name: adding, T: 6, val_size: 32}}\n"
        "train: {steps: 10, batch_size: 8, val_every: 5, progress: false}\nprobe: {every: 5}\nwandb: {mode: disabled}\n"
        "families: {default: {}, orthogonal: {init.recurrent: orthogonal}}\n"
        "search: {init.gain: {type: float, low: 0.5, high: 1.5}, train.lr: {type: float, low: 0.001, high: 0.01, log: true}}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: 2, pruner: median, startup_trials: 5}}\n{extra}"
    )
    return exp


def test_sweep_resumes_tops_up_and_records_facts(tmp_path, capsys):
    exp_file = tiny_experiment(tmp_path)
    args = ["sweep", str(exp_file), "--workers", "2"]
    assert main(args) == 0
    exp = load_experiment(exp_file)
    points = exp.points()
    names = [p.study for p in points]
    assert names == ["tiny/gru/adding/T=6/default", "tiny/gru/adding/T=6/orthogonal"]
    db = tmp_path / "runs" / "tiny" / "optuna.db"
    first = study_states(db, names)
    assert all(finished(s) == 2 for s in first.values())
    runs = load(tmp_path / "runs" / "tiny").runs
    assert len(runs) == sum(finished(s) for s in first.values())  # one seed: one run per finished trial
    failed = [
        t for n in names for t in optuna.load_study(study_name=n, storage=f"sqlite:///{db}").trials if t.state.name == "FAIL"
    ]
    assert all(t.user_attrs.get("reason") == SURPLUS for t in failed)  # only a raced-for last place, which trains nothing
    assert set(runs["meta.study"]) == set(names) and set(runs["meta.family"]) == {"default", "orthogonal"}
    assert set(runs["status"]) == {"complete"}
    assert set(runs["launched_by"]) == {command_line()} and set(runs["command"]) != {command_line()}  # the user's, the worker's
    assert SWEEP_COMMAND_ENV not in os.environ  # handed to the workers, not left in this process
    default = runs[runs["meta.family"] == "default"]
    assert "meta.params.init.gain" not in default or default["meta.params.init.gain"].isna().all()  # default reads no gain
    assert runs[runs["meta.family"] == "orthogonal"]["meta.params.init.gain"].notna().all()
    study = optuna.load_study(study_name=names[1], storage=f"sqlite:///{db}")
    assert study.user_attrs["family"] == "orthogonal" and study.user_attrs["T"] == 6 and study.user_attrs["cell"] == "gru"
    assert study.metric_names == ["final_norm_loss"] and study.user_attrs["objective"] == OBJECTIVE
    assert "value_final_norm_loss" in study.trials_dataframe().columns  # a short identifier, not a sentence
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(set(t.intermediate_values) == {5, 10} for t in trained)  # reported at the training step
    assert main([*args[:-2], "--workers", "1"]) == 0  # rerun: nothing to do
    assert study_states(db, names) == first
    assert main([*args[:-2], "--workers", "1", "study.trials=3"]) == 0  # raise the target: top up
    assert all(finished(s) == 3 for s in study_states(db, names).values())
    table = capsys.readouterr().out
    assert "tiny/gru/adding/T=6/orthogonal" in table and "best parameters" in table


def _run_training(tmp_path, trial):
    """Whether the trial's run has flushed its first validation (it is inside Lightning's training loop)."""
    return any((f / "metrics.parquet").exists() for f in (tmp_path / "runs" / "kill").glob(f"*-t{trial}-*"))


def start_sweep_until_trial_trains(tmp_path, trial=0):
    """Start a 1-worker sweep as its own process group; return it once the trial trains (no time limit: it polls the sweep)."""
    exp = tmp_path / "kill.yaml"
    exp.write_text(
        "name: kill\nmodel: {hidden_size: 4, cell: gru}\ntask: {name: adding, T: 10, val_size: 32}\n"
        "train: {steps: 3000, batch_size: 8, val_every: 10, progress: false}\nprobe: {enabled: false}\nwandb: {mode: disabled}\n"
        "init: {recurrent: orthogonal}\nsearch:\n  init.gain: {type: float, low: 0.5, high: 1.5}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: 2, heartbeat_s: 1, pruner: none}}\n"
    )
    db = tmp_path / "runs" / "kill" / "optuna.db"
    cmd = cli("sweep", str(exp), "--workers", "1")
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None:  # poll read-only: never race the sweep creating the schema
        time.sleep(0.2)
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                states = [row[0] for row in con.execute("select state from trials")]
        except sqlite3.Error:
            continue
        if "RUNNING" in states and _run_training(tmp_path, trial):
            return proc, cmd, db
    pytest.fail(f"sweep ended (exit {proc.returncode}) before trial {trial} trained")


def test_killed_worker_trial_is_failed_retried_and_the_target_is_exact(tmp_path):
    name = "kill/gru/adding/T=10"
    proc, cmd, db = start_sweep_until_trial_trains(tmp_path, trial=0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(2.5)  # past the heartbeat grace period (2 x heartbeat_s)
    rerun = [*cmd[:-2], "--workers", "2", "train.steps=20"]  # two workers: one takes the retry, none may add a third trial
    assert subprocess.run(rerun, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
    trials = study.trials
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and "surplus" not in t.user_attrs.get("reason", "")]
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(failed) == 1 and failed[0].number == 0 and len(done) == 2  # exactly the target
    retry = [t for t in done if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].params == failed[0].params

    runs = load(tmp_path / "runs" / "kill").runs
    by_trial = runs.groupby("meta.trial")["status"].apply(list).to_dict()
    assert by_trial[0] == ["dead"]  # derived when read (its lock is free): no other process rewrote its run.json
    assert json.loads(next((tmp_path / "runs" / "kill").glob("*-t0-*/run.json")).read_text())["status"] == "running"
    assert sorted(t.number for t in done) == sorted(k for k, v in by_trial.items() if v == ["complete"])
    for t in done:  # the store holds the same final value Optuna does
        run = runs[runs["meta.trial"] == t.number].iloc[0]
        assert run["final.norm_loss"] == pytest.approx(t.value)


@pytest.mark.slow
def test_two_workers_on_one_journal_file_and_one_killed_mid_trial(tmp_path):
    """A cluster without a database server: workers share a journal file; a killed worker's trial is retried."""
    exp = tmp_path / "kill.yaml"
    exp.write_text(
        "name: kill\nmodel: {hidden_size: 4, cell: gru}\ntask: {name: adding, T: 10, val_size: 32}\n"
        "train: {steps: 20, batch_size: 8, val_every: 10, progress: false}\nprobe: {enabled: false}\nwandb: {mode: disabled}\n"
        "init: {recurrent: orthogonal}\nsearch:\n  init.gain: {type: float, low: 0.5, high: 1.5}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: 3, heartbeat_s: 1, pruner: none, sampler: random}}\n"
    )
    journal = tmp_path / "shared" / "studies.log"
    journal.parent.mkdir()
    env = {**os.environ, "RNNSTUDY_STORAGE": f"journal:{journal}"}

    def worker(*overrides):
        cmd = [sys.executable, "-m", "rnnstudy.study.worker", str(exp), *overrides, "--threads", "1"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    slow = worker("train.steps=100000")  # two array tasks on one journal: the first holds a trial that trains on
    while not any((f / "metrics.parquet").exists() for f in run_folders(tmp_path / "runs" / "kill")):
        assert slow.poll() is None, slow.stderr.read()
        time.sleep(0.2)
    quick = worker()
    assert quick.wait() == 0, quick.stderr.read()  # it ran the places the slow one does not hold, and ended
    assert slow.poll() is None
    slow.kill()  # mid-trial: its trial stays RUNNING in the journal, and its heartbeat stops
    slow.wait()
    assert worker().wait() == 0  # a third task: fails the silent trial after 2 x heartbeat_s and retries it

    storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.load_study(study_name="kill/gru/adding/T=10", storage=storage)
    states = [t.state for t in study.trials]
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and len(failed) == 1, states  # exactly the target
    retry = [t for t in done if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retry) == 1 and retry[0].params == failed[0].params
    assert failed[0].user_attrs["heartbeat"] < retry[0].datetime_start.timestamp()  # stamped while it ran, then silent
    runs = load(tmp_path / "runs" / "kill").runs
    killed = runs[runs["meta.trial"] == failed[0].number]
    assert list(killed["status"]) == ["failed"] and "heartbeat" in killed["reason"].iloc[0]
    assert not (tmp_path / "runs" / "kill" / "optuna.db").exists()  # the journal is the storage: no SQLite file beside it


def test_unreachable_storage_is_masked_exit_2(capsys):
    code = main(["sweep", "experiments/demo.yaml", "--storage", "postgresql+psycopg2://bob:s3cret@127.0.0.1:9/db"])
    err = capsys.readouterr().err
    assert code == 2 and "postgresql+psycopg2://bob:***@127.0.0.1:9/db" in err and "s3cret" not in err
    assert mask("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_a_journal_storage_that_cannot_be_opened_is_exit_2_and_nothing_is_written(tmp_path, capsys):
    missing = tmp_path / "no-folder" / "studies.log"
    assert main(["sweep", "experiments/demo.yaml", "--storage", f"journal:{missing}", f"out={tmp_path / 'runs'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"rnnstudy sweep: configuration error: storage journal:{missing}: no folder {missing.parent}; "
        "allowed: journal:PATH, a journal file in an existing folder"
    ]
    absent = tmp_path / "studies.log"
    assert main(["status", "experiments/demo.yaml", "--storage", f"journal:{absent}"]) == 2  # read-only: creates nothing
    assert "no journal file there (a sweep creates it)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("searched", [True, False])
def test_a_diverging_run_prunes_a_search_and_is_unsolved_at_a_fixed_point(tmp_path, searched):
    exp = tmp_path / "div.yaml"
    search = "search: {init.scale: {type: float, low: 40.0, high: 50.0}}\nstudy: {trials: 1, pruner: none}\n" if searched else ""
    exp.write_text(
        "name: div\nmodel: {hidden_size: 8, cell: rnn_relu}\ntask: {name: adding, T: 30, val_size: 64}\n"
        "train: {steps: 20, batch_size: 16, val_every: 10, progress: false, optimizer: sgd, lr: 1.0e+30, clip: null}\n"
        "init: {recurrent: identity, scale: 50.0}\nwandb: {mode: disabled}\nseeds: [0, 1]\n"
        f"out: {tmp_path / 'runs'}\n{search}"
    )
    assert main(["sweep", str(exp)]) == 0
    study = optuna.load_study(study_name="div/rnn_relu/adding/T=30", storage=f"sqlite:///{tmp_path}/runs/div/optuna.db")
    (trial,) = study.trials
    if searched:  # a search prunes the trial at its first diverged seed, with the reason
        assert trial.state == optuna.trial.TrialState.PRUNED and trial.user_attrs["reason"].startswith("diverged")
        assert len(trial.user_attrs["run_ids"]) == 1
    else:  # a fixed point is a result: every seed runs, a diverged one is unsolved with an infinite loss
        assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == float("inf")
        assert trial.user_attrs["solved"] == [False, False] and trial.user_attrs["final"] == [float("inf")] * 2
    info = json.loads(next((tmp_path / "runs" / "div").glob("*/run.json")).read_text())
    assert info["status"] == "diverged" and info["meta"]["trial"] == 0


def test_conditional_and_per_cell_parameters(tmp_path):
    from rnnstudy.study.space import suggest

    searched = tmp_path / "searched.yaml"
    searched.write_text(
        "name: s\ntask: {name: adding, T: 100}\ngrid: {model.cell: [rnn_tanh, rnn_relu, lstm, gru]}\n"
        "families:\n  default: {}\n  orthogonal: {init.recurrent: orthogonal}\n"
        "  identity: {init.recurrent: identity, init.bias: zero, cells: [rnn_tanh, rnn_relu]}\n"
        "  forget: {init.bias: forget, cells: [lstm]}\n  chrono: {init.bias: chrono, cells: [lstm, gru]}\n"
        "search:\n  init.gain: {type: float, low: 0.5, high: 1.5}\n  init.scale: {type: float, low: 0.5, high: 1.2}\n"
        "  init.rho: {type: float, low: 0.5, high: 1.5}\n  init.forget_bias: {type: float, low: 0.5, high: 5.0}\n"
        "  train.lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}\n"
    )
    exp = load_experiment(searched)
    points = {(p.cfg.model.cell, p.family): p.cfg for p in exp.points()}
    assert ("rnn_tanh", "chrono") not in points and ("lstm", "identity") not in points  # families only on their cells
    space = {"init.gain": 1.1, "init.scale": 0.9, "init.rho": 0.7, "init.forget_bias": 2.0, "train.lr": 1e-3}
    fixed = optuna.trial.FixedTrial(space)
    assert suggest(fixed, exp.search, points[("lstm", "default")]) == {"train.lr": 1e-3}  # the default family reads no parameter
    assert suggest(fixed, exp.search, points[("lstm", "forget")]) == {"init.forget_bias": 2.0, "train.lr": 1e-3}
    assert suggest(fixed, exp.search, points[("rnn_relu", "identity")]) == {"init.scale": 0.9, "train.lr": 1e-3}
    assert suggest(fixed, exp.search, points[("gru", "orthogonal")]) == {"init.gain": 1.1, "train.lr": 1e-3}
    path = tmp_path / "when.yaml"
    path.write_text(
        "name: w\ngrid: {model.cell: [rnn_tanh, lstm]}\nsearch:\n"
        "  init.bias@rnn: {type: categorical, choices: [default, zero], when: {model.cell: rnn_tanh}}\n"
        "  init.bias@lstm: {type: categorical, choices: [default, forget], when: {model.cell: lstm}}\n"
        "  init.forget_bias: {type: float, low: 0.5, high: 5.0}\n"
    )
    when = load_experiment(path)
    rnn, lstm = (p.cfg for p in when.points())
    assert suggest(optuna.trial.FixedTrial({"init.bias": "zero"}), when.search, rnn) == {"init.bias": "zero"}
    chosen = suggest(optuna.trial.FixedTrial({"init.bias": "forget", "init.forget_bias": 2.0}), when.search, lstm)
    assert chosen == {"init.bias": "forget", "init.forget_bias": 2.0}  # forget_bias only once the forget scheme is chosen


def test_study_summary_run_in_wandb(tmp_path):
    from wandb_records import finished_run

    from rnnstudy.report.summaries import summarise_to_wandb

    exp = load_experiment("experiments/demo.yaml", [f"out={tmp_path}", "wandb.mode=offline"])
    study = optuna.create_study(study_name="demo/lstm/adding/T=10/orthogonal")
    study.set_metric_names(["final_norm_loss"])  # as the sweep names its objective
    for gain, value in ((0.5, 0.3), (1.0, 0.1), (1.5, 0.2)):
        study.enqueue_trial({"init.gain": gain, "train.lr": 0.01})
        study.optimize(
            lambda t, v=value: (t.suggest_float("init.gain", 0.1, 2.0), t.suggest_float("train.lr", 0, 1), v)[2], n_trials=1
        )
    summarise_to_wandb(exp, exp.base(), [study])
    (run_dir,) = (tmp_path / "demo" / "studies" / "wandb").glob("offline-run-*")
    run = finished_run(run_dir)
    assert run.job_type == "study-summary" and run.group == "demo/lstm/adding/T=10/orthogonal" and run.project == "demo"
    assert run.config["best_params"] == {"init.gain": 1.0, "train.lr": 0.01}
    assert set(run.config["versions"]) >= {"rnnstudy", "torch", "optuna", "wandb"} and "commit" in run.config["provenance"]
    assert "task" not in run.config  # the study's facts live under `study`: a training run's `task` is its whole section
    space = run.config["search_space"]
    assert space["train.lr"]["type"] == "float" and space["train.lr"]["log"] is True  # the ranges searched, as in the file
    assert (space["init.gain"]["low"], space["init.gain"]["high"]) == tuple(
        exp.search["init.gain"].model_dump()[k] for k in ("low", "high")
    )
    assert run.summary["best_final_norm_loss"] == pytest.approx(0.1) and run.summary["complete_trials"] == 3
    (path,) = (run.dir / "files" / "media" / "table").glob("trials_*.table.json")
    trials = json.loads(path.read_text())
    rows = [dict(zip(trials["columns"], row)) for row in trials["data"]]
    assert [(r["number"], r["state"], r["value_final_norm_loss"], r["params_init.gain"]) for r in rows] == [  # value_<objective>
        (0, "COMPLETE", 0.3, 0.5), (1, "COMPLETE", 0.1, 1.0), (2, "COMPLETE", 0.2, 1.5)]  # fmt: skip
    assert not any(k.startswith("importance/") for k in run.summary)  # 3 trials: too few to mean anything
    history = media_table(run, "optimisation_history")
    assert [(r["step"], r["lineKey"], r["lineVal"]) for r in history] == [
        (0, "final_norm_loss", 0.3), (1, "final_norm_loss", 0.1), (2, "final_norm_loss", 0.2),
        (0, "best final_norm_loss", 0.3), (1, "best final_norm_loss", 0.1), (2, "best final_norm_loss", 0.1)]  # fmt: skip
    lr = media_table(run, "objective_vs/train.lr")  # searched on a log scale: charted on log10 of it
    assert [r["log10 train.lr"] for r in lr] == pytest.approx([math.log10(0.01)] * 3)
    assert [r["init.gain"] for r in media_table(run, "objective_vs/init.gain")] == [0.5, 1.0, 1.5]
    assert not list((run.dir / "files" / "media" / "table").glob("importances_*"))
    study.enqueue_trial({"init.gain": 0.7, "train.lr": 0.01})
    study.optimize(lambda t: (t.suggest_float("init.gain", 0.1, 2.0), t.suggest_float("train.lr", 0, 1), 0.25)[2], n_trials=1)
    summarise_to_wandb(exp, exp.base(), [study])  # a rerun of the sweep updates the same W&B run
    runs = [finished_run(d) for d in (tmp_path / "demo" / "studies" / "wandb").glob("offline-run-*")]
    assert [r.id for r in runs] == [run.id]  # one offline folder per summary id, so sync uploads it once
    (summary,) = [r.summary for r in runs if r.summary["complete_trials"] == 4]
    assert summary["complete_trials"] == 4 and "importance/init.gain" in summary and "importance/train.lr" not in summary
    (rerun,) = runs
    assert media_table(rerun, "importances") == [{"parameter": "init.gain", "importance": 1.0}]


def media_table(run, key: str) -> list[dict]:
    """The rows of the one table an offline run logged under ``key`` (a chart's data), as dictionaries."""
    (path,) = (run.dir / "files" / "media" / "table" / Path(key).parent).glob(f"{Path(key).name}_*.table.json")
    table = json.loads(path.read_text())
    return [dict(zip(table["columns"], row)) for row in table["data"]]


WORKER = """
import sys
from rnnstudy.study.experiment import load_experiment
import optuna
from rnnstudy.study.storage import open_storage
exp = load_experiment("experiments/demo.yaml", ["out=" + sys.argv[1]])
storage, _ = open_storage(sys.argv[2] or None, exp, exp.base())
study = optuna.load_study(study_name="concurrency", storage=storage)
study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=25)
"""


def run_four_workers(out, url):
    exp = load_experiment("experiments/demo.yaml", [f"out={out}"])
    storage, _ = open_storage(url, exp, exp.base())
    optuna.create_study(study_name="concurrency", storage=storage)  # created before the workers start, as the sweep does
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(out), url or ""], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    errors = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert not any("locked" in e.lower() or "error" in e.lower() for e in errors), errors
    trials = optuna.load_study(study_name="concurrency", storage=storage).trials
    assert len(trials) == 100
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(100))


@pytest.mark.slow
def test_four_workers_on_default_storage(tmp_path):
    run_four_workers(tmp_path, None)
    assert (tmp_path / "demo" / "optuna.db").exists()


@pytest.mark.slow
def test_four_workers_on_postgresql(tmp_path, postgres_url):
    run_four_workers(tmp_path, postgres_url)


@pytest.mark.slow
def test_sweep_through_submitits_local_executor(tmp_path, capsys):
    """The scheduler path (a job array of workers through submitit), on submitit's local executor."""
    exp_file = tiny_experiment(tmp_path, name="array")
    assert main(["sweep", str(exp_file), "--launcher", "submitit-local", "--workers", "2", "--cpus-per-task", "1"]) == 0
    out = capsys.readouterr().out
    assert "submitit-local array of 2 tasks" in out and "submitted submitit-local jobs" in out
    db = tmp_path / "runs" / "array" / "optuna.db"
    assert all(finished(s) == 2 for s in study_states(db, [p.study for p in load_experiment(exp_file).points()]).values())
    jobs = json.loads((tmp_path / "runs" / "array" / "jobs" / "jobs.json").read_text())
    assert len(jobs) == 2 and {j["launcher"] for j in jobs} == {"submitit-local"}
    assert main(["status", str(exp_file)]) == 0
    assert "scheduler jobs:" in capsys.readouterr().out


@pytest.mark.slow
def test_sweep_as_a_real_slurm_job_array(tmp_path, slurm_cluster):
    exp_file = tiny_experiment(tmp_path, name="slurm")
    cmd = cli("sweep", str(exp_file), "--launcher", "slurm", "--workers", "2", "--cpus-per-task", "1", "--time-min", "10")
    proc = subprocess.run(cmd, env=slurm_cluster, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "submitted slurm jobs" in proc.stdout
    db = tmp_path / "runs" / "slurm" / "optuna.db"
    assert all(finished(s) == 2 for s in study_states(db, [p.study for p in load_experiment(exp_file).points()]).values())
    jobs = json.loads((tmp_path / "runs" / "slurm" / "jobs" / "jobs.json").read_text())
    assert len(jobs) == 2 and all("_" in j["job_id"] for j in jobs)  # array task ids: <array>_<index>
    status = subprocess.run(cli("status", str(exp_file)), env=slurm_cluster, capture_output=True, text=True)
    assert status.returncode == 0 and "scheduler jobs:" in status.stdout


@pytest.mark.slow
def test_a_memory_length_sweep_puts_its_T50_table_in_wandb(tmp_path):
    from wandb_records import finished_run

    exp = tmp_path / "ml.yaml"
    exp.write_text(
        "name: ml\nmodel: {hidden_size: 4, cell: gru}\ntask: {name: adding, T: 4, val_size: 16, solved_threshold: 0.3}\n"
        "train: {steps: 4, batch_size: 4, val_every: 2, progress: false, accelerator: cpu}\nprobe: {enabled: false}\n"
        f"wandb: {{mode: offline}}\nseeds: [0, 1]\nT_search: {{start: 4, max: 8, refine: 0}}\nout: {tmp_path / 'runs'}\n"
    )
    assert main(["sweep", str(exp)]) == 0
    folder = tmp_path / "runs" / "ml" / "studies" / "wandb"
    runs = [finished_run(d) for d in folder.glob("offline-run-*")]
    (memory,) = [r for r in runs if r.job_type == "memory-length"]
    assert memory.group == "ml"  # the experiment's group, not the last study summary's
    staged = list((tmp_path / "runs" / "ml" / "studies" / "wandb-data" / "artifacts" / "staging").iterdir())
    assert staged  # the memory-length table's staged copy is inside the results folder, not under the user's home
    (path,) = (memory.dir / "files" / "media" / "table").glob("memory_length_*.table.json")
    table = json.loads(path.read_text())
    row = dict(zip(table["columns"], table["data"][0]))
    assert row["cell"] == "gru" and row["seeds"] == 2 and row["censored"] in ("", ">", "<")
    assert row["T_visited"] in ("4", "4, 8") and (not math.isnan(row["bound"])) == (row["censored"] != "")
    assert row["censored"] == "" or math.isnan(row["T50"])  # a censored line has its bound and no T50 number
    assert not [r for r in runs if r.job_type == "study-summary"]  # fixed points: no empty summary run per T point
    assert memory.config["versions"]["rnnstudy"] and "commit" in memory.config["provenance"]
