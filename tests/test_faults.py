"""Fault injection: every class of fault and bad input ends cleanly, loses nothing and leaks nothing.

Classes: secrets; exact trial counts under kills and races; a run's record is always final;
readers survive damage and write nothing they should not; bad input of every kind.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from conftest import cli

from rnnstudy.cli import main
from rnnstudy.run.store import load, read_info

PASSWORD = "pw-Zq9x-not-for-logs"


def experiment(tmp_path, name="f", steps=10, trials=2, extra=""):
    """A tiny two-study experiment under tmp_path/runs."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: {{hidden_size: 4, cell: rnn_tanh}}\ntask: {{name: adding, T: 6, val_size: 16}}\n"
        f"train: {{steps: {steps}, batch_size: 8, val_every: 5, progress: false}}\nprobe: {{every: 5}}\n"
        "wandb: {mode: disabled}\nfamilies: {default: {}, orthogonal: {init.recurrent: orthogonal}}\n"
        "search: {init.gain: {type: float, low: 0.5, high: 1.5}}\n"
        f"out: {tmp_path / 'runs'}\nstudy: {{trials: {trials}, pruner: none, heartbeat_s: 1}}\n{extra}"
    )
    return path


def complete_counts(db, path):
    from rnnstudy.study.experiment import load_experiment

    url = f"sqlite:///{db}"
    return {
        p.study: sum(
            t.state == optuna.trial.TrialState.COMPLETE for t in optuna.load_study(study_name=p.study, storage=url).trials
        )
        for p in load_experiment(path).points()
    }


# --- secrets -------------------------------------------------------------------------------------


def test_postgres_password_in_no_file_and_no_output(tmp_path, postgres_url):
    url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")  # the test server trusts; the password still travels
    path = experiment(tmp_path, extra="")
    env = {**os.environ, "RNNSTUDY_STORAGE": url}
    proc = subprocess.run(cli("sweep", str(path), "wandb.mode=offline"), env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    status = subprocess.run(cli("status", str(path)), env=env, capture_output=True, text=True)
    assert status.returncode == 0 and "postgres:***@" in status.stdout
    assert PASSWORD not in proc.stdout + proc.stderr + status.stdout + status.stderr
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "run.json" for p in files)
    leaked = [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert not leaked


def test_password_on_the_command_line_is_refused(tmp_path, capsys):
    code = main(["sweep", str(experiment(tmp_path)), "--storage", f"postgresql://u:{PASSWORD}@127.0.0.1:9/db"])
    err = capsys.readouterr().err
    assert code == 2 and "RNNSTUDY_STORAGE" in err and "--storage-file" in err and PASSWORD not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


# --- exact trial counts ----------------------------------------------------------------------------


def test_sweeps_started_together_on_a_new_storage(tmp_path):
    path = experiment(tmp_path, trials=3)
    procs = [
        subprocess.Popen(cli("sweep", str(path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    counts = complete_counts(tmp_path / "runs" / "f" / "optuna.db", path)
    assert set(counts.values()) == {3}, counts  # exactly the target, never more, whatever the race
    runs = load(tmp_path / "runs" / "f").runs
    keys = runs.loc[runs["status"] == "complete", "key"]
    assert not keys.duplicated().any()  # no run trained twice: the default family reads no gain, so its trials share a run
    assert len(keys) == 4  # default: one run; orthogonal: three gains


def test_workers_end_when_the_sweep_parent_is_killed(tmp_path):
    path = experiment(tmp_path, steps=1_000_000, trials=1)
    parent = subprocess.Popen(cli("sweep", str(path), "--workers", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = tmp_path / "runs" / "f"
    while len(list(folder.glob("*/metrics.parquet"))) < 2:  # both workers are training (a validation was flushed)
        assert parent.poll() is None
        time.sleep(0.2)
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()]
    assert len(workers) == 2
    parent.kill()
    parent.wait()
    while any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2] for w in workers):
        time.sleep(0.2)  # the workers notice (within a second) and end their trials
    runs = load(folder).runs
    assert set(runs["status"]) == {"failed"} and set(runs["reason"]) == {"interrupted (Ctrl-C)"}


# --- a run's record is always final ----------------------------------------------------------------


def test_invalid_wandb_mode_env_stops_before_anything(tmp_path):
    env = {**os.environ, "WANDB_MODE": "sometimes"}
    proc = subprocess.run(cli("train", f"out={tmp_path}/runs"), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "WANDB_MODE = 'sometimes'" in proc.stderr and "offline" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_interrupt_during_wandb_start_up_is_recorded(tiny, monkeypatch):
    import rnnstudy.run.tracking
    from rnnstudy.run.train import train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnstudy.run.tracking.WandbSink, "__init__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(wandb__mode="offline"))
    (info,) = [json.loads(p.read_text()) for p in tiny().out.rglob("run.json")]
    assert info["status"] == "failed" and info["reason"] == "interrupted (Ctrl-C)"


def test_full_disk_at_the_final_write_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    from rnnstudy.run.store import RunWriter

    original = RunWriter.flush

    def flush(self, info=None):
        if info is not None and info.ended is not None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder / "run.json"))
        original(self, info)

    monkeypatch.setattr(RunWriter, "flush", flush)
    code = main(["train", "task.name=adding", "task.T=6", "model.hidden_size=4", "train.steps=5", "train.val_every=5",
                 "task.val_size=8", "train.progress=false", "wandb.mode=disabled", f"out={tmp_path}/runs"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "run.json" in err and len(err.strip().splitlines()) == 1


def test_a_disk_full_at_the_end_still_leaves_run_json_final_in_the_room_it_keeps(tmp_path, monkeypatch, capsys):
    """Once the disk fills, no new file can be created (the atomic writes' temporary files); the final record is then
    written over run.json's own reserved bytes: failed, naming the file it lost, valid JSON, one line on stderr."""
    import errno

    import rnnstudy.run.store as store

    full, original, make = [], store.RunWriter.flush, tempfile.mkstemp

    def flush(self, info=None):
        if info is not None and info.ended is not None:
            full.append(True)  # the disk fills just before the run's last write
        original(self, info)

    def mkstemp(*args, **kwargs):
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return make(*args, **kwargs)

    monkeypatch.setattr(store.RunWriter, "flush", flush)
    monkeypatch.setattr(store.tempfile, "mkstemp", mkstemp)
    code = main(["train", "task.name=adding", "task.T=6", "model.hidden_size=4", "train.steps=5", "train.val_every=5",
                 "task.val_size=8", "train.progress=false", "wandb.mode=disabled", f"out={tmp_path}/runs"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "No space left on device" in err
    (path,) = (tmp_path / "runs").rglob("run.json")
    info = read_info(path.parent)  # the typed record reads it back
    assert info.status == "failed" and "No space left on device" in info.reason and "metrics.parquet" in info.reason
    assert path.stat().st_size == store.RECORD_RESERVE  # written over the bytes it kept, nothing allocated


# --- readers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("swept")
    path = experiment(root, trials=3)  # default: one run (it reads no gain); orthogonal: three
    assert main(["sweep", str(path)]) == 0
    return root / "runs" / "f"


def test_report_skips_damaged_runs_and_still_writes(swept, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(swept, store)
    folders = sorted(p.parent for p in store.glob("*/run.json"))
    (folders[0] / "metrics.parquet").write_bytes((folders[0] / "metrics.parquet").read_bytes()[:100])
    (folders[1] / "run.json").write_text('{"status": "compl')
    (folders[2] / "gradflow.parquet").write_bytes(b"")
    off = folders[3].with_name(folders[3].name + "-copy")  # a fourth damaged run beside the healthy one
    shutil.copytree(folders[3], off)
    (off / "run.json").write_text(json.dumps({**json.loads((off / "run.json").read_text()), "steps": "many"}))
    folders[3] = off
    assert main(["report", str(store), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert all(f"skipping damaged run {f}" in err for f in folders[:4])
    assert re.search(r"skipping damaged run .*ValidationError.*\bsteps\b", err)  # the field that broke it, by name
    md = (tmp_path / "r" / "report.md").read_text()
    assert "Skipped 4 damaged runs" in md and (tmp_path / "r" / "frontier.png").exists()


def test_a_disk_that_fills_mid_run_names_the_file_it_could_not_write(tmp_path, monkeypatch, capsys):
    import pandas as pd

    def full(self, path, *args, **kwargs):
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")  # pyarrow's, no file

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    code = main(["train", "task.name=adding", "task.T=6", "model.hidden_size=4", "train.steps=10", "train.val_every=5",
                 "task.val_size=8", "train.progress=false", "wandb.mode=disabled", f"out={tmp_path}/runs"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    folder = next((tmp_path / "runs").rglob("run.json")).parent
    assert code == 1 and len(err.splitlines()) == 1 and "No space left on device" in err
    assert err.endswith(f": {folder / 'metrics.parquet'}")


def test_a_failed_checkpoint_write_names_the_checkpoint_and_ends_the_run(tmp_path, monkeypatch, capsys):
    import errno

    import lightning.pytorch as pl

    def full(self, filepath, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/tmpk3x9_part")  # what the file system names

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", full)
    code = main(["train", "task.name=adding", "task.T=6", "model.hidden_size=4", "train.steps=10", "train.val_every=5",
                 "task.val_size=8", "train.progress=false", "wandb.mode=disabled", f"out={tmp_path}/runs"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    checkpoint = next((tmp_path / "runs").rglob("run.json")).parent / "checkpoints" / "last.ckpt"
    assert code == 1 and len(err.splitlines()) == 1
    assert f"No space left on device: writing the checkpoint {checkpoint}" in err
    info = json.loads((checkpoint.parents[1] / "run.json").read_text())
    assert info["status"] == "failed" and "writing the checkpoint" in info["reason"]


def test_predict_names_the_damaged_runs_it_skips(swept, tmp_path, capsys):
    store = tmp_path / "store"
    folder = sorted(swept.glob("*/run.json"))[0].parent
    shutil.copytree(folder, store / folder.name)
    (store / folder.name / "run.json").write_text('{"status": "compl')
    assert main(["predict", str(store), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert f"skipping damaged run {store / folder.name}" in err and "no readable runs" in err and "1 damaged" in err
    assert not (tmp_path / "p").exists()


def test_report_with_a_corrupt_storage_writes_nothing(swept, tmp_path, capsys):
    store = tmp_path / "store"
    shutil.copytree(swept, store)
    (store / "optuna.db").write_bytes(b"not a database" * 100)
    assert main(["report", str(store), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "cannot read it" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    assert main(["report", str(swept), "--out", str(tmp_path / "r"), "--storage", "notadb://x"]) == 2
    assert not (tmp_path / "r").exists()


def test_report_out_that_is_a_file_or_unwritable(swept, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["report", str(swept), "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["report", str(swept), "--out", str(target / "r")]) == 2  # under a file: unwritable even for root
    assert "cannot write there" in capsys.readouterr().err
    assert main(["report", str(swept), "--out", "/proc/rnnstudy-report"]) == 2  # /proc refuses new folders, even to root
    assert "--out = '/proc/rnnstudy-report': cannot write there" in capsys.readouterr().err


def test_status_and_report_create_nothing(swept, tmp_path, capsys):
    path = experiment(tmp_path, name="never")
    assert main(["status", str(path)]) == 0
    assert "not swept yet" in capsys.readouterr().out and not (tmp_path / "runs").exists()
    before = {p: p.stat().st_mtime_ns for p in swept.rglob("*")}
    assert main(["report", str(swept), "--out", str(tmp_path / "r")]) == 0
    assert {p: p.stat().st_mtime_ns for p in swept.rglob("*")} == before  # the store is read, never written


# --- bad input ---------------------------------------------------------------------------------------

BAD = [  # the override, and the one line it must give: key = value, then what is wrong or what is allowed
    ("train.lr=inf", "train.lr = 'inf': Input should be a finite number"),
    ("train.lr=1e400", "train.lr = inf: Input should be a finite number"),
    ("init.gain=.inf", "init.gain = inf: Input should be a finite number"),
    ("train.clip=inf", "train.clip = 'inf': Input should be a finite number"),
    ("task.solved_threshold=.nan", "task.solved_threshold = nan: Input should be a finite number"),
    ("seed=-1", "seed = -1: Input should be greater than or equal to 0"),
    (
        "task.val_seed=18446744073709551616",
        "task.val_seed = 18446744073709551616: Input should be less than or equal to 18446744073709551615",
    ),
    ("task.T=1e12", "task.T = 1000000000000: one batch would need about 3.91e+09 GiB of activations"),
    ("probe.chunk=500", "probe.chunk = 500: larger than the sequence (120 steps); allowed: 1 .. 120"),
    ("experiment=../../escape", "experiment = '../../escape': names a folder under the results root; allowed: up to 100 letters"),
    ("train.precision=16", "train.precision = 16: Input should be 32 or 64"),
    ("probe.loss=whole", "probe.loss = 'whole': Input should be 'answer' or 'training'"),
]


@pytest.mark.parametrize("override,message", BAD)
def test_bad_run_values_exit_2_one_line_nothing_written(override, message, tmp_path, capsys):
    assert main(["train", override, f"out={tmp_path}/runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"rnnstudy train: configuration error: {message}"), err
    assert not (tmp_path / "runs").exists() and not list(tmp_path.parent.glob("escape"))


def test_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["train", f"out={tmp_path / 'f'}"]) == 2
    assert "is a file" in capsys.readouterr().err


EXPERIMENT_BAD = {
    "search: {init.gain: {type: float, low: 0.5, high: 1.5, when: {init.nope: x}}}": "unknown key 'init.nope'",
    "search: {init.gain: {type: float, low: 0.5, high: 1.5, when: {init: x}}}": "'init' is a section",
    "search:\n  init.recurrent: {type: categorical, choices: [orthogonal]}\n  init.gain: {type: float, low: 0.5, high: 1.5, "
    "when: {init.recurrent: identity}}": "never sampled",
    "grid: {task.T: []}": "grid.task.T",
    "name: ../up": "name = '../up'",
    "families: {a: {train.lr: 0.1}}": "a family sets init.* keys",
    "families: {a: {init.bias: chrono, cells: [lstm]}}\nmodel: {cell: gru}": "select no study",
}


@pytest.mark.parametrize("text,message", list(EXPERIMENT_BAD.items()))
def test_bad_experiment_files(text, message, tmp_path, capsys):
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\nout: {tmp_path / 'runs'}\n{text}\n" if not text.startswith("name:") else text + "\n")
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "runs").exists() and not (Path("runs") / "up").exists()


def test_experiment_file_that_is_a_directory_or_not_utf8(tmp_path, capsys):
    assert main(["sweep", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    bad = tmp_path / "latin.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["sweep", str(bad)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_quoted_numbers_stay_strings(tmp_path):
    from rnnstudy.study.experiment import load_experiment

    path = tmp_path / "q.yaml"
    path.write_text('name: q\nwandb: {project: "2024"}\ntrain: {lr: 1e-3}\n')
    exp = load_experiment(path)
    assert exp.wandb.project == "2024" and exp.train.lr == 1e-3


def test_ctrl_c_prints_one_line_per_interrupted_trial(tmp_path):
    path = experiment(tmp_path, steps=1_000_000, trials=1)
    proc = subprocess.Popen(
        cli("sweep", str(path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    folder = tmp_path / "runs" / "f"
    while not list(folder.glob("*/metrics.parquet")):
        assert proc.poll() is None
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate()
    assert proc.returncode == 130
    assert "Traceback" not in err, err
    assert err.count("interrupted (Ctrl-C)") == 1
    db = f"sqlite:///{folder / 'optuna.db'}"
    studies = [optuna.load_study(study_name=s, storage=db) for s in optuna.get_all_study_names(db)]
    assert [t.state for s in studies for t in s.trials] == [optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["reason"] for s in studies for t in s.trials] == ["interrupted (Ctrl-C)"]  # not a failure of its own
    runs = load(folder).runs
    assert list(runs["status"]) == ["failed"] and runs["reason"].iloc[0] == "interrupted (Ctrl-C)"


@pytest.mark.parametrize("sig, status, reason", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_stops_train_with_one_line_its_status_and_its_name_in_run_json(tmp_path, sig, status, reason):
    proc = subprocess.Popen(cli("train", "train.steps=1000000", "train.val_every=5", f"out={tmp_path / 'runs'}"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    while not list((tmp_path / "runs").rglob("metrics.parquet")):
        assert proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate()
    assert proc.returncode == status and "Traceback" not in err, err
    assert f"rnnstudy train: stopped ({reason})" in err.splitlines()
    (info,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("run.json")]
    assert (info["status"], info["reason"]) == ("failed", f"interrupted ({reason})")


def test_sigterm_to_a_sweep_is_handed_to_its_workers_and_recorded_as_sigterm(tmp_path):
    path = experiment(tmp_path, steps=1_000_000, trials=1)
    proc = subprocess.Popen(cli("sweep", str(path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "runs" / "f"
    while not list(folder.glob("*/metrics.parquet")):
        assert proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # the parent only, as a scheduler or `kill` sends it
    _, err = proc.communicate()
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert err.count("interrupted (SIGTERM)") == 1
    runs = load(folder).runs
    assert list(runs["status"]) == ["failed"] and runs["reason"].iloc[0] == "interrupted (SIGTERM)"


def test_a_task_of_fixed_length_takes_it_when_T_is_not_given(tmp_path):
    from rnnstudy.study.experiment import load_experiment, load_run_config

    assert load_run_config(None, ["task.name=digits"]).task.T == 64
    assert load_run_config(None, ["task.name=digits", "task.T=64"]).task.T == 64
    assert load_run_config(None, ["task.T=30", "task.name=adding"]).task.T == 30  # other tasks keep the T given
    exp = tmp_path / "d.yaml"
    exp.write_text("name: d\ntask: {name: digits_permuted}\n")
    assert load_experiment(exp).base().task.T == 64


def test_gpu_index_that_does_not_exist_is_exit_2(tmp_path, capsys):
    import torch

    assert main(["train", "train.devices=3", "train.accelerator=cpu", f"out={tmp_path}/runs"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.devices = 3: allowed: " in err
    assert ("no GPU is visible here" in err) == (not torch.cuda.is_available())
    assert not (tmp_path / "runs").exists()


def test_out_and_figure_that_cannot_be_created_are_exit_2(tmp_path, capsys):
    assert main(["train", "out=/proc/rnnstudy-test/runs"]) == 2  # /proc refuses new folders, even to root
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out = '/proc/rnnstudy-test/runs': cannot create" in err
    assert "allowed: a folder you can write" in err
    assert main(["diagnose", "model.hidden_size=4", "task.T=6", "--figure", "/proc/rnnstudy-test/d.png"]) == 2
    assert "--figure = '/proc/rnnstudy-test/d.png': cannot write there" in capsys.readouterr().err
    # A folder that exists and reads as writable to root, where no file can be created: still exit 2, before any work.
    assert main(["diagnose", "model.hidden_size=4", "task.T=6", "--figure", "/proc/x.png"]) == 2
    assert "--figure = '/proc/x.png': cannot write there" in capsys.readouterr().err


def test_a_background_jobs_ignored_ctrl_c_stays_ignored():
    """A job started with & in a script inherits SIGINT ignored; the harness keeps that, and still stops on SIGTERM."""
    from rnnstudy.errors import stop_on_signals

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_on_signals()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert callable(signal.getsignal(signal.SIGTERM))
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_a_journal_that_cannot_be_used_is_one_line_before_anything_is_written(tmp_path, capsys):
    path = experiment(tmp_path)
    not_journal = tmp_path / "notes.txt"
    not_journal.write_text("hello\nworld\n")
    cases = {f"journal:{not_journal}": "not an Optuna journal (line 1 is not a JSON record)",
             f"journal:{tmp_path}": "is a folder", "journal:": "names no file"}  # fmt: skip
    for url, why in cases.items():
        for command in ("sweep", "status"):
            assert main([command, str(path), "--storage", url]) == 2, (url, command)
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"storage {url}: {why}" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_journal_cut_mid_record_is_repaired_and_keeps_every_complete_trial(tmp_path, capsys):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "studies.log"
    url = f"journal:{journal}"
    path = experiment(tmp_path, trials=1)
    assert main(["sweep", str(path), "--storage", url]) == 0
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code":5,"worker_id":"dead-node","study_id":0,"trial_id":0,"user_a')  # a node died
    assert main(["status", str(path), "--storage", url]) == 0  # read-only: reads past it, changes nothing
    assert journal.read_bytes().endswith(b'"user_a')
    capsys.readouterr()
    top_up = experiment(tmp_path, trials=2)
    assert main(["sweep", str(top_up), "--storage", url]) == 0
    assert f"storage {url}: its last record was cut at byte {len(whole)}" in capsys.readouterr().err
    storage = JournalStorage(JournalFileBackend(str(journal)))
    for name in optuna.get_all_study_names(storage):
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2  # the first kept, one added


def test_the_keys_of_optional_sections_can_be_overridden_from_the_command_line():
    """T_search and calibrate are optional sections (``X | None``): their keys are keys like any other."""
    from rnnstudy.errors import ConfigError
    from rnnstudy.study.experiment import load_experiment

    exp = load_experiment("experiments/phase_cpu.yaml", ["T_search.bracket_seeds=[20, 21]", "calibrate.extend=3"])
    assert exp.T_search.bracket_seeds == [20, 21] and exp.calibrate.extend == 3
    with pytest.raises(ConfigError, match=r"calibrate.extend = -1: Input should be greater than or equal to 0"):
        load_experiment("experiments/phase_cpu.yaml", ["calibrate.extend=-1"])
    with pytest.raises(ConfigError, match=r"unknown key 'T_search.nope'; allowed at this level: start, factor, max"):
        load_experiment("experiments/phase_cpu.yaml", ["T_search.nope=1"])


@pytest.mark.parametrize("value, message", [
    ("{gru: 0}", "a positive integer, or a mapping cell -> positive integer"),
    ("-5", "T = -5: allowed: a positive integer, or a mapping cell -> positive integer"),
    ("{gru: 10, lstn: 20}", "T: unknown cell 'lstn'; allowed: rnn_tanh, rnn_relu, lstm, gru"),
])  # fmt: skip
def test_calibrate_T_says_what_it_allows_in_words_and_names_an_unknown_cell(value, message):
    from rnnstudy.errors import ConfigError
    from rnnstudy.study.experiment import load_experiment

    with pytest.raises(ConfigError) as err:
        load_experiment("experiments/phase_cpu.yaml", [f"calibrate.T={value}"])
    assert message in str(err.value) and "constrained-int" not in str(err.value) and len(str(err.value).splitlines()) == 1


def test_a_sweep_rejected_for_its_storage_leaves_no_empty_results_folder(tmp_path, capsys):
    path = experiment(tmp_path)
    assert main(["sweep", str(path), "--storage", "postgresql+psycopg2://u@127.0.0.1:9/db"]) == 2
    assert "127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "f").exists()


def test_a_second_stop_signal_while_stopping_is_noted_not_raised():
    """The first SIGINT/SIGTERM stops the command; one that comes while it stops cannot cut its bookkeeping short."""
    code = (
        "import os, signal, time\n"
        "from rnnstudy.errors import stop_on_signals, stop_reason, stop_status\n"
        "stop_on_signals()\n"
        "try:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\nexcept KeyboardInterrupt:\n    print('stopping')\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.2)\n"
        "print('finished', stop_reason(), stop_status())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split() == ["stopping", "finished", "Ctrl-C", "130"], proc.stderr


def test_run_json_is_rewritten_in_place_on_a_really_full_file_system(tmp_path):
    """On a small tmpfs filled to the last byte (root only: it mounts one), a new file cannot be written but run.json's
    final record still lands in the room it keeps."""
    import errno

    from rnnstudy.run.store import RECORD_RESERVE, _write_record

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                                           capture_output=True).returncode:  # fmt: skip
        pytest.skip("mounting a small tmpfs needs root")
    try:
        record = disk / "run.json"
        _write_record(record, {"status": "running"})
        fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError) as full:
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        assert full.value.errno == errno.ENOSPC
        _write_record(record, {"status": "failed", "reason": "its files could not be written"})
        assert json.loads(record.read_text())["status"] == "failed" and record.stat().st_size == RECORD_RESERVE
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_stop_signal_a_library_wrapped_still_ends_the_run_as_interrupted(tiny):
    """A stop signal that lands inside a library call comes back wrapped (Optuna's storage raises StorageInternalError
    from a commit it cut short): the run still records the interrupt, not the wrapper, and the stop goes on."""
    import lightning.pytorch as pl

    from rnnstudy.errors import stop_on_signals, stopping
    from rnnstudy.run.train import train

    class WrappedCtrlC(pl.Callback):
        def on_train_batch_end(self, *_):
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt as err:
                raise RuntimeError("An exception is raised during the commit.") from err

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny(**{"train.steps": 50}), callbacks=[WrappedCtrlC()])
    finally:
        stop_on_signals()  # forgets the signal that came, so this test process's later runs are not "stopping"
        for s, handler in handlers.items():
            signal.signal(s, handler)
    info = json.loads(next(Path(tiny().out).rglob("run.json")).read_text())
    assert info["status"] == "failed" and info["reason"] == "interrupted (Ctrl-C)" and not stopping()
