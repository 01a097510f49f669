"""The per-run predictor evaluation: each feature on a network with a known answer, the scores against independent
computations, and the pre-screen's counterfactual against a real pre-screened sweep."""

from __future__ import annotations

import math
import subprocess

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from conftest import cli
from scipy.stats import kendalltau

from rnnstudy.model import diagnostics
from rnnstudy.model.gradflow import profile
from rnnstudy.model.tasks import make_task
from rnnstudy.names import metric_key
from rnnstudy.report import prediction
from rnnstudy.run.config import RunConfig
from rnnstudy.run.overrides import apply_overrides
from rnnstudy.run.store import load


def linear_relu(alpha: float, T: int = 12) -> RunConfig:
    """A ReLU RNN on adding whose weights make it linear: W_hh = alpha I, positive input weights and bias."""
    return apply_overrides(
        RunConfig(),
        {"model.cell": "rnn_relu", "model.hidden_size": 8, "task.name": "adding", "task.T": T, "init.recurrent": "identity",
         "init.scale": alpha},
    )  # fmt: skip


@pytest.fixture
def positive_inputs(monkeypatch):
    """Initial networks with |W_ih| and a bias of 0.1: every pre-activation positive, so the ReLU is the identity."""
    made = diagnostics.initial_net

    def linear(cfg, task):
        net = made(cfg, task)
        with torch.no_grad():
            layer = net.layers[0]
            layer.weight_ih_l0.abs_()
            layer.bias_ih_l0.fill_(0.1)
            layer.bias_hh_l0.zero_()
        return net

    monkeypatch.setattr(diagnostics, "initial_net", linear)
    return linear


@pytest.mark.parametrize("alpha", [0.5, 0.9, 1.1])
def test_lyapunov_feature_of_a_linear_rnn_is_log_alpha(alpha, positive_inputs):
    f = diagnostics.init_features(linear_relu(alpha))
    assert f["lyapunov_top"] == pytest.approx(math.log(alpha), abs=1e-4) and f["lyapunov_converged"]
    assert math.isnan(f["timescale_reach"])  # a vanilla RNN has no gates


def test_gradient_ratio_of_a_linear_rnn_is_alpha_to_the_lag(positive_inputs):
    alpha, cfg = 0.8, linear_relu(0.8)
    task = make_task("adding", cfg.task.T)
    torch.manual_seed(cfg.seed)
    net = positive_inputs(cfg, task)
    batch = task.sample(32, torch.Generator().manual_seed(0))
    got = profile(net, batch, task).summary(1e-3)[metric_key("informative")]
    lags = (batch.x.shape[0] - 1 - torch.arange(batch.x.shape[0])).double()[:, None]  # (L, 1)
    at_markers = (alpha**lags * batch.informative).sum(0) / batch.informative.sum(0)  # the answer's own g is alpha^0
    assert got == pytest.approx(float(at_markers.mean()), rel=1e-5)


@pytest.mark.parametrize("bias, expected", [(3.0, 1.0), (1.0, 0.0)])
def test_timescale_feature_of_a_fixed_forget_gate(bias, expected, monkeypatch):
    """With no weights the LSTM's forget gate is sigma(b): every timescale is 1 + e^b (21.1 and 3.7 against a lag of 10)."""
    made = diagnostics.initial_net

    def fixed(cfg, task):
        net = made(cfg, task)
        with torch.no_grad():
            layer, H = net.layers[0], cfg.model.hidden_size
            for w in (layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_hh_l0):
                w.zero_()
            layer.bias_ih_l0.zero_()[H : 2 * H] = bias
        return net

    monkeypatch.setattr(diagnostics, "initial_net", fixed)
    cfg = apply_overrides(RunConfig(), {"model.cell": "lstm", "model.hidden_size": 4, "task.name": "adding", "task.T": 10})
    assert diagnostics.init_features(cfg)["timescale_reach"] == expected


def test_concordance_without_censoring_is_kendalls_tau():
    rng = np.random.default_rng(0)
    time, score = rng.permutation(30).astype(float), rng.normal(size=30)
    tau = kendalltau(time, score).statistic  # no ties: every pair is comparable, concordant when sooner scores higher
    assert prediction.concordance(time, np.ones(30), score) == pytest.approx((1 - tau) / 2, abs=1e-12)


def test_concordance_with_censoring_by_hand():
    time, solved = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 0, 1, 0])
    # comparable: run 0 (solved at 1) with 1, 2, 3; run 2 (solved at 3) with 3. Run 1 was censored: it orders nothing.
    assert prediction.concordance(time, solved, np.array([4.0, 3.0, 2.0, 1.0])) == 1.0
    assert prediction.concordance(time, solved, np.array([4.0, 3.0, 1.0, 2.0])) == 0.75
    assert prediction.concordance(time, solved, np.array([1.0, 1.0, 1.0, 1.0])) == 0.5
    assert math.isnan(prediction.concordance(time, np.zeros(4), time))
    assert math.isnan(prediction.auc(np.ones(4, dtype=bool), time))  # one class: no ranking to score


@pytest.mark.slow
def test_counterfactual_prescreen_equals_a_real_prescreened_sweep(tmp_path):
    """The same small study swept without and with the pre-screen: the counterfactual prunes exactly what the sweep did."""

    def sweep(name: str, prescreen: float | None = None) -> None:
        path = tmp_path / f"{name}.yaml"
        screen = f", prescreen: {prescreen}" if prescreen else ""
        path.write_text(
            f"name: {name}\nmodel: {{hidden_size: 8, cell: rnn_tanh}}\ntask: {{name: adding, T: 12, val_size: 32}}\n"
            "train: {steps: 20, batch_size: 16, val_every: 10, progress: false}\nprobe: {every: 10}\nwandb: {mode: disabled}\n"
            "families: {orthogonal: {init.recurrent: orthogonal, init.gain: [0.3, 0.7, 1.0, 1.4]}}\nseeds: [0, 1]\n"
            f"out: {tmp_path / 'runs'}\nstudy: {{trials: 1, pruner: none{screen}}}\n"
        )
        proc = subprocess.run(cli("sweep", str(path)), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    sweep("unscreened")
    res = load(tmp_path / "runs" / "unscreened")
    points = prediction.prescreen_points(prediction.features(res, prediction.frames.run_table(res)))
    ratio = np.sort((points["predicted_memory"] / points["T"]).to_numpy())
    assert len(ratio) == 4 and ratio[1] < ratio[2]
    threshold = float((ratio[1] + ratio[2]) / 2)  # between the points: two pruned, two not
    pruned = points["predicted_memory"] < threshold * points["T"]
    expected = {name.split("/", 1)[1] for name in points.loc[pruned, "study"]}
    sweep("screened", threshold)
    storage = f"sqlite:///{tmp_path / 'runs' / 'screened' / 'optuna.db'}"
    screened = {
        name.split("/", 1)[1]
        for name in optuna.get_all_study_names(storage)
        for t in optuna.load_study(study_name=name, storage=storage).trials
        if t.state == optuna.trial.TrialState.PRUNED and t.user_attrs.get("reason", "").startswith("pre-screen")
    }
    assert len(expected) == 2 and screened == expected


@pytest.mark.parametrize("nearer, further", [(0.9, 0.5), (1.05, 1.3)])
def test_lyapunov_feature_is_oriented_by_the_physics(nearer, further, positive_inputs):
    """On W_hh = alpha I (lambda_1 = log alpha) the feature ranks alpha nearer 1 higher, contracting or growing alike."""
    f = {a: diagnostics.init_features(linear_relu(a)) for a in (nearer, further)}
    feature = {a: prediction.lyapunov_feature(v["lyapunov_top"], bool(v["lyapunov_converged"])) for a, v in f.items()}
    assert feature[nearer] > feature[further]
    assert math.isnan(prediction.lyapunov_feature(-0.1, False))  # unconverged: left out


def test_stratified_auc_and_concordance_by_hand():
    strata = np.array([10, 10, 10, 20, 20, 20])
    solved = np.array([1, 0, 0, 1, 1, 0])
    score = np.array([0.9, 0.8, 0.95, 0.1, 0.2, 0.3])  # across T the T=20 runs score lowest; within T it is not that
    # T = 10: pairs (0,1) concordant, (0,2) not; T = 20: (3,5) and (4,5) both discordant: 1 of 4 pairs.
    assert prediction.stratified_auc(strata, solved, score) == 0.25
    # One stratum (across T): 9 solved x unsolved pairs, of which only run 0 over runs 1 and 5 are concordant.
    assert prediction.stratified_auc(np.zeros(6), solved, score) == pytest.approx(2 / 9)
    time = np.array([5.0, 9.0, 9.0, 3.0, 4.0, 9.0])
    # Comparable within T (solved, and sooner): (0,1), (0,2) at T = 10; (3,4), (3,5), (4,5) at T = 20. Of these only
    # (0,1) has the sooner run scoring higher.
    expected = 1 / 5
    assert prediction.stratified_concordance(strata, time, solved, score) == pytest.approx(expected)
    assert math.isnan(prediction.stratified_auc(strata, np.ones(6), score))


def test_cluster_bootstrap_is_wider_when_runs_of_a_setting_are_duplicates():
    rng = np.random.default_rng(1)
    solved, score = rng.integers(0, 2, 12), rng.normal(size=12)
    copies = 5  # each setting's runs are one run repeated: they carry one run's information, not five
    solved, score, lines = np.repeat(solved, copies), np.repeat(score, copies), np.repeat(np.arange(12), copies)
    by_run = prediction.bootstrap(prediction.auc, solved, score)
    by_setting = prediction.bootstrap(prediction.auc, solved, score, clusters=lines)
    assert by_setting[1] - by_setting[0] > 1.5 * (by_run[1] - by_run[0])


def test_held_out_scores_unseen_settings_within_T():
    """A feature that decides the outcome within each T scores 1 on settings it never saw; T alone ranks nothing there.
    A setting's bracket seeds (another study line) are that setting: never held out apart from it, never paired with it."""
    rows = []
    for line, gain in enumerate([0.2, 0.4, 0.6, 0.8, 1.0, 1.2]):
        for T in (10, 40):
            for seed in range(5):
                solved = gain * 50 > T  # larger gains reach further; at T = 40 only gain >= 1 solves
                stage = "bracket/" if seed >= 3 else ""
                rows.append({"task": "adding", "cell": "rnn_tanh", "line": f"{stage}l{line}", "setting": f"gain={gain}",
                             "T": T, "seed": seed,
                             "solved": solved, "time": 100.0 if solved else 1000.0, "grad_ratio": gain + 0.01 * seed,
                             "timescale_reach": math.nan, "neg_abs_lyapunov": math.nan, "neg_log_T": -math.log(T)})  # fmt: skip
    table = prediction.held_out(pd.DataFrame(rows)).set_index("model")
    assert (table["settings"] == 6).all()
    assert table.loc["init features", "unseen settings: within-T AUC"] == 1.0
    assert table.loc["init features", "unseen settings: within-T C"] == 1.0
    assert table.loc["T alone", "unseen settings: within-T AUC"] == 0.5  # within a T, every run has the same T
    # Solved/unsolved pairs of different settings at the same T: at T = 10 line 0 against 5 others, at T = 40 lines
    # 0-3 against 4-5; 5 seeds each side.
    assert table.loc["init features", "pairs"] == (1 * 5 + 4 * 2) * 25
    assert table.loc["init features", "seed splits"] == 10  # every way of holding out 2 of 5 seeds


def test_predict_on_hand_runs_is_one_line_and_writes_nothing(tiny, tmp_path, capsys):
    from rnnstudy.cli import main
    from rnnstudy.run.train import train

    cfg = tiny(train__steps=4)
    train(cfg)
    out = tmp_path / "pred"
    assert main(["predict", str(cfg.out / cfg.experiment), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run a study made ended as a result here" in err[0]
    assert not out.exists()
