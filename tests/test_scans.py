"""The scanned cells (minGRU, LRU): each scan against its recursion written out step by step, the LRU's ring against
its published distribution, their initialisation schemes, their config checks, and a run of each end to end."""

import math

import pytest
import torch
from scipy import stats

from rnnstudy.cli import main
from rnnstudy.model.inits import initialise
from rnnstudy.model.scans import LRU, MinGRU
from rnnstudy.run.config import InitConfig
from rnnstudy.run.train import train


def _mingru_loop(layer, x, h):
    """minGRU's recursion (Feng et al. 2024, log-space form), one step at a time, from the weights."""
    out = []
    for x_t in x:
        k, c = (x_t @ layer.weight_ih_l0.T + layer.bias_ih_l0).chunk(2, dim=-1)
        z = 1 - torch.sigmoid(k)
        h = (1 - z) * h + z * torch.where(c >= 0, c + 0.5, torch.sigmoid(c))
        out.append(h)
    return torch.stack(out)


def _lru_loop(layer, x, h):
    """The LRU's recursion in complex arithmetic, one step at a time: h_t = lambda h_{t-1} + gamma B x_t."""
    lam = torch.exp(-torch.exp(layer.nu_log) + 1j * torch.exp(layer.theta_log))
    b = torch.complex(layer.B_re, layer.B_im)
    out = []
    for x_t in x:
        h = lam * h + torch.exp(layer.gamma_log) * (x_t.to(b.dtype) @ b.T)
        out.append(torch.cat([h.real, h.imag], dim=-1))
    return torch.stack(out)


@pytest.mark.parametrize("start", ["zero", "positive", "negative"])
def test_mingru_scan_is_its_recursion_in_value_and_gradient(start):
    torch.manual_seed(0)
    layer = MinGRU(3, 4).double()
    x = torch.randn(37, 5, 3, dtype=torch.float64, requires_grad=True)
    h0 = {"zero": None, "positive": torch.rand(1, 5, 4, dtype=torch.float64) + 0.1,
          "negative": -torch.rand(1, 5, 4, dtype=torch.float64)}[start]  # fmt: skip
    out, last = layer(x, h0)
    ref = _mingru_loop(layer, x, torch.zeros(5, 4, dtype=torch.float64) if h0 is None else h0[0])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(last[0], ref[-1], rtol=1e-12, atol=1e-14)
    weights = torch.randn_like(ref)
    got = torch.autograd.grad((out * weights).sum(), [x, layer.weight_ih_l0])
    want = torch.autograd.grad((ref * weights).sum(), [x, layer.weight_ih_l0])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("length", [1, 13, 64])
def test_lru_scan_is_its_recursion_in_value_and_gradient(length):
    torch.manual_seed(1)
    layer = LRU(3, 8).double()
    x = torch.randn(length, 5, 3, dtype=torch.float64)
    h0 = torch.randn(1, 5, 8, dtype=torch.float64)
    out, last = layer(x, h0)
    ref = _lru_loop(layer, x, torch.complex(h0[0, :, :4], h0[0, :, 4:]))
    torch.testing.assert_close(out, ref, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(last[0], ref[-1], rtol=1e-11, atol=1e-12)
    params = [layer.nu_log, layer.theta_log, layer.gamma_log, layer.B_re]
    weights = torch.randn_like(ref)
    for g, w in zip(torch.autograd.grad((out * weights).sum(), params), torch.autograd.grad((ref * weights).sum(), params)):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-11)


def test_the_ring_draws_lambda_uniformly_by_area_on_the_ring_and_normalises_gamma():
    torch.manual_seed(2)
    layer = LRU(2, 2 * 4000).double()
    initialise(layer, "lru", InitConfig(recurrent="ring", r_min=0.4, r_max=0.9, max_phase=math.pi / 10), 100)
    lam = layer.eigen().detach()
    radius2 = lam.abs().square().numpy()
    assert radius2.min() >= 0.4**2 - 1e-12 and radius2.max() <= 0.9**2 + 1e-12
    assert stats.kstest(radius2, stats.uniform(0.4**2, 0.9**2 - 0.4**2).cdf).pvalue > 1e-3  # uniform by area
    phase = lam.angle().numpy()
    assert phase.min() >= 0 and phase.max() <= math.pi / 10 + 1e-12
    assert stats.kstest(phase, stats.uniform(0, math.pi / 10).cdf).pvalue > 1e-3
    gamma = torch.exp(layer.gamma_log.detach())
    torch.testing.assert_close(gamma.square() + lam.abs().square(), torch.ones(4000, dtype=torch.float64))


def test_chrono_sets_mingrus_keep_timescales_between_2_and_t_max():
    torch.manual_seed(3)
    layer = MinGRU(2, 2000)
    initialise(layer, "mingru", InitConfig(bias="chrono", chrono_tmax=50.0), 50)
    keep, cand = layer.bias_ih_l0.detach().chunk(2)
    timescale = 1 / (1 - torch.sigmoid(keep))  # at zero input
    assert timescale.min() > 2 - 1e-5 and timescale.max() < 50 + 1e-4 and timescale.max() > 45
    assert torch.equal(cand, torch.zeros_like(cand))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.cell=lru", "model.hidden_size=5"], "model.hidden_size = 5: the lru needs a multiple of 2"),
        (["model.cell=lru", "init.recurrent=ring", "init.r_min=0.95", "init.r_max=0.9"], "init.r_min = 0.95"),
        (["model.cell=lru", "init.recurrent=orthogonal"], "init.recurrent = 'orthogonal' needs model.cell in rnn_tanh"),
        (["model.cell=mingru", "init.bias=forget"], "init.bias = 'forget' needs model.cell in lstm"),
    ],
)
def test_a_scanned_cells_wrong_setting_is_one_line_naming_it(tmp_path, capsys, overrides, message):
    assert main(["train", *overrides, f"out={tmp_path}/runs", "train.steps=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"model__cell": "lru", "init__recurrent": "ring", "init__r_min": 0.9, "task__name": "adding"},
        {"model__cell": "mingru", "init__bias": "chrono", "task__name": "copy", "task__T": 5},
    ],
)
def test_a_scanned_cell_trains_with_its_scheme_and_its_probe(tiny, overrides):
    result = train(tiny(**overrides, train__steps=20))
    assert result.status == "complete" and math.isfinite(result.final["loss"])
