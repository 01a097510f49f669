"""The parameter-sensitivity profile: its per-step parameter gradients sum to the plain backward's, for every cell, and
equal the tanh RNN's closed form delta_t h_{t-1}^T step by step."""

import numpy as np
import pytest
import torch

from rnnstudy.model.cells import CELLS
from rnnstudy.model.models import RecurrentNet
from rnnstudy.model.sensitivity import per_step_gradients, sensitivity
from rnnstudy.model.tasks import make_task
from rnnstudy.run.config import ModelConfig


def _net(cell, layers, task, block="none"):
    torch.manual_seed(0)
    cfg = ModelConfig(cell=cell, hidden_size=6, num_layers=layers, block=block)
    return RecurrentNet(cfg, task.input_size, task.output_size).double()


@pytest.mark.parametrize(("layers", "block"), [(1, "none"), (2, "none"), (2, "glu")])
@pytest.mark.parametrize("cell", list(CELLS))
def test_per_step_parameter_gradients_sum_to_the_plain_backward(cell, layers, block):
    task = make_task("copy", 4)
    batch = task.sample(5, torch.Generator().manual_seed(1))
    net = _net(cell, layers, task, block)
    steps = per_step_gradients(net, batch, task)
    net.zero_grad()
    task.per_sample_answer_loss(net(batch.x.double()), batch).mean().backward()  # the fused forward, autograd's own
    for layer, grads in zip(net.layers, steps):
        for name, p in layer.named_parameters():
            assert grads[name].shape == (task.seq_len, *p.shape)
            torch.testing.assert_close(grads[name].sum(dim=0), p.grad, rtol=1e-10, atol=1e-13)
    prof = sensitivity(net, batch, task)
    assert set(prof.norms) == set(range(1, layers + 1)) and prof.norms[1].shape == (task.seq_len,)
    assert list(prof.lags()) == list(range(task.seq_len - 1, -1, -1))


def test_the_tanh_rnns_step_contributions_are_delta_times_the_previous_state():
    """dL/dW_hh|_t = sum_b delta_t h_{t-1}^T and dL/dW_ih|_t = sum_b delta_t x_t^T, delta_t = (1 - h_t^2) dL/dh_t, from an
    unrolled float64 loop (the adding problem: L is the batch's mean squared error of the last output)."""
    task = make_task("adding", 7)
    batch = task.sample(4, torch.Generator().manual_seed(2))
    net = _net("rnn_tanh", 1, task)
    layer, x = net.layers[0], batch.x.double()
    h, hs = torch.zeros(4, 6, dtype=torch.float64), []
    for t in range(len(x)):
        h = torch.tanh(x[t] @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h @ layer.weight_hh_l0.T + layer.bias_hh_l0)
        h.retain_grad()
        hs.append(h)
    ((net.readout(hs[-1])[:, 0] - batch.y) ** 2).mean().backward()
    steps = per_step_gradients(net, batch, task)[0]
    norms = sensitivity(net, batch, task).norms[1]
    for t in range(len(x)):
        delta = (1 - hs[t].detach() ** 2) * hs[t].grad
        before = hs[t - 1].detach() if t else torch.zeros_like(delta)
        torch.testing.assert_close(steps["weight_hh_l0"][t], delta.T @ before, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(steps["weight_ih_l0"][t], delta.T @ x[t], rtol=1e-10, atol=1e-14)
        parts = [delta.T @ before, delta.T @ x[t], delta.sum(0), delta.sum(0)]
        assert norms[t] == pytest.approx(torch.sqrt(sum(p.square().sum() for p in parts)).item(), rel=1e-10)


def test_a_run_probes_the_sensitivity_of_its_training_batch_at_each_probe(tiny):
    """With probe.sensitivity, the stored s_t at step 0 is sensitivity() of the initial net on the first training batch,
    recomputed here from the seed; every probe step has its rows and its scalars."""
    import pandas as pd

    from rnnstudy.model.models import initial_net
    from rnnstudy.model.sensitivity import THETA
    from rnnstudy.run.lit import SEED_STREAM
    from rnnstudy.run.store import load
    from rnnstudy.run.train import train

    cfg = tiny(model__cell="rnn_tanh", probe__sensitivity=True, train__precision=64, train__steps=20, probe__every=10)
    result = train(cfg)
    rows = pd.read_parquet(result.path / "gradflow.parquet")
    theta = rows[rows["state"] == THETA]
    assert sorted(theta["step"].unique()) == sorted(rows[rows["state"] == "h"]["step"].unique()) == [0, 10, 20]
    task = make_task("adding", cfg.task.T)
    torch.manual_seed(cfg.seed)
    net = initial_net(cfg, task).double()
    batch = task.sample(cfg.train.batch_size, torch.Generator().manual_seed(cfg.seed + SEED_STREAM))
    expected = sensitivity(net, batch._replace(x=batch.x.double()), task).norms[1]
    np.testing.assert_allclose(theta[theta["step"] == 0].sort_values("t")["norm"], expected, rtol=1e-10)
    probe = load(result.path).metrics.query("split == 'probe'")
    assert set(probe[probe["metric"] == "answer/decay_rate/l1/theta"]["step"]) == {0, 10, 20}
