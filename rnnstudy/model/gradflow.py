"""Exact per-timestep gradient flow: g_t = mean_b ||d loss_b / d h_t^(b)|| through BPTT.

Which loss: by default the **answer loss**, the loss on the steps that carry the answer (copy:
the ten recall steps; adding: the last step), because that is the gradient that has to reach
back to the informative inputs for the network to remember. The whole training loss is an
option (``probe.loss: training``); on copy it covers every step, so each g_t is dominated by
that step's own readout and shows no decay.

A fused ``nn.LSTM``'s ``output.retain_grad()`` only sees the *direct* gradient from the readout;
the recurrence is hidden inside the kernel. Here the network runs in time chunks
(:meth:`RecurrentNet.forward_traced`) so the state handed from one chunk to the next is a tensor
autograd can see. At each chunk end t the total derivative is

    dL/dh_t = (gradient into the chunk's output row t) + (gradient into the handed-on state),

exact at every boundary (chunk length 1 gives every step). For the LSTM cell state the path
c_t -> h_t = o_t * tanh(c_t) runs inside the kernel as well, so it is added back explicitly:
dL/dc_t = (gradient into the handed-on c_t) + dL/dh_t * o_t * (1 - tanh(c_t)^2).
The gradient is taken of the *sum* of per-sample losses, which is each sample's own gradient.
Layers are numbered from 1 everywhere (store, W&B, figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from rnnstudy.model.cells import CELLS, INJECTABLE, CellSpec, lstm_gates
from rnnstudy.model.models import InjectedTrace, LayerTrace, RecurrentNet
from rnnstudy.model.tasks import Batch, Task
from rnnstudy.names import metric_key

ProbeLoss = Literal["answer", "training"]
ProbeMethod = Literal["chunked", "fused"]


@dataclass
class Profile:
    """Per-sample gradient norms at the probed steps of every layer and state.

    ``norms[(layer, state)]`` has shape ``(len(t), B)`` (layers from 1); ``t`` are the probed time
    steps; ``informative`` is the task's ``(L, B)`` mask of the steps that carry the information;
    ``answer`` the steps that carry the answer; ``loss`` which loss the gradient is of.
    """

    t: list[int]
    length: int
    norms: dict[tuple[int, str], torch.Tensor]
    informative: torch.Tensor
    answer: slice
    loss: ProbeLoss = "answer"

    def mean(self, key: tuple[int, str]) -> np.ndarray:
        """g_t: the batch mean of the per-sample norms."""
        return self.norms[key].mean(dim=1).double().cpu().numpy()

    def lags(self) -> np.ndarray:
        """Steps back from the end of the sequence (the last answer step) of each probed t."""
        return np.array([lag(t, self.length) for t in self.t], dtype=float)

    def frame(self, step: int, percentiles: list[float] = ()) -> pd.DataFrame:
        """Tidy rows (step, loss, layer, state, t, lag, norm [, pNN]) for the results store."""
        parts = []
        for (layer, state), norms in self.norms.items():
            cols = {
                "step": step,
                "loss": self.loss,
                "layer": layer,
                "state": state,
                "t": self.t,
                "lag": self.lags().astype(int),
                "norm": self.mean((layer, state)),
            }
            if percentiles:
                q = torch.tensor([p / 100 for p in percentiles], dtype=norms.dtype, device=norms.device)
                values = torch.quantile(norms, q, dim=1).double().cpu().numpy()
                cols.update({f"p{p:g}": values[i] for i, p in enumerate(percentiles)})
            parts.append(pd.DataFrame(cols))
        return pd.concat(parts, ignore_index=True)

    def summary(self, eps: float) -> dict[str, float]:
        """Derived scalars per layer/state, named ``<loss>/<metric>/l<layer>/<state>``."""
        out = {}
        lags = self.lags()
        info = self.informative[self.t].cpu()
        answer = torch.zeros(len(self.t), dtype=torch.bool)
        answer[[i for i, t in enumerate(self.t) if t in range(self.length)[self.answer]]] = True
        for (layer, state), norms in self.norms.items():
            g = self.mean((layer, state))
            out[metric_key("decay_rate", self.loss, layer, state)] = decay_rate(lags, g)
            out[metric_key("horizon", self.loss, layer, state)] = horizon(lags, g, eps)
            out[metric_key("informative", self.loss, layer, state)] = informative_ratio(norms.cpu(), info, answer)
        return out


def lag(t: int, length: int) -> int:
    """How far time step ``t`` lies back from the end of a sequence of ``length`` steps (the last answer step)."""
    return length - 1 - t


def decay_rate(lags: np.ndarray, g: np.ndarray) -> float:
    """Least-squares slope of log10 g against lag (per step; negative means vanishing)."""
    keep = np.isfinite(g) & (g > 0)
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(lags[keep], np.log10(g[keep]), 1)[0])


def horizon(lags: np.ndarray, g: np.ndarray, eps: float) -> float:
    """Largest lag k whose g is at least ``eps`` times the largest g."""
    peak = np.nanmax(g) if np.isfinite(g).any() else float("nan")
    if not peak > 0:
        return float("nan")
    reach = lags[g >= eps * peak]
    return float(reach.max()) if reach.size else 0.0


def informative_ratio(norms: torch.Tensor, informative: torch.Tensor, answer: torch.Tensor) -> float:
    """Mean over samples of (mean g at its informative steps) / (mean g at the answer steps)."""
    counts = informative.sum(dim=0)
    if not bool((counts > 0).any()) or not bool(answer.any()):
        return float("nan")
    at_info = (norms * informative).sum(dim=0) / counts.clamp_min(1)
    at_answer = norms[answer].mean(dim=0).clamp_min(torch.finfo(norms.dtype).tiny)
    return float((at_info / at_answer)[counts > 0].double().mean())


def _lstm_gates(layer: torch.nn.LSTM, inputs: torch.Tensor, previous: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The LSTM's gates i, f, g, o at the given steps ``(n, B, in)``, from their inputs and the h_{t-1} before them."""
    b = layer.bias_ih_l0 + layer.bias_hh_l0
    flat = torch.addmm(b, inputs.flatten(0, 1), layer.weight_ih_l0.T).addmm_(previous.flatten(0, 1), layer.weight_hh_l0.T)
    return lstm_gates(flat.view(*previous.shape[:2], -1))


def _before(outputs: torch.Tensor) -> torch.Tensor:
    """h_{t-1} at every step t of a layer's outputs ``(T, B, H)`` (zero before the first)."""
    return torch.cat([torch.zeros_like(outputs[:1]), outputs[:-1]])


def per_sample_loss(task: Task, out: torch.Tensor, batch: Batch, loss: ProbeLoss) -> torch.Tensor:
    """The per-sample loss a profile is of: the answer loss or the whole training loss."""
    return task.per_sample_answer_loss(out, batch) if loss == "answer" else task.per_sample_loss(out, batch)


def _chunked_grads(layer: torch.nn.RNNBase, trace: LayerTrace, grads: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """dL/dh_t (and dL/dc_t) at the chunk ends from the gradients into the chunk outputs and handed-on states."""
    n = len(trace.outputs)
    d_out, d_h, d_c = grads[:n], grads[n : 2 * n], grads[2 * n :]
    dh = torch.stack([g[-1] for g in d_out]).add_(torch.stack([g[0] for g in d_h]))
    out = {"h": dh}
    if trace.c:
        c = torch.stack([c[0] for c in trace.c]).detach()
        previous = _before(torch.cat(trace.outputs).detach())[trace.ends]
        o = _lstm_gates(layer, trace.inputs[trace.ends].detach(), previous)[3]
        through_h = torch.tanh(c).square_().neg_().add_(1).mul_(o).mul_(dh)
        out["c"] = torch.stack([g[0] for g in d_c]).add_(through_h)
    return out


def _injected_grads(
    layer: torch.nn.RNNBase, spec: CellSpec, trace: InjectedTrace, grads: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """dL/dh_t = (gradient into the output at t) + dL/dz_{t+1}; for the LSTM, dL/dc_t by its backward recursion."""
    d_out, d_z = grads
    dh = d_out.clone()
    dh[:-1] += d_z[1:]
    out = {"h": dh}
    if "c" in spec.state:
        i, f, g, o = _lstm_gates(layer, trace.inputs.detach(), _before(trace.output.detach()))
        c = torch.empty_like(dh)
        state = torch.zeros_like(dh[0])
        for t in range(len(c)):
            state = c[t] = f[t] * state + i[t] * g[t]
        dc = torch.tanh(c).square_().neg_().add_(1).mul_(o).mul_(dh)
        for t in range(len(dc) - 2, -1, -1):
            dc[t] += f[t + 1] * dc[t + 1]
        out["c"] = dc
    return out


def _differentiable(traces: list[LayerTrace | InjectedTrace]) -> list[list[torch.Tensor]]:
    """Per layer, the traced tensors whose gradients make up the profile."""
    return [[t.output, t.z] if isinstance(t, InjectedTrace) else [*t.outputs, *t.h, *t.c] for t in traces]


def from_gradients(
    net: RecurrentNet,
    traces: list[LayerTrace | InjectedTrace],
    grads: list[torch.Tensor],
    batch: Batch,
    task: Task,
    loss: ProbeLoss,
) -> Profile:
    """The profile from each sample's own loss gradients into the traced tensors (in :func:`_differentiable` order)."""
    norms = {}
    grads = iter(grads)
    with torch.no_grad():
        for number, (layer, trace, tensors) in enumerate(zip(net.layers, traces, _differentiable(traces)), start=1):
            mine = [next(grads) for _ in tensors]
            if isinstance(trace, InjectedTrace):
                read = _injected_grads(layer, CELLS[net.cell], trace, mine)
            else:
                read = _chunked_grads(layer, trace, mine)
            for state, d in read.items():
                # In float64: squaring a float32 gradient below ~1e-19 underflows, and g_t would read 0 where it is not.
                norms[(number, state)] = torch.linalg.vector_norm(d, dim=-1, dtype=torch.float64)
    length = batch.x.shape[0]
    ends = list(range(length)) if isinstance(traces[0], InjectedTrace) else traces[0].ends
    return Profile(t=ends, length=length, norms=norms, informative=batch.informative, answer=task.answer_steps, loss=loss)


def measure(
    net: RecurrentNet, traces: list[LayerTrace | InjectedTrace], losses: torch.Tensor, batch: Batch, task: Task, loss: ProbeLoss
) -> Profile:
    """The profile of ``losses`` (per sample, ``(B,)``) over the traced states, by its own backward; the graph is kept."""
    tensors = [x for xs in _differentiable(traces) for x in xs]
    grads = torch.autograd.grad(losses.sum(), tensors, retain_graph=True, allow_unused=True, materialize_grads=True)
    return from_gradients(net, traces, list(grads), batch, task, loss)


def resolve_method(method: str, cell: str, device: str = "cpu") -> ProbeMethod:
    """The probe method to use; ``auto`` follows the measured rule (benchmarks/RESULTS.md).

    On a CPU the chunked method is as fast or faster for every cell (the fused one widens the input GEMM and,
    for the LSTM, adds an elementwise loop); on CUDA the fused one is one cuDNN call per layer instead of one
    per time step, so it is taken wherever it is exact (not the GRU).
    """
    if method == "auto":
        return "fused" if device == "cuda" and cell in INJECTABLE else "chunked"
    return method  # type: ignore[return-value]


def profile(
    net: RecurrentNet, batch: Batch, task: Task, chunk: int = 1, loss: ProbeLoss = "answer", method: str = "chunked"
) -> Profile:
    """Gradient-flow profile of ``net`` on one batch, outside training (parameter gradients untouched).

    The network runs in training mode for the call (cuDNN's RNN backward requires it) and is put back.
    """
    was_training = net.training
    net.train()
    try:
        x = batch.x.to(next(net.parameters()).dtype)
        device = next(net.parameters()).device.type
        out, traces = (
            net.forward_injected(x) if resolve_method(method, net.cell, device) == "fused" else net.forward_traced(x, chunk)
        )
        return measure(net, traces, per_sample_loss(task, out, batch, loss), batch, task, loss)
    finally:
        net.train(was_training)


class GradFlowProbe:
    """The training step's probe: which steps it measures, and the measurement itself.

    A probed step's forward runs chunked or fused with an injected zero perturbation (same function,
    same update) and the probe keeps the traced states until it has taken the gradient of its loss
    over them; nothing is stored on the training module.
    """

    def __init__(
        self, every: int, chunk: int = 1, loss: ProbeLoss = "answer", method: ProbeMethod = "chunked"
    ) -> None:
        self.every, self.chunk, self.loss, self.method = every, chunk, loss, method
        self._traces: list[LayerTrace | InjectedTrace] | None = None
        self._pending: tuple | None = None

    def due(self, step: int) -> bool:
        """Step 0 and every ``every`` steps (the run's last profile is taken at its last validation)."""
        return step % self.every == 0

    def forward(self, net: RecurrentNet, x: torch.Tensor) -> torch.Tensor:
        """The training forward, with the states (or a perturbation of them) visible to autograd."""
        out, self._traces = net.forward_injected(x) if self.method == "fused" else net.forward_traced(x, self.chunk)
        return out

    def measure(self, net: RecurrentNet, out: torch.Tensor, batch: Batch, task: Task) -> Profile | None:
        """The profile of the probe's loss on the batch just forwarded.

        When the probe's loss is the training loss itself (``probe.loss=training``, or a task whose answer
        loss is its whole loss, like adding) the training backward carries the gradients: hooks keep them
        and :meth:`collect` reads them after it (None now). Otherwise one extra backward, now.
        """
        traces, self._traces = self._traces, None
        if traces is None:
            raise RuntimeError("GradFlowProbe.measure() needs a forward() first")
        if self.loss == "training" or task.answer_is_loss:
            tensors = [x for xs in _differentiable(traces) for x in xs]
            grads: list[torch.Tensor | None] = [None] * len(tensors)
            for index, tensor in enumerate(tensors):
                tensor.register_hook(lambda g, index=index: grads.__setitem__(index, g))
            self._pending = (net, traces, tensors, grads, batch, task)
            return None
        return measure(net, traces, per_sample_loss(task, out, batch, self.loss), batch, task, self.loss)

    def collect(self) -> Profile | None:
        """After the training backward: the profile whose gradients the hooks kept (the loss is a batch mean)."""
        if self._pending is None:
            return None
        (net, traces, tensors, grads, batch, task), self._pending = self._pending, None
        scale = batch.x.shape[1]
        own = [torch.zeros_like(t) if g is None else g * scale for t, g in zip(tensors, grads)]
        return from_gradients(net, traces, own, batch, task, self.loss)
