"""The probe's g_t against an independent unrolled computation, and its known behaviour."""

import numpy as np
import pytest
import torch

from rnnstudy.model.cells import CELLS, INJECTABLE
from rnnstudy.model.gradflow import GradFlowProbe, decay_rate, horizon, profile
from rnnstudy.model.models import RecurrentNet
from rnnstudy.model.tasks import make_task
from rnnstudy.run.config import InitConfig, ModelConfig


def unrolled_norms(net, batch, task, loss="answer"):
    """Per-sample ||d loss_b / d h_t|| (and c_t) from an explicit per-step loop of the gate equations.

    The per-sample losses are written out here from the task definitions, not taken from the task class.
    """
    x = batch.x.double()
    L, B, _ = x.shape
    states = {}
    for index, layer in enumerate(net.layers):
        H = layer.hidden_size
        h = torch.zeros(B, H, dtype=torch.float64)
        c = torch.zeros(B, H, dtype=torch.float64)
        hs, cs = [], []
        for t in range(L):
            if net.cell == "mingru":  # Feng et al. 2024, log-space form: h = (1 - z) h + z g(c), z = 1 - sigmoid(k)
                k, cand = (x[t] @ layer.weight_ih_l0.T + layer.bias_ih_l0).chunk(2, dim=1)
                keep = torch.sigmoid(k)
                h = keep * h + (1 - keep) * torch.where(cand >= 0, cand + 0.5, torch.sigmoid(cand))
                h.retain_grad()
                hs.append(h)
                continue
            if net.cell == "lru":  # Orvieto et al. 2023 in real arithmetic: each mode's (Re, Im) pair rotated and decayed
                r, phase = torch.exp(-torch.exp(layer.nu_log)), torch.exp(layer.theta_log)
                gamma = torch.exp(layer.gamma_log)
                re, im = h[:, : H // 2], h[:, H // 2 :]
                re, im = (r * torch.cos(phase) * re - r * torch.sin(phase) * im + gamma * (x[t] @ layer.B_re.T),
                          r * torch.sin(phase) * re + r * torch.cos(phase) * im + gamma * (x[t] @ layer.B_im.T))  # fmt: skip
                h = torch.cat([re, im], dim=1)
                h.retain_grad()
                hs.append(h)
                continue
            w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
            gi, gh = x[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh
            if net.cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                c.retain_grad()
                cs.append(c)
            elif net.cell == "gru":
                ir, iz, in_ = gi.chunk(3, dim=1)
                hr, hz, hn = gh.chunk(3, dim=1)
                r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                h = (1 - z) * torch.tanh(in_ + r * hn) + z * h
            else:
                act = torch.tanh if net.cell == "rnn_tanh" else torch.relu
                h = act(gi + gh)
            h.retain_grad()
            hs.append(h)
        states[(index + 1, "h")] = hs
        if cs:
            states[(index + 1, "c")] = cs
        x = torch.stack(hs)
        if net.blocks is not None:  # the LRU paper's block: s + GLU(GELU(W s + b)), GLU(a, b) = a * sigmoid(b)
            block = net.blocks[index]
            u = torch.nn.functional.gelu(x @ block.mix.weight.T + block.mix.bias)
            a, b = (u @ block.gate.weight.T + block.gate.bias).chunk(2, dim=-1)
            x = x + a * torch.sigmoid(b)
    out = net.readout(x)
    if task.name == "adding":  # squared error of the last output; the answer is the last step
        per_sample = (out[-1, :, 0] - batch.y) ** 2
    else:  # cross-entropy per step, averaged over every step or over the ten recall steps
        ce = -torch.log_softmax(out, dim=-1).gather(-1, batch.y.unsqueeze(-1)).squeeze(-1)
        per_sample = (ce[-10:] if loss == "answer" else ce).mean(dim=0)
    per_sample.sum().backward()
    return {k: torch.stack([v.grad.norm(dim=1) for v in vs]) for k, vs in states.items()}


def make_net(cell, layers, task, seed=0, hidden=6, block="none"):
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, hidden_size=hidden, num_layers=layers, block=block)
    return RecurrentNet(cfg, task.input_size, task.output_size).double()


@pytest.mark.parametrize("method", ["chunked", "fused"])
@pytest.mark.parametrize("loss", ["answer", "training"])
@pytest.mark.parametrize("task_name,T", [("adding", 9), ("copy", 4)])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_probe_equals_unrolled_float64(cell, layers, task_name, T, loss, method):
    """Both methods against the unrolled loop (the fused one where it is exact: not the GRU, nor the scanned cells)."""
    if cell not in INJECTABLE and method == "fused":
        pytest.skip(f"the injected (fused) probe is not exact for the {cell}; it uses the chunked one")
    task = make_task(task_name, T)
    batch = task.sample(5, torch.Generator().manual_seed(1))
    net = make_net(cell, layers, task)
    prof = profile(net, batch._replace(x=batch.x.double()), task, loss=loss, method=method)
    ref = unrolled_norms(net, batch, task, loss)
    assert set(prof.norms) == set(ref)
    for key, expected in ref.items():
        got = prof.norms[key]
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-10, atol=1e-300), key
    assert prof.t == list(range(task.seq_len))


@pytest.mark.parametrize("cell,method", [("lru", "chunked"), ("mingru", "chunked"), ("lstm", "fused"), ("gru", "chunked")])
def test_probe_through_the_glu_block_equals_unrolled_float64(cell, method):
    """With a block after each layer the probe still reads each layer's states, exactly, and the net's function is the
    unrolled one (its readout sees the last block's output)."""
    task = make_task("adding", 9)
    batch = task.sample(5, torch.Generator().manual_seed(1))
    net = make_net(cell, 2, task, block="glu")
    prof = profile(net, batch._replace(x=batch.x.double()), task, loss="answer", method=method)
    ref = unrolled_norms(net, batch, task)
    assert set(prof.norms) == set(ref) == {(1, "h"), (2, "h")} | ({(1, "c"), (2, "c")} if cell == "lstm" else set())
    for key, expected in ref.items():
        assert torch.allclose(prof.norms[key], expected, rtol=1e-10, atol=1e-300), key
    plain = make_net(cell, 2, task)  # the same seed without blocks: another function
    assert not torch.allclose(net(batch.x.double()), plain(batch.x.double()))


@pytest.mark.parametrize("chunk", [3, 4])
def test_chunked_probe_exact_at_boundaries(chunk):
    task = make_task("adding", 10)
    batch = task.sample(4, torch.Generator().manual_seed(2))
    net = make_net("lstm", 2, task)
    prof = profile(net, batch._replace(x=batch.x.double()), task, chunk=chunk)
    ref = unrolled_norms(net, batch, task)
    assert prof.t == [t for t in range(10) if (t + 1) % chunk == 0 or t == 9]
    for key in ref:
        assert torch.allclose(prof.norms[key], ref[key][prof.t], rtol=1e-10)


def test_fused_output_retain_grad_misses_the_recurrence():
    """The trap the probe avoids: a fused module's output sees only the direct readout gradient."""
    task = make_task("adding", 9)
    batch = task.sample(5, torch.Generator().manual_seed(1))
    net = make_net("lstm", 1, task)
    output, _ = net.layers[0](batch.x.double())
    output.retain_grad()
    task.loss(net.readout(output), batch).backward()
    naive = output.grad.norm(dim=-1) * 5
    net.zero_grad()
    ref = unrolled_norms(net, batch, task)[(1, "h")]
    assert torch.all(naive[:-1] == 0) and torch.all(ref[:-1] > 0)
    assert not torch.allclose(naive, ref)
    assert torch.allclose(naive[-1], ref[-1], rtol=1e-10)


def test_per_sample_norms_averaged_over_batch():
    """g_t is the mean of per-sample norms: equal to the mean of single-sample profiles."""
    task = make_task("copy", 5)
    batch = task.sample(4, torch.Generator().manual_seed(3))
    net = make_net("gru", 1, task).eval()
    x = batch.x.double()
    together = profile(net, batch._replace(x=x), task).mean((1, "h"))
    assert not net.training  # profile() trains only for its own call
    alone = []
    for b in range(4):
        one = batch._replace(x=x[:, b : b + 1], y=batch.y[:, b : b + 1], informative=batch.informative[:, b : b + 1])
        net.zero_grad()
        alone.append(profile(net, one, task).mean((1, "h")))
    assert np.allclose(together, np.mean(alone, axis=0), rtol=1e-10)
    assert not np.allclose(alone[0], alone[1])


def decay_at_init(recurrent, cell, **init):
    task = make_task("adding", 60)
    batch = task.sample(32, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = RecurrentNet(ModelConfig(cell=cell, hidden_size=64), 2, 1).double()
    net.initialise(InitConfig(recurrent=recurrent, **init), 60)
    prof = profile(net, batch._replace(x=batch.x.double()), task)
    return prof.summary(1e-3)["answer/decay_rate/l1/h"]


def test_spectral_half_decays_geometrically():
    assert decay_at_init("spectral", "rnn_tanh", rho=0.5) <= -0.3


def test_identity_and_orthogonal_decay_far_slower():
    irnn = decay_at_init("identity", "rnn_relu", input="normal", input_gain=1e-3, bias="zero")
    ortho = decay_at_init("orthogonal", "rnn_tanh", gain=1.0)
    assert -0.02 < irnn <= 0.02
    assert -0.1 < ortho < 0
    assert ortho > decay_at_init("spectral", "rnn_tanh", rho=0.5) / 5


def test_decay_rate_and_horizon_formulas():
    lags = np.arange(10, dtype=float)[::-1]  # t = 0..9 -> lag 9..0
    g = 10.0 ** (-0.5 * lags)
    assert decay_rate(lags, g) == pytest.approx(-0.5)
    assert horizon(lags, g, 1e-3) == 6.0  # 10^-3 reached at lag 6
    g[:3] = 0.0  # underflowed steps are left out of the fit
    assert decay_rate(lags, g) == pytest.approx(-0.5)


def test_copy_answer_loss_profile_falls_with_lag_for_default_lstm():
    """At initialisation the answer-loss gradient vanishes towards the inputs; the training-loss one does not."""
    task = make_task("copy", 60)
    batch = task.sample(32, torch.Generator().manual_seed(0))
    net = make_net("lstm", 1, task, hidden=64)
    x = batch._replace(x=batch.x.double())
    answer = profile(net, x, task).mean((1, "h"))
    whole = profile(net, x, task, loss="training").mean((1, "h"))
    assert answer[:10].max() < 1e-6 * answer[-10:].min()  # the ten input steps, against the ten recall steps
    prof = profile(net, x, task)
    summary = prof.summary(1e-3)
    assert summary["answer/decay_rate/l1/h"] < -0.05
    assert summary["answer/horizon/l1/h"] < 40 < task.seq_len - 1
    assert summary["answer/informative/l1/h"] < 1e-6
    assert whole[:10].min() > 1e-2 * whole.max()  # each step's own readout dominates: no decay to see
    assert decay_rate(prof.lags(), whole) > -0.02


def test_adding_answer_and_training_profiles_are_the_same():
    task = make_task("adding", 20)
    batch = task.sample(8, torch.Generator().manual_seed(4))
    net = make_net("gru", 2, task)
    x = batch._replace(x=batch.x.double())
    answer, whole = profile(net, x, task), profile(net, x, task, loss="training")
    for key in answer.norms:
        assert torch.equal(answer.norms[key], whole.norms[key])


@pytest.mark.parametrize("cell", INJECTABLE)
def test_injected_forward_is_the_same_function_and_weight_gradients(cell):
    task = make_task("copy", 6)
    batch = task.sample(4, torch.Generator().manual_seed(5))
    net = make_net(cell, 2, task)
    x = batch.x.double()
    grads, outputs = [], []
    for forward in (net, lambda x: net.forward_injected(x)[0]):
        net.zero_grad()
        out = forward(x)
        task.loss(out, batch).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        outputs.append(out.detach())
    assert torch.allclose(outputs[0], outputs[1], rtol=1e-14, atol=1e-15)
    for fused, injected in zip(*grads):
        assert torch.allclose(fused, injected, rtol=1e-12, atol=1e-15)


def test_the_injected_probe_never_hands_the_real_layers_weights_to_flatten_parameters(monkeypatch):
    """On CUDA, flatten_parameters re-points the tensors it is given into one buffer: were they the real layer's
    Parameters, every later fused step would warn and copy. A spy records what it is handed; the real weights stay put."""
    task = make_task("adding", 6)
    net = make_net("lstm", 2, task)
    real = {id(p) for p in net.parameters()}
    before = {name: p.data_ptr() for name, p in net.named_parameters()}
    handed, original = [], torch.nn.RNNBase.flatten_parameters

    def spy(module):
        handed.extend(id(w) for w in module._flat_weights if w is not None)
        return original(module)

    monkeypatch.setattr(torch.nn.RNNBase, "flatten_parameters", spy)
    out, _ = net.forward_injected(task.sample(4, torch.Generator().manual_seed(0)).x.double())
    out.sum().backward()
    assert handed and not real & set(handed)
    assert {name: p.data_ptr() for name, p in net.named_parameters()} == before
    assert all(p.grad is not None for p in net.parameters())


def test_fused_method_is_refused_for_the_gru():
    task = make_task("adding", 5)
    net = make_net("gru", 1, task)
    with pytest.raises(ValueError, match="exact only for rnn_tanh, rnn_relu, lstm"):
        net.forward_injected(task.sample(2, torch.Generator().manual_seed(0)).x.double())


@pytest.mark.parametrize("method", ["chunked", "fused"])
@pytest.mark.parametrize("task_name,T,loss", [("adding", 8, "answer"), ("copy", 4, "training")])
def test_probe_reading_the_training_backward_equals_its_own_backward(task_name, T, loss, method):
    """Where the probe's loss is the training loss, it reads the training backward's gradients (no extra backward)."""
    task = make_task(task_name, T)
    batch = task.sample(6, torch.Generator().manual_seed(7))
    net = make_net("lstm", 2, task)
    x = batch._replace(x=batch.x.double())
    probe = GradFlowProbe(1, loss=loss, method=method)
    out = probe.forward(net, x.x)
    assert probe.measure(net, out, x, task) is None  # nothing yet: the training backward carries it
    task.loss(out, x).backward()
    during = probe.collect()
    alone = profile(net, x, task, loss=loss, method=method)
    for key in alone.norms:
        assert torch.allclose(during.norms[key], alone.norms[key], rtol=1e-12), key
    assert probe.collect() is None
