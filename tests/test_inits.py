"""Initialisation schemes against their formulas, including PyTorch's two-bias and gate-order traps."""

import math

import pytest
import torch

from rnnstudy.model.cells import CELLS, FORGET_GATED, GATED, RNNBASE
from rnnstudy.model.models import RecurrentNet
from rnnstudy.run.config import InitConfig, ModelConfig


def net(cell, hidden=16, layers=1, inp=3, **init):
    torch.manual_seed(0)
    n = RecurrentNet(ModelConfig(cell=cell, hidden_size=hidden, num_layers=layers), inp, 1)
    n.initialise(InitConfig(**init), t_max=200)
    return n


def blocks(w, hidden):
    return w.detach().split(hidden)


@pytest.mark.parametrize("cell", RNNBASE)
def test_orthogonal_each_gate_block(cell):
    n = net(cell, recurrent="orthogonal", gain=1.7)
    for block in blocks(n.layers[0].weight_hh_l0, 16):
        assert torch.allclose(block.T @ block, 1.7**2 * torch.eye(16), atol=1e-5)


def test_identity_irnn():
    n = net("rnn_relu", recurrent="identity", scale=0.9, input="normal", input_gain=1e-3, bias="zero")
    layer = n.layers[0]
    assert torch.equal(layer.weight_hh_l0.detach(), 0.9 * torch.eye(16))
    assert layer.weight_ih_l0.abs().max() < 1e-2
    assert layer.bias_ih_l0.abs().sum() == 0 and layer.bias_hh_l0.abs().sum() == 0


def test_spectral_radius():
    n = net("rnn_tanh", hidden=32, recurrent="spectral", rho=0.5)
    radius = torch.linalg.eigvals(n.layers[0].weight_hh_l0.detach().double()).abs().max()
    assert radius.item() == pytest.approx(0.5, rel=1e-5)


def test_default_is_pytorch_uniform_everywhere():
    n = net("lstm", hidden=16)
    bound = 1 / math.sqrt(16)
    for p in n.layers[0].parameters():
        assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound


def test_forget_bias_in_one_vector_only():
    n = net("lstm", bias="forget", forget_bias=1.0)
    layer = n.layers[0]
    i, f, g, o = blocks(layer.bias_ih_l0, 16)
    assert torch.equal(f, torch.ones(16))
    assert all(torch.equal(b, torch.zeros(16)) for b in (i, g, o))
    assert torch.equal(layer.bias_hh_l0.detach(), torch.zeros(64))


@pytest.mark.parametrize(
    "cell,bias", [(c, "forget") for c in FORGET_GATED] + [(c, "chrono") for c in GATED if c in RNNBASE]
)
def test_effective_bias_is_the_target(cell, bias):
    """PyTorch adds bias_ih and bias_hh: their sum, the bias the gate sees, must be the scheme's bias, on the keep gate's
    block as the cell table places it (forget in LSTM's i,f,g,o; update in GRU's r,z,n)."""
    spec = CELLS[cell]
    layer = net(cell, hidden=8, bias=bias, forget_bias=2.5).layers[0]
    effective = (layer.bias_ih_l0 + layer.bias_hh_l0).detach().split(8)
    keep = effective[spec.keep_gate]
    others = torch.cat([b for k, b in enumerate(effective) if k not in (spec.keep_gate, spec.write_gate)])
    if bias == "forget":
        assert torch.allclose(keep, torch.full((8,), 2.5)) and not others.any()
        assert not effective[spec.write_gate].any()
    else:
        assert (keep >= 0).all() and keep.max() > 0.5 and (keep <= math.log(199)).all()
        assert not others.any()
        if spec.write_gate is not None:  # chrono's b_i = -b_f
            assert torch.equal(effective[spec.write_gate], -keep)


def test_chrono_lstm():
    n = net("lstm", hidden=512, bias="chrono")
    layer = n.layers[0]
    i, f, g, o = blocks(layer.bias_ih_l0, 512)
    assert f.min() >= 0 and f.max() <= math.log(199)
    assert f.max() > math.log(150) and f.min() < math.log(3)  # spread over log U(1, T_max - 1)
    assert torch.equal(i, -f)
    assert torch.equal(g, torch.zeros(512)) and torch.equal(o, torch.zeros(512))
    assert torch.equal(layer.bias_hh_l0.detach(), torch.zeros(2048))
    # log U(1, 199) has median log(100): half the units remember for more than ~100 steps
    assert torch.exp(f).median().item() == pytest.approx(100, rel=0.15)


def test_chrono_gru_sets_update_gate_positive():
    n = net("gru", hidden=256, bias="chrono")
    r, z, hn = blocks(n.layers[0].bias_ih_l0, 256)
    assert z.min() >= 0 and z.max() <= math.log(199) and z.std() > 0.5
    assert torch.equal(r, torch.zeros(256)) and torch.equal(hn, torch.zeros(256))
    assert torch.equal(n.layers[0].bias_hh_l0.detach(), torch.zeros(768))


def test_input_and_recurrent_chosen_separately_and_all_layers():
    n = net("gru", layers=2, recurrent="orthogonal", input="xavier", input_gain=0.5)
    for layer in n.layers:
        for block in blocks(layer.weight_hh_l0, 16):
            assert torch.allclose(block.T @ block, torch.eye(16), atol=1e-5)
    w = n.layers[0].weight_ih_l0[:16]
    assert w.abs().max() <= 0.5 * math.sqrt(6 / (3 + 16)) + 1e-6
