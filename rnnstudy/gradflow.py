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

from rnnstudy.models import LayerTrace, RecurrentNet
from rnnstudy.tasks import Batch, Task

ProbeLoss = Literal["answer", "training"]


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
        return np.array([self.length - 1 - t for t in self.t], dtype=float)

    def frame(self, step: int, percentiles: list[float] = ()) -> pd.DataFrame:
        """Tidy rows (step, loss, layer, state, t, norm [, pNN]) for the results store."""
        parts = []
        for (layer, state), norms in self.norms.items():
            cols = {
                "step": step,
                "loss": self.loss,
                "layer": layer,
                "state": state,
                "t": self.t,
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
            name = f"l{layer}/{state}"
            g = self.mean((layer, state))
            out[f"{self.loss}/decay_rate/{name}"] = decay_rate(lags, g)
            out[f"{self.loss}/horizon/{name}"] = horizon(lags, g, eps)
            out[f"{self.loss}/informative/{name}"] = informative_ratio(norms.cpu(), info, answer)
        return out


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


def _lstm_output_gate(layer: torch.nn.LSTM, trace: LayerTrace, ends: list[int]) -> torch.Tensor:
    hidden = layer.hidden_size
    outputs = torch.cat(trace.outputs).detach()
    previous = torch.cat([torch.zeros_like(outputs[:1]), outputs[:-1]])[ends].flatten(0, 1)
    inputs = trace.inputs[ends].detach().flatten(0, 1)
    w_ih, w_hh = layer.weight_ih_l0[3 * hidden :], layer.weight_hh_l0[3 * hidden :]
    b = layer.bias_ih_l0[3 * hidden :] + layer.bias_hh_l0[3 * hidden :]
    gates = torch.addmm(b, inputs, w_ih.T).addmm_(previous, w_hh.T)
    return gates.sigmoid_().view(len(ends), -1, hidden)


def per_sample_loss(task: Task, out: torch.Tensor, batch: Batch, loss: ProbeLoss) -> torch.Tensor:
    """The per-sample loss a profile is of: the answer loss or the whole training loss."""
    return task.per_sample_answer_loss(out, batch) if loss == "answer" else task.per_sample_loss(out, batch)


def measure(
    net: RecurrentNet, traces: list[LayerTrace], losses: torch.Tensor, batch: Batch, task: Task, loss: ProbeLoss
) -> Profile:
    """The profile of ``losses`` (per sample, ``(B,)``) over the traced states; the graph is kept for training."""
    tensors = [t for trace in traces for t in (*trace.outputs, *trace.h, *trace.c)]
    grads = iter(torch.autograd.grad(losses.sum(), tensors, retain_graph=True, allow_unused=True, materialize_grads=True))
    norms = {}
    ends = traces[0].ends
    with torch.no_grad():
        for number, (layer, trace) in enumerate(zip(net.layers, traces), start=1):
            d_out = [next(grads)[-1] for _ in trace.outputs]
            d_h = [next(grads)[0] for _ in trace.h]
            d_c = [next(grads)[0] for _ in trace.c]
            dh = torch.stack(d_out).add_(torch.stack(d_h))
            norms[(number, "h")] = torch.linalg.vector_norm(dh, dim=-1)
            if trace.c:
                c = torch.stack([c[0] for c in trace.c]).detach()
                through_h = torch.tanh(c).square_().neg_().add_(1).mul_(_lstm_output_gate(layer, trace, ends)).mul_(dh)
                norms[(number, "c")] = torch.linalg.vector_norm(torch.stack(d_c).add_(through_h), dim=-1)
    return Profile(
        t=ends, length=batch.x.shape[0], norms=norms, informative=batch.informative, answer=task.answer_steps, loss=loss
    )


def profile(net: RecurrentNet, batch: Batch, task: Task, chunk: int = 1, loss: ProbeLoss = "answer") -> Profile:
    """Gradient-flow profile of ``net`` on one batch, outside training (parameter gradients untouched).

    The network runs in training mode for the call (cuDNN's RNN backward requires it) and is put back.
    """
    was_training = net.training
    net.train()
    try:
        x = batch.x.to(next(net.parameters()).dtype)
        out, traces = net.forward_traced(x, chunk)
        return measure(net, traces, per_sample_loss(task, out, batch, loss), batch, task, loss)
    finally:
        net.train(was_training)


class GradFlowProbe:
    """The training step's probe: which steps it measures, and the measurement itself.

    A probed step's forward runs chunked (same function, same update) and the probe keeps the
    traced states until it has taken the gradient of its loss over them; nothing is stored on
    the training module.
    """

    def __init__(self, every: int, last_step: int, chunk: int = 1, loss: ProbeLoss = "answer") -> None:
        self.every, self.last_step, self.chunk, self.loss = every, last_step, chunk, loss
        self._traces: list[LayerTrace] | None = None

    def due(self, step: int) -> bool:
        """Step 0, every ``every`` steps, and the last step of the budget."""
        return step % self.every == 0 or step == self.last_step

    def forward(self, net: RecurrentNet, x: torch.Tensor) -> torch.Tensor:
        """The training forward, chunked so the handed-on states stay visible to autograd."""
        out, self._traces = net.forward_traced(x, self.chunk)
        return out

    def measure(self, net: RecurrentNet, out: torch.Tensor, batch: Batch, task: Task) -> Profile:
        """The profile of the probe's loss on the batch just forwarded (one extra backward)."""
        traces, self._traces = self._traces, None
        if traces is None:
            raise RuntimeError("GradFlowProbe.measure() needs a forward() first")
        return measure(net, traces, per_sample_loss(task, out, batch, self.loss), batch, task, self.loss)
