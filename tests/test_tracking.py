"""W&B tracking with real offline runs, read back from the files wandb writes."""

import json
import os
import subprocess
import time

import lightning.pytorch as pl
import pytest
from conftest import cli
from wandb_records import offline_run

from rnnstudy.train import train


def test_offline_run_has_config_tags_group_metrics_and_profiles(tiny):
    cfg = tiny(wandb__mode="offline", model__cell="lstm", init__recurrent="orthogonal", train__log_every=5)
    result = train(cfg, meta={"study": "s", "trial": 7})
    run = offline_run(result.path)
    assert run.project == "t" and run.group == "lstm/adding/T=12" and run.job_type == "train"
    assert run.name == "lstm-adding-T12-orthogonal-s0"
    assert {"lstm", "adding", "T=12", "init=orthogonal"} <= set(run.tags)
    assert run.config["model"]["cell"] == "lstm" and run.config["task"]["T"] == 12 and run.config["meta"]["trial"] == 7
    keys = run.history_keys()
    assert {"val/norm_loss", "val/mse", "train/loss", "train/grad_norm", "trainer/global_step"} <= keys
    assert {"grad/decay_rate/l0/h", "grad/horizon/l0/c"} <= keys
    assert not any(k.startswith("grad/") and k.split("/")[-1].isdigit() for k in keys)  # no per-timestep keys
    val_steps = [row["trainer/global_step"] for row in run.history if "val/norm_loss" in row]
    assert val_steps == [10, 20]
    tables = [json.loads(p.read_text()) for p in (run.dir / "files" / "media" / "table" / "grad").glob("profile_l0_h_table_*")]
    last = max(tables, key=lambda table: len(table["data"]))  # each probe redraws the chart with all probes so far
    assert last["columns"] == ["step", "t", "log10_g"] and {row[0] for row in last["data"]} == {"0", "10", "19"}
    assert list((run.dir / "files" / "media" / "images" / "grad").glob("heatmap_l0_h_*.png"))
    assert run.summary["status"] == "complete" and "best_norm_loss" in run.summary and run.exit_code == 0


def test_disabled_writes_no_wandb_folder(tiny):
    result = train(tiny(wandb__mode="disabled"))
    assert result.status == "complete" and not (result.path / "wandb").exists()


class Boom(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 5:
            raise RuntimeError("boom mid-training")


def test_failed_run_still_finishes_offline_run(tiny):
    cfg = tiny(wandb__mode="offline")
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg, callbacks=[Boom()])
    (folder,) = (cfg.out / "t").iterdir()
    run = offline_run(folder)
    assert run.exit_code == 1 and run.summary["status"] == "failed" and "boom" in run.summary["reason"]


def test_default_mode_no_key_no_network_never_prompts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        HOME=str(tmp_path), HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", WANDB_BASE_URL="http://127.0.0.1:9"
    )
    cmd = cli(
        "train",
        "task.name=adding",
        "task.T=10",
        "model.hidden_size=8",
        "train.steps=10",
        "train.val_every=5",
        "task.val_size=32",
        "train.progress=false",
        f"out={tmp_path}/runs",
    )
    started = time.time()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.time() - started < 60
    (folder,) = (tmp_path / "runs" / "default").iterdir()
    assert offline_run(folder).summary["status"] == "complete"
