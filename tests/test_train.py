"""The training core end to end on a tiny config: store contents, statuses, reproducibility."""

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import Interrupt

from rnnstudy.run.store import load
from rnnstudy.run.train import train


def test_run_writes_store_that_loads_back(tiny):
    cfg = tiny(task__name="copy", task__T=5, train__steps=25, probe__percentiles=[10, 90])
    result = train(cfg)
    assert result.status == "complete" and result.steps == 25
    info = json.loads((result.path / "run.json").read_text())
    assert info["status"] == "complete" and info["config"]["task"]["T"] == 5
    assert info["config"] == cfg.model_dump(mode="json")
    assert info["baseline"] == pytest.approx(10 * np.log(8) / 25)
    assert info["versions"]["torch"] and info["device"].startswith("cpu")
    assert info["tf32"] == {"cuda.matmul": False, "cudnn": False} and info["deterministic"] is False  # full float32 by default
    res = load(cfg.out)
    assert list(res.runs["run_id"]) == [result.run_id]
    val = res.wide_metrics("val")
    assert list(val["step"]) == [10, 20, 25]  # every val_every steps, and the end of the budget
    assert np.allclose(val["norm_loss"], val["loss"] / info["baseline"])
    assert {"accuracy", "recall_accuracy", "solved"} <= set(val.columns)
    train_rows = res.wide_metrics("train")
    assert {"loss", "norm_loss", "grad_norm", "lr"} <= set(train_rows.columns) and len(train_rows) == 25
    probed = sorted(res.gradflow["step"].unique())
    assert probed == [0, 10, 20, 25]  # the last at the last validation: the state it reports
    one = res.gradflow[(res.gradflow["step"] == 0) & (res.gradflow["state"] == "h")]
    assert list(one["t"]) == list(range(25)) and (one["p90"] >= one["p10"]).all()
    assert "answer/decay_rate/l1/h" in set(res.metrics[res.metrics["split"] == "probe"]["metric"])
    assert not list(result.path.glob(".*.tmp"))


@pytest.mark.parametrize("method", ["chunked", "fused"])
def test_same_seed_same_curve_probe_on_or_off(tiny, method):
    curves = []
    for enabled, every in ((False, 10), (True, 1)):
        r = train(tiny(model__cell="lstm", probe__enabled=enabled, probe__every=every, probe__method=method, seed=3))
        assert json.loads((r.path / "run.json").read_text())["probe_method"] == (method if enabled else None)
        m = load(r.path).wide_metrics("train")
        curves.append(m["loss"].to_numpy())
    assert len(curves[0]) == 20
    assert np.allclose(curves[0], curves[1], rtol=1e-5, atol=1e-7)
    other = load(train(tiny(seed=4)).path).wide_metrics("train")["loss"].to_numpy()
    assert not np.allclose(curves[0], other)


def test_divergence_is_a_status_not_a_crash(tiny):
    r = train(
        tiny(
            model__cell="rnn_relu",
            init__recurrent="identity",
            init__scale=50.0,
            train__optimizer="sgd",
            train__lr=1e30,
            train__clip=None,
            task__T=30,
        )
    )
    assert r.status == "diverged" and "became" in r.reason
    assert json.loads((r.path / "run.json").read_text())["status"] == "diverged"


class Boom(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 12:
            raise RuntimeError("boom")


def test_exception_recorded_as_failed_and_reraised(tiny):
    with pytest.raises(RuntimeError, match="boom"):
        train(tiny(), callbacks=[Boom()])
    runs = load(tiny().out).runs
    assert list(runs["status"]) == ["failed"] and "boom" in runs["reason"].iloc[0]
    assert load(tiny().out).wide_metrics("val")["step"].tolist() == [10]  # flushed before the failure


def test_early_stop_when_solved(tiny):
    r = train(tiny(task__solved_threshold=10.0, train__early_stop=True, train__steps=100))
    assert r.status == "complete" and r.steps_to_solve == 10 and r.steps == 10 and r.solved


def test_the_validation_ladder_sees_an_early_solve_at_its_step(tiny):
    from rnnstudy.run.config import TrainConfig

    ladder = [2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, 38]  # 2 x 2^(k/4), rounded, below the budget
    assert TrainConfig(val_from=2, val_every=20, steps=40).ladder() == ladder
    assert TrainConfig(val_from=5, val_every=75, steps=1500).ladder()[-3:] == [269, 320, 381]  # until spacing reaches 75
    assert TrainConfig(val_from=5, val_every=10, steps=1500).ladder() == [5, 6, 7, 8, 12, 14, 17, 24, 28, 34, 48]  # 10,
    # 20 and 40 are regular validations, not run twice; the spacing reaches 10 after 48
    plain = load(train(tiny(train__steps=40, train__val_every=20, experiment="plain")).path)
    laddered = load(train(tiny(train__steps=40, train__val_every=20, train__val_from=2)).path)
    steps = sorted(laddered.wide_metrics("val")["step"])
    assert steps == sorted([*ladder, 20, 40])
    at = laddered.wide_metrics("val").set_index("step")["norm_loss"]
    assert at[[20, 40]].tolist() == plain.wide_metrics("val").set_index("step")["norm_loss"][[20, 40]].tolist()  # no effect
    r = train(tiny(task__solved_threshold=10.0, train__early_stop=True, train__steps=100, train__val_from=3,
                   experiment="early"))  # fmt: skip
    assert r.status == "complete" and r.steps_to_solve == 3 and r.steps == 3  # solved at the ladder's first step


def test_float64_runs(tiny):
    r = train(tiny(train__precision=64, model__cell="gru"))
    assert r.status == "complete" and np.isfinite(r.final["loss"])
    single = train(tiny(model__cell="gru", experiment="t32"))
    assert r.final["loss"] != single.final["loss"]  # the same seed in float32 rounds differently: precision was applied
    assert r.final["loss"] == pytest.approx(single.final["loss"], rel=1e-3)  # ... and only by rounding


def test_lstm_learns_adding_t30_well_below_baseline(tiny):
    cfg = tiny(
        model__cell="lstm",
        model__hidden_size=32,
        task__T=30,
        task__val_size=256,
        train__steps=400,
        train__batch_size=64,
        train__optimizer="adam",
        train__lr=0.01,
        train__val_every=100,
        train__log_every=50,
        probe__enabled=False,
    )
    result = train(cfg)
    assert result.final["norm_loss"] < 0.2 and result.solved


def test_same_seed_same_config_identical_metrics(tiny):
    a = load(train(tiny(model__cell="gru", seed=7)).path).metrics
    b = load(train(tiny(model__cell="gru", seed=7)).path).metrics
    assert a.drop(columns="run_id").equals(b.drop(columns="run_id"))


def test_interrupted_run_resumes_from_its_checkpoint_bit_identical(tiny):
    """Stopped mid-training, the same config rerun continues from the last checkpoint to the same numbers."""
    cfg = tiny(model__cell="lstm", train__steps=60, train__val_every=20, train__log_every=5, probe__every=20)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[Interrupt(47)])
    (folder,) = (cfg.out / "t").iterdir()
    assert json.loads((folder / "run.json").read_text())["status"] == "failed" and (folder / "checkpoints" / "last.ckpt").exists()
    saved = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)
    (trained,) = [v["trained_s"] for v in saved["callbacks"].values() if "trained_s" in v]
    resumed = train(cfg)
    assert resumed.path == folder and resumed.status == "complete"
    info = json.loads((folder / "run.json").read_text())
    assert info["resumed_from_step"] == 40 and not (folder / "checkpoints").exists()  # no empty folder left behind
    assert info["wall_s"] > trained > 0  # the sessions before the checkpoint count: steps_per_s is not inflated
    assert info["earlier"] == ["failed: interrupted (Ctrl-C)"]
    fresh = train(cfg.model_copy(update={"out": cfg.out / "fresh"}))
    key = ["split", "metric", "step"]
    a = load(folder).metrics.sort_values(key).reset_index(drop=True)
    b = load(fresh.path).metrics.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])  # no step lost, none duplicated
    assert (a["value"].to_numpy() == b["value"].to_numpy()).all()  # bit-identical on the CPU
    assert resumed.final == fresh.final


def test_a_run_stopped_before_its_first_checkpoint_trains_again_in_its_own_folder(tiny):
    """No checkpoint to resume from: the rerun starts the same run again in its folder, keeping none of its old rows,
    so the store never holds a second folder of one run."""
    cfg = tiny(model__cell="gru", train__steps=60, train__val_every=20, train__log_every=5, probe__every=20)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[Interrupt(7)])
    (folder,) = (cfg.out / "t").iterdir()
    assert not (folder / "checkpoints" / "last.ckpt").exists() and (folder / "metrics.parquet").exists()
    again = train(cfg)
    assert [p.name for p in (cfg.out / "t").iterdir()] == [folder.name] and again.status == "complete"
    info = json.loads((folder / "run.json").read_text())
    assert info["resumed_from_step"] is None and info["earlier"] == ["failed: interrupted (Ctrl-C)"]  # nothing lost
    fresh = train(cfg.model_copy(update={"out": cfg.out / "fresh"}))
    key = ["split", "metric", "step"]
    a = load(folder).metrics.sort_values(key).reset_index(drop=True)
    b = load(fresh.path).metrics.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key]) and (a["value"].to_numpy() == b["value"].to_numpy()).all()


@pytest.mark.slow
def test_killed_run_resumes_bit_identical(tmp_path):
    """Kill a run mid-training, rerun the same command: it continues from its checkpoint to the same numbers."""
    import os
    import signal
    import subprocess
    import time

    from conftest import cli

    args = ["task.name=adding", "task.T=8", "model.cell=lstm", "model.hidden_size=8", "task.val_size=32", "train.batch_size=16",
            "train.steps=1500", "train.val_every=20", "train.log_every=5", "probe.every=20", "train.progress=false",
            "wandb.mode=disabled"]  # fmt: skip
    killed = subprocess.Popen(cli("train", *args, f"out={tmp_path}/a"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = None
    while checkpoint is None or not checkpoint.exists():
        assert killed.poll() is None
        time.sleep(0.2)
        checkpoint = next(iter((tmp_path / "a").glob("default/*/checkpoints/last.ckpt")), None)
    time.sleep(1.0)  # a few more validations past the first checkpoint
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    (folder,) = (tmp_path / "a" / "default").iterdir()
    assert json.loads((folder / "run.json").read_text())["status"] == "running"
    resumed = subprocess.run(cli("train", *args, f"out={tmp_path}/a"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert [p.name for p in (tmp_path / "a" / "default").iterdir()] == [folder.name]  # continued in the same folder
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "complete" and info["resumed_from_step"] > 0 and not (folder / "checkpoints" / "last.ckpt").exists()
    assert info["earlier"] == ["dead"]
    fresh = subprocess.run(cli("train", *args, f"out={tmp_path}/b"), capture_output=True, text=True)
    assert fresh.returncode == 0
    a, b = load(tmp_path / "a").metrics, load(tmp_path / "b").metrics
    key = ["split", "metric", "step"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])  # no step lost, none duplicated
    assert (a["value"].to_numpy() == b["value"].to_numpy()).all()  # bit-identical on the CPU


def test_a_resumed_run_keeps_its_best_and_its_solved_step(tiny):
    """The checkpoint carries what decides "solved" in every report: the solved step and the best validation."""
    import torch

    cfg = tiny(model__cell="gru", train__steps=60, train__val_every=20, probe__enabled=False, task__solved_threshold=10.0)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[Interrupt(47)])
    (folder,) = (cfg.out / "t").iterdir()
    saved = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["rnnstudy"]["members"][0]
    assert saved["solved_at"] == 20 and saved["best"]["step"] in (20, 40)  # solved at the first validation
    resumed = train(cfg)
    fresh = train(cfg.model_copy(update={"out": cfg.out / "fresh"}))
    assert resumed.steps_to_solve == fresh.steps_to_solve == 20  # not the first validation after the resume (60)
    assert resumed.best == fresh.best and resumed.final == fresh.final


@pytest.mark.slow
def test_train_output_to_a_log_is_lines_without_library_chatter(tmp_path):
    import subprocess

    from conftest import cli

    args = ["model.hidden_size=4", "task.name=adding", "task.T=6", "train.steps=20", "train.val_every=10", "task.val_size=16",
            "train.batch_size=4", "wandb.mode=disabled", f"out={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cli("train", *args), capture_output=True, text=True)  # stdout and stderr are pipes, not terminals
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert "\r" not in text and "GPU available" not in text and "Tip" not in text and "limit_val_batches" not in text
    steps = [line for line in proc.stderr.splitlines() if ": step " in line]
    said = [line.split(": step ")[1].split(" ")[0] for line in steps]
    tenths = [f"{2 * k}/20" for k in range(1, 11)]
    # At a tenth of the budget, at most one line per 10 s, and always the first and the last step's.
    assert said[0] == "2/20" and said[-1] == "20/20" and all(s in tenths for s in said) and said == sorted(said, key=tenths.index)
    assert proc.stdout.splitlines()[0].startswith("rnnstudy train: results under") and "complete: 20 steps" in proc.stdout


def test_progress_lines_for_a_log_file_are_few_and_say_when_no_validation_ran(capsys):
    from types import SimpleNamespace

    from rnnstudy.run.lit import StepLines

    now = [0.0]
    lines = StepLines("run", every_s=10.0, clock=lambda: now[0])
    module = SimpleNamespace(last_val={})
    for step in range(1, 101):
        if step == 50:
            module.last_val = {"norm_loss": 0.25}
        now[0] = step * 0.5  # 0.5 s a step: a tenth of the budget is 5 s, so every other tenth is printed
        lines.on_train_batch_end(SimpleNamespace(global_step=step, max_steps=100), module)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "run: step 10/100 (10%), no validation yet",
        "run: step 30/100 (30%), no validation yet",
        "run: step 50/100 (50%), last val loss / baseline 0.25",
        "run: step 70/100 (70%), last val loss / baseline 0.25",
        "run: step 90/100 (90%), last val loss / baseline 0.25",
        "run: step 100/100 (100%), last val loss / baseline 0.25",  # the last step is always said
    ]
