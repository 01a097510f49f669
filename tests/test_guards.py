"""Guards for bugs a reviewer planted and the fast suite once let through: each test checks one against an independent answer."""

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rnnstudy.cli import main
from rnnstudy.model.cells import CELLS
from rnnstudy.model.diagnostics import step_function
from rnnstudy.model.inits import initialise
from rnnstudy.model.models import RecurrentNet
from rnnstudy.model.tasks import make_task
from rnnstudy.names import Censored
from rnnstudy.report import reproduction, tables
from rnnstudy.run.config import InitConfig, ModelConfig
from rnnstudy.run.store import Results
from rnnstudy.study.experiment import load_run_config


def hand_built_runs(rows):
    """A run table built by hand: one row per (line, T, seed) with its outcome."""
    out = []
    for i, (cell, family, T, seed, solved) in enumerate(rows):
        out.append(
            {"run_id": f"r{i}", "task": "adding", "cell": cell, "family": family, "setting": "", "axis": "", "value": np.nan,
             "T": T, "seed": seed, "solved": solved, "steps_to_solve": 100.0 if solved else np.nan, "budget": 1000,
             "status": "complete", "final_norm_loss": 0.01 if solved else 1.0, "config": f"{cell}/{family}/{T}", "lr": 1e-3,
             "stage": "", "val_every": 100}
        )  # fmt: skip
    return pd.DataFrame(out)


def test_the_memory_verdicts_of_a_hand_built_frontier():
    seeds = range(5)
    rows = [("lstm", "a", T, s, T <= 20) for T in (10, 20, 40, 80) for s in seeds]  # every seed solves up to 20, none at 40
    rows += [("gru", "b", T, s, True) for T in (10, 20, 40) for s in seeds]  # solves everything tried
    rows += [("rnn_tanh", "c", 10, s, s == 0) for s in seeds]  # one seed in five at the smallest T
    rows += [("rnn_relu", "d", T, s, (T == 10) or (T == 20 and s < 3)) for T in (10, 20, 40) for s in seeds]  # 3/5 at 20
    empty = Results([], pd.DataFrame(), pd.DataFrame(columns=["step", "split", "metric", "value", "run_id"]), pd.DataFrame())
    memory = tables.memory_length(hand_built_runs(rows), empty).set_index("cell")
    assert memory.loc["lstm", "T50"] == pytest.approx(math.sqrt(20 * 40), rel=0.02)  # symmetric: the gap's geometric middle
    assert memory.loc["lstm", "separated"] and (memory.loc["lstm", "bracket_low"], memory.loc["lstm", "bracket_high"]) == (20, 40)
    assert (memory.loc["gru", "censored"], memory.loc["gru", "bound"]) == (Censored.ABOVE, 40)
    assert math.isnan(memory.loc["gru", "T50"])  # a bound, not a number: no T50 where there is none
    tanh = memory.loc["rnn_tanh"]  # 1 of 5 at the one T tried: a bound below it, too weak to reject P >= 1/2 there
    assert (tanh["censored"], tanh["bound"], tanh["weak"]) == (Censored.BELOW, 10, True) and math.isnan(tanh["T50"])
    relu = memory.loc["rnn_relu"]
    assert relu["censored"] == Censored.NONE and 20 < relu["T50"] < 40  # 60% at 20, 0% at 40: the crossing lies between
    assert relu["T_visited"] == [10, 20, 40] and relu["solved_fraction"] == [1.0, 0.6, 0.0]
    assert memory.loc["lstm", "steps_to_solve"] == 100 and memory.loc["lstm", "seeds"] == 5
    # Written for people: the same facts in words.
    text = tables.memory_table(memory.reset_index()).set_index("cell")
    assert text.loc["lstm", "memory length"].startswith("T50 between 20 and 40 (quasi-separated: 5 of 5 solve 20, 0 of 5")
    assert text.loc["gru", "memory length"] == "T50 > 40: every run solves every T tried, 5 of 5 solve 40"
    assert text.loc["rnn_tanh", "memory length"] == "T50 < 10: 1 of 5 solve 10 (not a 95% bound: too few runs)"
    assert text.loc["rnn_relu", "memory length"].startswith("T50 between 20 and 40 (quasi-separated: 3 of 5 solve 20")
    assert text.loc["rnn_relu", "solved fraction at each T"] == "10: 100%, 20: 60%, 40: 0%"
    assert (text.loc["lstm", "budget (steps)"], text.loc["lstm", "lr"]) == (1000, "0.001")  # beside every memory length
    assert text.loc["lstm", "steps to solve (KM median [95%])"].startswith("100 [")


def test_reference_verdicts_solved_decays_and_every_seed():
    def runs(losses, solved, decay=(-0.05, -0.05)):
        return pd.DataFrame(
            {"final_norm_loss": losses, "solved": solved, "decay_init": decay[0], "decay_end": decay[1], "budget": 1000}
        )

    by_id = {r.id: r for r in reproduction.REFERENCE}
    assert reproduction.judge(by_id["rnn-sgd-adding"], runs([0.1, 0.1, 0.9], [True, True, False]))[0] == "agree"
    assert reproduction.judge(by_id["rnn-sgd-adding"], runs([0.1, 0.9, 0.9], [True, False, False]))[0] == "disagree"
    assert reproduction.judge(by_id["gradflow-tanh128"], runs([1.0], [False], (-0.05, -0.02)))[0] == "agree"
    assert reproduction.judge(by_id["gradflow-tanh128"], runs([1.0], [False], (-0.05, 0.0)))[0] == "disagree"
    # "stuck at baseline" needs every seed at the baseline: a mean above the bar with one seed below it disagrees
    stuck = by_id["tanh128-adding"]
    assert reproduction.judge(stuck, runs([1.0, 1.0, 0.95], [False] * 3))[0] == "agree"
    assert reproduction.judge(stuck, runs([1.2, 1.2, 0.5], [False] * 3))[0] == "disagree"  # mean 0.97, one seed 0.5


def test_the_digits_loss_reads_the_last_step_only():
    task = make_task("digits", 64)
    batch = task.sample(8, torch.Generator().manual_seed(0))
    out = torch.zeros(64, 8, task.output_size)
    out[-1] = torch.randn(8, task.output_size, generator=torch.Generator().manual_seed(1))
    expected = nn.functional.cross_entropy(out[-1], batch.y)
    assert task.loss(out, batch).item() == pytest.approx(expected.item(), rel=1e-6)
    out[0] += 100.0  # anything before the last step changes nothing
    assert task.loss(out, batch).item() == pytest.approx(expected.item(), rel=1e-6)
    assert task.answer_steps == slice(63, 64)


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_diagnostics_step_is_the_torch_modules_own_step(cell):
    torch.manual_seed(0)
    net = RecurrentNet(ModelConfig(cell=cell, hidden_size=6), 3, 2).double()
    for layer in net.layers:  # non-zero biases in every bias vector, so a forgotten b_hh shows
        for name, bias in layer.named_parameters():
            if name.startswith("bias"):
                nn.init.uniform_(bias, 0.2, 0.5) if name == "bias_hh_l0" else nn.init.uniform_(bias, -0.5, -0.2)
    layer, H = net.layers[0], 6
    x = torch.randn(4, 3, dtype=torch.float64)
    h0 = torch.randn(4, H, dtype=torch.float64).abs()  # minGRU's state is positive
    step = step_function(net)
    if cell == "lstm":
        c0 = torch.randn(4, H, dtype=torch.float64)
        out, (h1, c1) = layer(x[None], (h0[None], c0[None]))
        ours, _ = step(torch.cat([h0, c0], dim=-1), x, None)
        torch.testing.assert_close(ours, torch.cat([h1[0], c1[0]], dim=-1), rtol=1e-12, atol=1e-12)
    else:
        out, h1 = layer(x[None], h0[None])
        ours, _ = step(h0, x, None)
        torch.testing.assert_close(ours, h1[0], rtol=1e-12, atol=1e-12)


def fresh_layer(cell="rnn_tanh", hidden=256, inputs=64):
    torch.manual_seed(0)
    return {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell, nn.RNN)(inputs, hidden)


def test_xavier_and_orthogonal_input_weights_and_xavier_kaiming_recurrent():
    layer = fresh_layer()
    initialise(layer, "rnn_tanh", InitConfig(input="xavier", input_gain=1.0, recurrent="xavier", gain=2.0), 100)
    w_ih, w_hh = layer.weight_ih_l0.detach(), layer.weight_hh_l0.detach()
    xavier_in = math.sqrt(6 / (64 + 256))  # Glorot's bound 0.137, above PyTorch's default 1/sqrt(256) = 0.0625
    assert w_ih.abs().max() <= xavier_in and w_ih.abs().max() > 0.95 * xavier_in
    assert w_ih.std().item() == pytest.approx(xavier_in / math.sqrt(3), rel=0.05)  # U(-a, a) has sd a / sqrt 3
    assert w_hh.abs().max() <= 2.0 * math.sqrt(6 / 512) and w_hh.std().item() == pytest.approx(2.0 / math.sqrt(256), rel=0.05)
    layer = fresh_layer()
    initialise(layer, "rnn_tanh", InitConfig(input="orthogonal", input_gain=0.5, recurrent="kaiming", gain=0.5), 100)
    w_ih, w_hh = layer.weight_ih_l0.detach().double(), layer.weight_hh_l0.detach().double()
    torch.testing.assert_close(
        w_ih.T @ w_ih, 0.25 * torch.eye(64, dtype=torch.float64), atol=1e-5, rtol=0
    )  # 256 x 64: W^T W = g^2 I
    assert w_hh.std().item() == pytest.approx(0.5 * math.sqrt(2 / 256), rel=0.05)  # He normal: sd sqrt(2 / fan_in), times gain


def test_chrono_takes_the_sequence_length_as_its_default_T_max():
    cfg = load_run_config(None, ["model.cell=lstm", "model.hidden_size=512", "task.name=copy", "task.T=30", "init.bias=chrono"])
    assert cfg.chrono_tmax == 50  # copy's sequence: T + 20
    layer = fresh_layer("lstm", hidden=512, inputs=10)
    initialise(layer, "lstm", cfg.init, int(cfg.chrono_tmax))
    forget = layer.bias_ih_l0.detach()[512:1024]
    assert forget.min() >= 0 and forget.max() <= math.log(49)  # log U(1, T_max - 1)
    assert forget.exp().mean().item() == pytest.approx((1 + 49) / 2, rel=0.1)  # exp(b_f) is U(1, 49)
    torch.testing.assert_close(layer.bias_ih_l0.detach()[:512], -forget)


def test_probe_chunk_is_checked_against_the_sequence_not_T(capsys):
    # copy T=5 has a 25-step sequence: a chunk of 20 > T is allowed, 26 is not
    assert load_run_config(None, ["task.name=copy", "task.T=5", "probe.chunk=20"]).probe.chunk == 20
    assert main(["train", "task.name=copy", "task.T=5", "probe.chunk=26"]) == 2
    assert "probe.chunk = 26: larger than the sequence (25 steps); allowed: 1 .. 25" in capsys.readouterr().err


def test_seed_bounds_name_the_value_and_the_range(capsys):
    assert load_run_config(None, [f"seed={2**32 - 1}"]).seed == 2**32 - 1
    assert main(["train", f"seed={2**32}"]) == 2
    err = capsys.readouterr().err
    assert f"seed = {2**32}" in err and "less than or equal to 4294967295" in err


def test_the_validation_set_does_not_depend_on_the_run_seed(tiny):
    from rnnstudy.model.tasks import build_task
    from rnnstudy.run.lit import TaskData

    sets = []
    for seed in (0, 1):
        cfg = tiny(seed=seed)
        data = TaskData([cfg], build_task(cfg), lambda: [True])
        data.setup("fit")
        sets.append(next(iter(data.val_dataloader())))
    assert all(torch.equal(a, b) for a, b in zip(*sets))
    other = tiny(**{"task.val_seed": 5})
    data = TaskData([other], build_task(other), lambda: [True])
    data.setup("fit")
    assert not torch.equal(next(iter(data.val_dataloader())).x, sets[0].x)


def test_version_config_and_storage_file(tmp_path, capsys):
    from rnnstudy import __version__

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"rnnstudy {__version__}"
    assert main(["config", "model.cell=gru", "task.T=7"]) == 0
    shown = capsys.readouterr().out
    cells = "rnn_tanh, rnn_relu, lstm, gru, mingru, lru"
    assert f'  cell: "gru"  # choice; default "lstm"; allowed: {cells}; The recurrent cell' in shown
    assert "  T: 7  # int; default 100; allowed: > 0;" in shown
    # with an experiment, its own keys are read as `sweep EXP ...` reads them, and a required key says so
    assert main(["config", "experiments/phase_cpu.yaml", "T_search.max=256", "model.hidden_size=64"]) == 0
    shown = capsys.readouterr().out
    assert "  max: 256  # int; required; allowed: > 0; The largest T tried" in shown and "  hidden_size: 64  #" in shown
    assert main(["config", "experiments/phase_cpu.yaml", "T_search.top=256"]) == 2
    assert "unknown key 'T_search.top'" in capsys.readouterr().err
    empty = tmp_path / "url"
    empty.write_text("")
    assert main(["status", "experiments/demo.yaml", "--storage-file", str(empty)]) == 2
    assert "the file is empty; it should hold one storage URL" in capsys.readouterr().err


def test_diagnose_prints_the_diagnostics_it_computes_and_draws_them(tmp_path, capsys):
    from rnnstudy.model.diagnostics import diagnose
    from rnnstudy.model.gradflow import decay_rate
    from rnnstudy.model.sensitivity import sensitivity

    args = ["model.cell=rnn_tanh", "model.hidden_size=16", "task.name=adding", "task.T=20", "init.recurrent=orthogonal"]
    assert main(["diagnose", *args, "--figure", str(tmp_path / "d" / "diag.png")]) == 0
    shown = capsys.readouterr().out
    d = diagnose(load_run_config(None, args))
    lines = shown.splitlines()
    rows = dict(re.fullmatch(r"  (.+?)\s{2,}(\S.*)", line).groups() for line in lines[1:] if line.startswith("  "))
    assert lines[0] == "rnn_tanh 16, adding T=20, init orthogonal/default"
    assert rows["answer-loss decay rate (log10 per step)"] == f"{d.decay_rate:+.4f}"
    assert rows["predicted memory length (steps)"] == f"{d.predicted_memory:.1f}"
    keep: dict = {}
    diagnose(load_run_config(None, args), keep=keep)
    sens = sensitivity(keep["net"], keep["batch"], keep["task"])
    assert rows["parameter sensitivity decay (log10 per step back)"] == f"{decay_rate(sens.lags(), sens.norms[1]):+.4f}"
    assert (tmp_path / "d" / "diag.png").stat().st_size > 10_000


from rnnstudy.run.device import compute_modes  # noqa: E402


def fake_cuda(monkeypatch, tmp_path, usable: bool, count: int = 4) -> None:
    """A driver that looks loaded, and torch's CUDA usable (or not) with ``count`` GPUs: the GPU path on a CPU box."""
    import torch

    import rnnstudy.run.device as device

    monkeypatch.setattr(device, "NVIDIA_DRIVER", (tmp_path,))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: usable)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if usable else 0)


def test_a_sweep_that_asks_for_gpus_it_cannot_use_stops_before_writing(tmp_path, monkeypatch, capsys):
    exp = tmp_path / "g.yaml"
    exp.write_text(f"name: g\nwandb: {{mode: disabled}}\nout: {tmp_path / 'runs'}\n")
    assert main(["sweep", str(exp), "--gpus", "0"]) == 2  # this CPU box: no driver
    assert "--gpus = 0: no NVIDIA driver is loaded here" in capsys.readouterr().err
    fake_cuda(monkeypatch, tmp_path, usable=False)  # a driver, but CUDA unusable (too old a driver, a hidden GPU)
    assert main(["sweep", str(exp), "--gpus", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.cuda.is_available() is False" in err[0] and "allowed: '' (the CPU)" in err[0]
    fake_cuda(monkeypatch, tmp_path, usable=True, count=2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert main(["sweep", str(exp), "--gpus", "0,3"]) == 2
    assert "no GPU 3 visible here; allowed: 0, 1 or GPU/MIG UUIDs" in capsys.readouterr().err
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # an allocation's two GPUs: CUDA sees them as 0 and 1
    assert main(["sweep", str(exp), "--gpus", "1"]) == 2
    assert "no GPU 1 CUDA_VISIBLE_DEVICES names; allowed: 2, 3 or GPU/MIG UUIDs" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_gpu_run_names_the_physical_gpu_it_trained_on(tmp_path, monkeypatch):
    """The device in the banner and run.json: CUDA's index, the name, the UUID (a MIG instance's own) and the
    CUDA_VISIBLE_DEVICES it was read through; the CPU in words where no GPU is used."""
    import types

    import torch

    from rnnstudy.run.device import device_name

    fake_cuda(monkeypatch, tmp_path, usable=True, count=2)
    card = {1: types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", uuid="MIG-4f1c")}
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: card[i])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,MIG-4f1c")
    assert device_name("auto", 1) == "cuda:1 (NVIDIA H100 80GB HBM3, UUID MIG-4f1c, CUDA_VISIBLE_DEVICES=GPU-aa,MIG-4f1c)"
    assert device_name("cpu", 1).startswith("cpu (")


def test_worker_threads_honour_the_users_omp_num_threads():
    from rnnstudy.run.device import worker_threads

    assert worker_threads(1, {"OMP_NUM_THREADS": "1"}) == 1  # a 1-worker sweep on 2 cores keeps the user's 1
    assert worker_threads(4, {"OMP_NUM_THREADS": "3"}) == 3
    assert worker_threads(10**6, {}) == 1  # any machine's cores


@pytest.mark.parametrize(("name", "value", "allowed"), [("OMP_NUM_THREADS", "x", "a positive integer"),
                         ("OMP_NUM_THREADS", "0", "a positive integer"), ("WANDB_BASE_URL", "wandb.local", "http(s) URL")])
def test_an_environment_variable_the_harness_would_ignore_stops_train_and_sweep_first(tmp_path, monkeypatch, capsys, name,
                                                                                      value, allowed):  # fmt: skip
    monkeypatch.setenv(name, value)
    for command in (["train", "wandb.mode=offline"], ["sweep", "experiments/demo.yaml", "wandb.mode=offline"]):
        assert main([*command, f"out={tmp_path}/runs"]) == 2
        err = capsys.readouterr().err
        assert f"{name} = {value!r} (environment): allowed: " in err and allowed in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "runs").exists()  # checked before anything is written


def test_gpus_give_each_worker_its_own_device(tmp_path, monkeypatch):
    import rnnstudy.study.sweep as sweep

    fake_cuda(monkeypatch, tmp_path, usable=True)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    started = []

    class Done:
        returncode = 0

        def poll(self):
            return 0

    monkeypatch.setattr(sweep.subprocess, "Popen", lambda cmd, env: started.append((cmd, env)) or Done())
    monkeypatch.setattr(sweep, "query_compute_modes", dict)  # nvidia-smi, faked below
    exp = tmp_path / "g.yaml"
    exp.write_text(f"name: g\nwandb: {{mode: disabled}}\nout: {tmp_path / 'runs'}\n")
    assert sweep.run_sweep(str(exp), workers=2, gpus="0,3") == 0
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for _, env in started) == ["0", "0", "3", "3"]  # two workers on each GPU
    assert all(cmd[1:3] == ["-m", "rnnstudy.study.worker"] and cmd[-2:] == ["--threads", "1"] for cmd, _ in started)
    assert all(env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for _, env in started)  # an index is nvidia-smi's
    started.clear()
    monkeypatch.setattr(sweep, "query_compute_modes", lambda: compute_modes(SMI))
    assert sweep.run_sweep(str(exp), workers=2, gpus="0,3") == 0
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for _, env in started) == ["0", "3", "3"]  # GPU 0 takes one process only


#: What nvidia-smi --query-gpu=index,uuid,compute_mode --format=csv,noheader prints on a box with an exclusive GPU.
SMI = """0, GPU-5e3a1c2d-aaaa-bbbb-cccc-000000000000, Exclusive_Process
1, GPU-6f4b2d3e-aaaa-bbbb-cccc-111111111111, Default
3, GPU-7a5c3e4f-aaaa-bbbb-cccc-333333333333, Default
"""


def test_compute_modes_from_canned_nvidia_smi_output():
    from rnnstudy.run.device import compute_modes, workers_per_gpu

    modes = compute_modes(SMI + "No devices were found\n")
    assert modes["0"] == modes["GPU-5e3a1c2d-aaaa-bbbb-cccc-000000000000"] == "Exclusive_Process" and modes["3"] == "Default"
    assert workers_per_gpu(["0", "3", "GPU-6f4b2d3e-aaaa-bbbb-cccc-111111111111"], 4, modes) == {
        "0": 1, "3": 4, "GPU-6f4b2d3e-aaaa-bbbb-cccc-111111111111": 4}  # fmt: skip
    assert workers_per_gpu(["MIG-1234"], 2, {}) == {"MIG-1234": 2}  # not listed: the workers asked for


def test_importances_sampling_and_best_parameters_of_a_known_study(tmp_path):
    import optuna

    from rnnstudy.report import search

    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    study.set_user_attr("sampling", "random sampling (6 trials, start-up 6: TPE never modelled anything)")
    for i, (gain, lr) in enumerate([(0.5, 1e-3), (1.0, 1e-3), (1.5, 1e-3), (0.5, 1e-2), (1.0, 1e-2), (1.5, 1e-2)]):
        dist = {
            "init.gain": optuna.distributions.FloatDistribution(0.1, 2.0),
            "train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1),
        }
        study.add_trial(
            optuna.trial.create_trial(
                params={"init.gain": gain, "train.lr": lr}, distributions=dist, value=abs(gain - 1.0) + 0.01 * i
            )
        )
    table = search.importance_table(url, ["s", "missing"]).set_index("study")
    assert table.loc["s", "complete trials"] == 6 and table.loc["s", "sampling"].startswith("random sampling")
    first = table.loc["s", "importances (Optuna default evaluator)"].split(",")[0]
    assert first.startswith("init.gain")  # the value depends on the gain, barely on the lr
    runs = pd.DataFrame(
        {"study": "s", "stage": "", "status": "complete", "config": ["a", "a", "b", "b"], "trial": [0, 0, 1, 1],
         "final_norm_loss": [0.5, 0.7, 0.2, 0.4], "init.gain": [1.5, 1.5, 1.0, 1.0], "init": "orthogonal"}
    )  # fmt: skip
    best = tables.best_parameters(runs).iloc[0]
    assert (best["best trial"], best["configurations finished"], best["parameters"]) == (1, 2, "init.gain=1")
    assert best["best loss / baseline"] == pytest.approx(0.3)


def test_a_calibration_run_is_never_the_best_initialisation_and_heatmaps_show_the_typical_seed():
    from rnnstudy.report import frames, heatmaps

    rows = [("lstm", "a", 20, s, s != 0) for s in range(5)]  # seed 0 fails, the other four solve
    runs = hand_built_runs(rows)
    runs["final_norm_loss"] = [0.9, 0.01, 0.02, 0.03, 0.04]
    calibration = runs.iloc[:1].assign(run_id="cal", stage="calibration", final_norm_loss=1e-4, config="cal")
    both = pd.concat([runs, calibration], ignore_index=True)
    assert "cal" not in set(frames.best_configs(both, ["cell", "task", "T"])["run_id"])
    gradflow = pd.DataFrame([{"run_id": f"r{i}", "step": 0, "layer": 1, "state": "h", "loss": "answer", "t": 0, "norm": 1.0}
                             for i in range(5)])  # fmt: skip
    both["seq_len"], both["init"] = 20, "default"
    shown = heatmaps.frame(Results([], both, pd.DataFrame(), gradflow), both)
    assert set(shown["run_id"]) == {"r3"}  # the median final loss of the five (0.01, 0.02, 0.03, 0.04, 0.9), not seed 0


def test_a_runs_key_names_its_device_type_off_the_cpu(tiny):
    """A CPU run keeps the key it always had (config + study facts but the trial); a CUDA run's differs, so neither is
    read back, or resumed from a checkpoint, on the other."""
    import hashlib
    import json

    from rnnstudy.run.config import LATER_FIELDS
    from rnnstudy.run.records import run_key

    cfg, meta = tiny(), {"study": "s/lstm/adding/T=10", "trial": 3}
    config = cfg.model_dump(mode="json")
    for section, names in LATER_FIELDS.items():  # the config as runs recorded before these fields existed wrote it
        for name in names:
            del config[section][name]
    text = json.dumps({"config": config, "meta": {"study": meta["study"]}}, sort_keys=True, default=str)
    legacy = hashlib.sha1(text.encode()).hexdigest()[:16]
    assert run_key(cfg, meta) == legacy == run_key(cfg, {**meta, "trial": 4})
    assert run_key(cfg, meta, "cuda") not in (legacy, run_key(cfg, meta, "mps"))
    assert run_key(cfg.model_copy(update={"train": cfg.train.model_copy(update={"val_from": 5})}), meta) != legacy  # set: keyed
