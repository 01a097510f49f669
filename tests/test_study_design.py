"""Study design a referee accepts: IRNN as published, the early-stop probe, runs never trained twice, design checks."""

import math

import pandas as pd
import pytest
import torch

from rnnstudy.errors import ConfigError
from rnnstudy.model.models import initial_net
from rnnstudy.model.tasks import make_task
from rnnstudy.run.overrides import apply_overrides
from rnnstudy.run.store import load
from rnnstudy.run.train import train
from rnnstudy.study.experiment import load_experiment
from rnnstudy.study.stages import CalibrationStage, adaptive, plan


def test_irnn_family_follows_le_et_al(tiny):
    exp = load_experiment("experiments/phase_cpu.yaml")
    (point,) = [p for p in exp.points() if p.family == "irnn" and p.value == 1.0]
    cfg = apply_overrides(point.cfg, {"model.hidden_size": 256, "task.T": 10})
    torch.manual_seed(0)
    layer = initial_net(cfg, make_task("adding", 10)).layers[0]
    assert cfg.model.cell == "rnn_relu"
    assert torch.equal(layer.weight_hh_l0, torch.eye(256))  # W_hh = scale x I at scale 1
    assert not layer.bias_ih_l0.any() and not layer.bias_hh_l0.any()  # zero biases
    w = layer.weight_ih_l0.detach().double()
    assert w.mean().abs() < 3 * 0.001 / math.sqrt(w.numel()) * 4
    assert w.std().item() == pytest.approx(0.001, rel=0.1)  # input weights N(0, 0.001^2), not PyTorch's U(+-1/16)
    assert w.abs().max() < 0.006


def test_an_early_stopped_run_is_probed_at_the_step_it_stopped(tiny):
    cfg = tiny(**{"train.early_stop": True, "task.solved_threshold": 10.0, "train.steps": 200, "probe.every": 100})
    result = train(cfg)
    assert result.steps_to_solve == 10 and result.steps == 10  # solved at the first validation
    profile = pd.read_parquet(result.path / "gradflow.parquet")
    assert sorted(profile["step"].unique()) == [0, 10]
    last = profile[profile["step"] == 10]
    first = profile[profile["step"] == 0]
    assert (last["norm"] > 0).all() and len(last) == len(first) == 2 * cfg.task.T  # LSTM h and c at every step, as at 0


def test_a_sweep_never_trains_the_same_run_twice(tiny):
    cfg = tiny()
    meta = {"study": "s/rnn/adding/T=12", "trial": 0, "params": {}, "seed": 0}
    first = train(cfg, meta=meta)
    again = train(cfg, meta={**meta, "trial": 1})  # a retried trial reaches the same run
    assert (again.run_id, again.path, again.final) == (first.run_id, first.path, first.final)
    assert len(load(cfg.out).runs) == 1
    plain = train(cfg)  # outside a sweep every call is a new run
    assert plain.run_id != first.run_id


@pytest.mark.parametrize(
    "extra,message",
    [
        ("grid: {task.T: [10, 20]}\nT_search: {start: 10, max: 40}\n", "grid.task.T: T_search chooses T"),
        ("T_search: {start: 10, max: 5}\n", "max = 5 is below start = 10"),
        ("calibrate: {lr: [1.0e-3, 2.0e-3, 3.0e-3, 4.0e-3, 5.0e-3], T: 10}\n", "spans less than two decades"),
        ("calibrate: {lr: [1.0e-4, 1.0e-2], T: 10}\n", "calibrate.lr"),
        (
            "grid: {model.cell: [lstm, gru]}\ncalibrate: {lr: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2], T: {lstm: 80}}\n",
            r"calibrate.T has no T for gru; allowed: one T per cell of the grid \(gru, lstm\)",
        ),
        ("study: {trials: 3}\n", "study.trials = 3: nothing is searched"),
        ("families: {a: {init.gain: [1, 2], init.scale: [1, 2]}}\n", "allowed: one axis"),
        (
            "task: {name: copy, T: 5}\nsearch: {train.lr: {type: float, low: 0.001, high: 0.01}}\n"
            "study: {trials: 4, pruner: median, warmup_validations: 1}\n",
            "copy runs sit on the memoryless plateau",
        ),
    ],
)
def test_designs_a_referee_would_refuse_are_config_errors(tmp_path, extra, message):
    path = tmp_path / "e.yaml"
    path.write_text(f"name: e\ntrain: {{steps: 1000, val_every: 100}}\n{extra}")
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


def test_each_cell_is_calibrated_at_its_own_reference_T(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(
        "name: e\ntrain: {steps: 1000, val_every: 100}\ngrid: {model.cell: [lstm, rnn_tanh]}\n"
        "calibrate: {lr: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2], T: {lstm: 160, rnn_tanh: 20}}\n"
    )
    exp = load_experiment(path)
    grid = {(p.cfg.model.cell, p.cfg.task.T) for p in CalibrationStage(exp).points() if p.value in exp.calibrate.lr}
    assert grid == {("lstm", 160), ("rnn_tanh", 20)}


@pytest.mark.parametrize("name,chosen", [("demo", False), ("lr_cpu", True), ("modern_cpu", True)])
def test_the_plan_says_whether_an_experiment_chooses_its_points_as_it_goes(name, chosen):
    exp = load_experiment(f"experiments/{name}.yaml")
    assert adaptive(exp) is chosen
    main = plan(exp)[1 if exp.calibrate else 0]
    if exp.T_search:
        assert {p.cfg.task.T for p in main.points()} == {exp.T_search.start}  # every line's search starts there
    assert [p.line for p in main.points()] == [p.line for p in exp.points()]  # the stage moves the grid's lines, no more
