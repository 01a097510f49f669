"""W&B tracking with real offline runs, read back from the files wandb writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
from conftest import cli
from wandb_records import finished_run, offline_run

from rnnstudy.run.train import train


def test_offline_run_has_config_tags_group_metrics_and_profiles(tiny):
    cfg = tiny(wandb__mode="offline", model__cell="lstm", init__recurrent="orthogonal", train__log_every=5, train__steps=30)
    result = train(cfg, meta={"study": "s", "trial": 7})
    run = offline_run(result.path)
    assert run.project == "t" and run.group == "t/lstm/adding/T=12" and run.job_type == "train"
    assert run.name == "lstm-adding-T12-orthogonal-s0"  # a fixed point's trial number tells nothing: a retry is the same run
    assert {"lstm", "adding", "T=12", "init=orthogonal"} <= set(run.tags)
    stage = offline_run(train(cfg, meta={"study": "s", "stage": "calibration", "trial": 0}).path)
    assert stage.job_type == "calibration" and stage.group == "t/lstm/adding/T=12"  # stages filter apart by job type
    set_by_config = cfg.model_copy(update={"wandb": cfg.wandb.model_copy(update={"group": "mine", "job_type": "probe"})})
    chosen = offline_run(train(set_by_config, meta={"study": "s2", "stage": "calibration"}).path)
    assert (chosen.group, chosen.job_type) == ("mine", "probe")
    assert run.config["model"]["cell"] == "lstm" and run.config["task"]["T"] == 12 and run.config["meta"]["trial"] == 7
    keys = run.history_keys()
    assert {"val/norm_loss", "val/mse", "train/loss", "train/grad_norm", "trainer/global_step"} <= keys
    assert {"grad/answer/decay_rate/l1/h", "grad/answer/horizon/l1/c"} <= keys
    assert not any(k.startswith("grad/") and k.split("/")[-1].isdigit() for k in keys)  # no per-timestep keys
    assert all(row["_step"] == row["trainer/global_step"] for row in run.history)  # one W&B step per training step
    steps = [row["_step"] for row in run.history]
    assert steps == sorted(set(steps))
    val_steps = [row["trainer/global_step"] for row in run.history if "val/norm_loss" in row]
    assert val_steps == [10, 20, 30]
    axis = {m.get("name") or m.get("glob_name"): m for m in run.metrics}
    assert {"trainer/global_step", "train/*", "val/*", "grad/*"} <= set(axis)
    assert axis["val/norm_loss"]["step_metric"] == "trainer/global_step"
    assert run.summary["val/norm_loss"]["min"] == min(r["val/norm_loss"] for r in run.history if "val/norm_loss" in r)
    views = {k: set(run.summary[k]) for k in ("train/loss", "train/norm_loss", "val/loss", "val/norm_loss")}
    assert all(v == {"min", "last"} for v in views.values()), views  # every loss summarised the same way
    tables = run.tables("grad/answer/profile_l1_h")
    assert [step for step, _ in tables] == [0, 10, 20, 30]  # each file named by its probe's step; the last at the last validation
    assert all(t["columns"] == ["lag", "log10_g"] and len(t["data"]) == 12 for _, t in tables)
    ((at, every),) = run.tables("grad/answer/profiles_l1_h")  # every probe in one chart: a line per probed step
    assert at == 30 and every["columns"] == ["step", "lag", "log10_g"] and len(every["data"]) == 4 * 12
    assert {row[0] for row in every["data"]} == {0, 10, 20, 30}
    last = {row[1]: row[2] for row in every["data"] if row[0] == 30}
    assert last == {row[0]: row[1] for row in tables[-1][1]["data"]}  # the same numbers as that probe's own table
    profile = pd.read_parquet(result.path / "gradflow.parquet")
    assert sorted(profile["step"].unique()) == [0, 10, 20, 30] and profile["step"].max() == val_steps[-1]  # the last val's state
    assert list((run.dir / "files" / "media" / "images" / "grad" / "answer").glob("heatmap_l1_h_*.png"))
    assert run.summary["status"] == "complete" and run.exit_code == 0
    info = json.loads((result.path / "run.json").read_text())
    for key in ("device", "versions", "probe_method", "command", "provenance"):  # how the run was made, as run.json says
        assert run.config[key] == info[key], key
    env = {k: v for e in run.environment for k, v in e.items()}
    assert env["git"]["commit"] == info["provenance"]["commit"]  # W&B's git panel shows the commit the code came from
    assert not any(k.startswith(("decay_rate", "horizon", "best_norm_loss")) for k in run.summary)  # no duplicates
    info = json.loads((result.path / "run.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert info["provenance"]["commit"] == commit and isinstance(info["provenance"]["dirty"], bool)
    assert info["provenance"]["parameters"] == 4 * (8 * 2 + 8 * 8 + 2 * 8) + 8 + 1  # LSTM 8 on 2 inputs + readout to 1
    assert run.config["provenance"] == info["provenance"]


def test_a_runs_one_name_is_its_folder_its_run_json_and_its_w_and_b_name(tiny):
    cfg = tiny(wandb__mode="offline", init__recurrent="orthogonal", init__gain=1.3)
    meta = {"study": "t/lstm/adding/T=12/ortho", "family": "ortho", "trial": 4, "seed": 0, "params": {"init.gain": 1.3}}
    result = train(cfg, meta=meta)
    run = offline_run(result.path)
    name = "lstm-adding-T12-ortho-s0-t4"  # the family label and the searched trial, not only the scheme
    info = json.loads((result.path / "run.json").read_text())
    assert run.name == info["name"] == name and result.run_id.split("-", 2)[2].rsplit("-", 1)[0] == name  # one name everywhere
    assert run.config["meta"]["params"] == {"init": {"gain": 1.3}} and run.config["init"]["gain"] == 1.3  # nested
    assert not [key for key in run.config if "." in key and not key.startswith("_wandb")]  # none of ours is dotted


def staged_files(run):
    """Every staged file an offline run's records name, with the size its manifest says."""
    return {(e["local_path"], int(e["size"])) for r in run.records if r["type"] == "artifact"
            for e in r["artifact"]["manifest"]["contents"]}  # fmt: skip


def record_artifact(run) -> dict[str, str]:
    """The run's record artifact: each file's name in it and its staged copy."""
    from rnnstudy.run.tracking import RECORD_ARTIFACT

    (record,) = [r["artifact"] for r in run.records if r["type"] == "artifact" and r["artifact"]["type"] == RECORD_ARTIFACT]
    assert record["name"] == f"{RECORD_ARTIFACT}-{run.id}"
    return {e["path"]: e["local_path"] for e in record["manifest"]["contents"]}


def test_a_runs_record_artifact_holds_its_final_files_and_the_checkpoint_when_asked(tiny):
    cfg = tiny(wandb__mode="offline", wandb__checkpoint=True)
    result = train(cfg)
    files = record_artifact(offline_run(result.path))
    assert set(files) == {"run.json", "metrics.parquet", "gradflow.parquet", "last.ckpt"}
    for name in ("run.json", "metrics.parquet", "gradflow.parquet"):  # the final files, byte for byte
        assert Path(files[name]).read_bytes() == (result.path / name).read_bytes()
    assert json.loads(Path(files["run.json"]).read_text())["status"] == result.status
    assert torch_load(files["last.ckpt"])["global_step"] == result.steps
    assert not (result.path / "checkpoints" / "last.ckpt").exists()  # finished: the run's own copy is gone


def torch_load(path: str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def test_an_offline_run_refers_to_no_file_outside_the_results_root(tiny):
    import re

    cfg = tiny(wandb__mode="offline", train__steps=20)
    result = train(cfg)
    run = offline_run(result.path)
    root = str(cfg.out.resolve())
    staged = staged_files(run)
    assert staged and all(Path(p).resolve().is_relative_to(root) for p, _ in staged)  # through its link, in the folder
    modes = {Path(p).stat().st_mode & 0o777 for p, _ in staged}
    assert modes == {(result.path.stat().st_mode & 0o666)}  # readable as the run's other files are: another account can copy
    text = json.dumps(run.records)
    files = {p for p in re.findall(r'"(/[^"]+)"', text)  # a path names a file that exists (a base64 digest can start with /)
             if "/" in p.strip("/") and not p.startswith(("/proc", "/dev")) and Path(p).exists()}  # fmt: skip
    outside = {p for p in files if not p.startswith(root) and p not in {s for s, _ in staged}}
    assert outside <= {sys.executable}, outside  # besides the interpreter the environment record names, nothing
    assert set(record_artifact(run)) == {"run.json", "metrics.parquet", "gradflow.parquet"}  # no checkpoint unless asked


def test_a_results_folder_moved_to_another_path_still_finds_every_staged_file(tiny, tmp_path, monkeypatch, capsys):
    import shutil

    from rnnstudy.cli import main

    cfg = tiny(wandb__mode="offline", train__steps=20)
    result = train(cfg)
    staged = staged_files(offline_run(result.path))
    moved = tmp_path / "elsewhere" / "runs"
    shutil.copytree(cfg.out, moved, symlinks=True)
    shutil.rmtree(cfg.out)  # the original is gone, and so is its box's link: as on another box
    for link in {Path(p).parent.parent.parent for p, _ in staged}:  # <link>/artifacts/staging/<file>
        link.unlink()
    assert not any(Path(p).exists() for p, _ in staged)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # a refused port: nothing is uploaded
    assert main(["sync", str(moved)]) == 1
    err = capsys.readouterr().err
    assert "cannot reach 127.0.0.1:9" in err and len(err.strip().splitlines()) == 1
    assert all(Path(p).is_file() for p, _ in staged)  # relinked before the server was tried
    for link in {Path(p).parent.parent.parent for p, _ in staged}:  # a reboot clears /tmp again
        link.unlink()
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert main(["sync", "--relink-only", str(moved)]) == 0  # no key needed, for a plain `wandb sync` after it
    assert capsys.readouterr().out.startswith("1 staging folders under")
    run = finished_run(next(moved.rglob("offline-run-*")))  # W&B's own reader, on the moved copy
    assert staged_files(run) == staged
    assert all(Path(p).is_file() and Path(p).stat().st_size == size for p, size in staged)
    assert all(Path(p).resolve().is_relative_to(moved.resolve()) for p, _ in staged)


def test_a_staging_folder_another_account_could_write_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    from rnnstudy.cli import main

    open_to_all = tmp_path / "links"
    open_to_all.mkdir()
    open_to_all.chmod(0o1777)  # the old shared /tmp/rnnstudy-stage: anyone could plant a link in it first
    link = tmp_path / "a-link"
    link.symlink_to(tmp_path)
    for given, why in ((open_to_all, "another account owns it or can write in it"), (link, "is a link"),
                       (tmp_path / "missing" / "links", "cannot create it")):  # fmt: skip
        monkeypatch.setenv("RNNSTUDY_STAGE_LINKS", str(given))
        out = tmp_path / f"runs-{given.name}"
        assert main(["train", "wandb.mode=offline", "train.steps=2", f"out={out}"]) == 2
        err = capsys.readouterr().err
        assert f"RNNSTUDY_STAGE_LINKS = '{given}': {why}" in err and len(err.strip().splitlines()) == 1
        assert not out.exists()  # checked before anything is written


def test_relink_removes_this_accounts_dangling_links(tmp_path, monkeypatch):
    from rnnstudy.run.tracking import relink, stage_link

    links = tmp_path / "links"
    links.mkdir(mode=0o700)
    monkeypatch.setenv("RNNSTUDY_STAGE_LINKS", str(links))
    gone, kept = tmp_path / "gone" / "wandb-data", tmp_path / "kept" / "wandb-data"
    stage_link(gone), stage_link(kept)
    import shutil

    shutil.rmtree(gone.parent)
    assert relink(tmp_path / "kept") == 1
    assert [p.resolve() for p in links.iterdir()] == [kept.resolve()]


def test_final_status_is_a_tag_and_a_diverged_run_is_no_failure(tiny):
    diverged = train(tiny(wandb__mode="offline", train__optimizer="sgd", train__lr=1e30, train__clip=None, model__cell="rnn_relu",
                          init__recurrent="identity", init__scale=50.0))  # fmt: skip
    run = offline_run(diverged.path)
    assert diverged.status == "diverged" and run.exit_code == 0  # a result, not a crash
    tags = [r["run"].get("tags", []) for r in run.records if r["type"] == "run"]
    assert "status=diverged" in tags[-1]


def test_a_diverged_train_command_exits_0_as_its_wandb_run_says(tmp_path, capsys):
    from rnnstudy.cli import main

    code = main(["train", f"out={tmp_path / 'runs'}", "experiment=d", "wandb.mode=offline", "model.hidden_size=8",
                 "model.cell=rnn_relu", "init.recurrent=identity", "init.scale=50.0", "task.name=adding", "task.T=12",
                 "task.val_size=64", "train.optimizer=sgd", "train.lr=1e30", "train.clip=null", "train.steps=20",
                 "train.batch_size=16", "train.val_every=10", "train.progress=false", "train.accelerator=cpu"])  # fmt: skip
    (info,) = (tmp_path / "runs" / "d").glob("*/run.json")
    assert json.loads(info.read_text())["status"] == "diverged" and "diverged:" in capsys.readouterr().out
    assert code == 0 and offline_run(info.parent).exit_code == 0  # the command and W&B agree: a result, not a failure


def test_a_hand_run_with_a_familys_settings_is_grouped_with_that_familys_study(tmp_path):
    from rnnstudy.cli import main

    exp = tmp_path / "fam.yaml"
    exp.write_text(
        "name: fam\nmodel: {hidden_size: 4, cell: rnn_tanh}\ntask: {name: adding, T: 6, val_size: 16}\n"
        "train: {steps: 2, batch_size: 4, val_every: 2, progress: false, accelerator: cpu}\nprobe: {enabled: false}\n"
        f"wandb: {{mode: offline}}\nout: {tmp_path / 'runs'}\n"
        "families: {default: {}, orthogonal: {init.recurrent: orthogonal}}\n"
    )
    assert main(["train", str(exp), "init.recurrent=orthogonal"]) == 0
    (info,) = (tmp_path / "runs" / "fam").glob("*/run.json")
    assert offline_run(info.parent).group == "fam/rnn_tanh/adding/T=6/orthogonal"  # the family's study, as the sweep names it


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


def test_online_without_key_stops_before_anything_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path))
    proc = subprocess.run(
        cli("train", "wandb.mode=online", f"out={tmp_path}/runs"),
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "wandb.mode = 'online': no W&B API key" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_online_without_key_never_prompts_in_a_terminal(tmp_path):
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path))
    pid, fd = pty.fork()
    if pid == 0:  # the child runs the command with a terminal on stdin/stdout/stderr
        os.chdir(os.getcwd())
        os.execve(sys.executable, cli("train", "wandb.mode=online", f"out={tmp_path}/runs"), env)
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 2 and "no W&B API key" in text
    assert "wandb: (1)" not in text and "Enter your choice" not in text


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
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (tmp_path / "runs" / "default").iterdir()
    assert offline_run(folder).summary["status"] == "complete"


def test_sync_uses_flags_the_pinned_wandb_cli_offers():
    from wandb_records import WANDB

    from rnnstudy.run.sync import SYNC_FLAGS

    help_text = subprocess.run([WANDB, "sync", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(flag in help_text for flag in SYNC_FLAGS)
    assert "--include-offline" not in help_text  # removed in the pinned release; sync passes run folders instead


def test_sync_fails_fast_without_key_or_network(tiny, tmp_path):
    result = train(tiny(wandb__mode="offline"))
    root = str(result.path.parent.parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path))
    no_key = subprocess.run(cli("sync", root), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert no_key.returncode == 2 and "no W&B API key" in no_key.stderr and len(no_key.stderr.strip().splitlines()) == 1
    env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")
    offline = subprocess.run(cli("sync", root), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert offline.returncode == 1 and "cannot reach 127.0.0.1:9" in offline.stderr and "nothing uploaded" in offline.stderr
    nothing = subprocess.run(cli("sync", str(tmp_path / "none")), env=env, capture_output=True, text=True)
    assert nothing.returncode == 2 and "no offline W&B runs" in nothing.stderr


def test_a_calibration_runs_name_says_its_lr():
    from rnnstudy.run.config import RunConfig
    from rnnstudy.run.records import run_name

    cfg = RunConfig(seed=2)
    meta = {"study": "e/calibration/rnn_tanh/adding/T=20/default/train.lr=0.003", "stage": "calibration",
            "family": "default", "axis": "train.lr", "value": 0.003, "trial": 0, "params": {}}  # fmt: skip
    assert run_name(cfg, meta) == f"calibration-{cfg.model.cell}-{cfg.task.name}-T{cfg.task.T}-default-lr=0.003-s2"


def test_a_runs_console_is_its_logs_tab_file_saved_with_the_run(tiny):
    cfg = tiny(wandb__mode="offline", train__steps=20, train__val_every=10)
    result = train(cfg)
    run = offline_run(result.path)
    saved = [f["path"] for r in run.records if r["type"] == "files" for f in r["files"]["files"]]
    assert "output.log" in saved  # W&B uploads it as the run's Logs tab
    lines = (run.dir / "files" / "output.log").read_text().splitlines()
    info = json.loads((result.path / "run.json").read_text())
    assert lines[0] == f"{info['name']}: training 20 steps"
    vals = [r["val/norm_loss"] for r in run.history if "val/norm_loss" in r]
    assert lines[1:3] == [f"step {s}/20: val loss / baseline {v:.4g}" for s, v in zip((10, 20), vals)]
    assert lines[-1] == f"{info['status']} after 20 steps"
