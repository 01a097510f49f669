"""Init-time diagnostics: the Lyapunov spectrum against known answers, determinism, the predictor's formulas."""

import math

import numpy as np
import pytest
import torch

from rnnstudy.model.cells import CELLS
from rnnstudy.model.diagnostics import diagnose, lyapunov_spectrum, predicted_loss, reach_from_rate
from rnnstudy.study.experiment import load_run_config


def linear(w):
    """The map s -> W s + x and its exact tangent map V -> W V."""
    return lambda s, x, v: (s @ w.T + x, None if v is None else torch.einsum("mn,bnk->bmk", w, v))


def inputs(L=200, B=3, n=6, scale=0.0):
    return scale * torch.randn(L, B, n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_scaled_orthogonal_linear_map_has_every_exponent_log_rho():
    n, rho = 6, 0.8
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))[0]
    spectrum, converged = lyapunov_spectrum(linear(rho * q), torch.ones(3, n, dtype=torch.float64), inputs(n=n), k=n)
    assert np.allclose(spectrum, math.log(rho), atol=1e-6) and converged


def test_diagonal_linear_map_has_the_sorted_log_magnitudes():
    d = torch.tensor([0.9, -0.5, 0.2, 1.1, -0.05, 0.7], dtype=torch.float64)
    spectrum, _ = lyapunov_spectrum(linear(torch.diag(d)), torch.ones(3, 6, dtype=torch.float64), inputs(L=400), k=4)
    expected = np.sort(np.log(np.abs(d.numpy())))[::-1][:4]
    assert np.allclose(spectrum, expected, atol=1e-6)


def test_small_tanh_rnn_is_contracting():
    w = 0.1 * torch.randn(8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def push(s, x, v):
        h = torch.tanh(s @ w.T + x)
        return h, (1 - h.square())[..., None] * torch.einsum("mn,bnk->bmk", w, v)

    spectrum, _ = lyapunov_spectrum(push, torch.zeros(4, 8, dtype=torch.float64), inputs(n=8, B=4, scale=1.0), k=8)
    assert (spectrum < 0).all()


def test_diagnostics_are_deterministic_and_chrono_reaches_further():
    args = ["model.cell=lstm", "model.hidden_size=16", "task.name=copy", "task.T=30"]
    a, b = diagnose(load_run_config(None, args)), diagnose(load_run_config(None, args))
    assert a == b
    chrono = diagnose(load_run_config(None, [*args, "init.bias=chrono"]))
    assert chrono.timescale_median > 5 * a.timescale_median
    assert chrono.predicted_memory > a.predicted_memory and chrono.decay_rate > a.decay_rate


def test_predictor_formulas():
    assert reach_from_rate(-0.1, 1e-3) == pytest.approx(30.0)
    assert reach_from_rate(0.0, 1e-3) == math.inf
    assert predicted_loss(30.0, "adding", 15) == pytest.approx(0.5)
    assert predicted_loss(30.0, "copy", 20) == 1.0  # the copy symbols sit T + 10 = 30 steps back
    assert predicted_loss(math.inf, "copy", 1000) == 0.0


def test_prescreen_prunes_exactly_what_the_threshold_says(tiny):
    import json

    import optuna

    from rnnstudy.run.train import train
    from rnnstudy.study.worker import PreScreen

    cfg = tiny(model__cell="lstm", task__name="copy", task__T=6)
    predicted = diagnose(cfg).predicted_memory
    assert predicted > 0
    kept = train(cfg, callbacks=[PreScreen(0.99 * predicted / 6)])
    assert kept.status == "complete"
    with pytest.raises(optuna.TrialPruned, match="pre-screen: predicted memory length"):
        train(cfg, callbacks=[PreScreen(1.01 * predicted / 6)])
    infos = [json.loads(p.read_text()) for p in cfg.out.rglob("run.json")]
    (pruned,) = [i for i in infos if i["status"] == "pruned"]
    assert pruned["steps"] == 0 and pruned["reason"].startswith("pre-screen")


def test_prediction_rebuilds_each_runs_exact_config(tiny):
    from rnnstudy.report.prediction import run_config
    from rnnstudy.run.store import load
    from rnnstudy.run.train import train

    cfg = tiny(model__cell="gru", init__recurrent="orthogonal", init__gain=0.7, probe__percentiles=[10, 90], seed=5)
    row = load(train(cfg).path).runs.iloc[0]
    assert run_config(row["path"]) == cfg


@pytest.mark.parametrize("cell", list(CELLS))
def test_tangent_maps_equal_forward_mode_autodiff(cell):
    """Each cell's tangent map against torch's own forward-mode derivative of its step, column by column (written out
    for the scanned cells; vectorised over the tangents for the nn.RNNBase cells)."""
    from rnnstudy.model.diagnostics import step_function
    from rnnstudy.model.models import RecurrentNet
    from rnnstudy.run.config import ModelConfig

    torch.manual_seed(0)
    net = RecurrentNet(ModelConfig(cell=cell, hidden_size=6), 3, 1).double()
    push = step_function(net)
    n = CELLS[cell].state_size(6)
    s, x = torch.randn(4, n, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    v = torch.randn(4, n, 3, dtype=torch.float64)
    out, jv = push(s, x, v)
    for j in range(3):
        value, tangent = torch.func.jvp(lambda s: push(s, x, None)[0], (s,), (v[..., j],))
        assert torch.allclose(value, out, rtol=1e-14) and torch.allclose(tangent, jv[..., j], rtol=1e-12, atol=1e-14)
