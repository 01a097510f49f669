"""Exact per-timestep gradient flow: g_t = mean_b ||d loss_b / d h_t^(b)|| through BPTT.

A fused ``nn.LSTM``'s ``output.retain_grad()`` only sees the *direct* gradient from the readout;
the recurrence is hidden inside the kernel. Here the network runs in time chunks
(:meth:`RecurrentNet.forward_traced`) so the state handed from one chunk to the next is a tensor
autograd can see. At each chunk end t the total derivative is

    dL/dh_t = (gradient into the chunk's output row t) + (gradient into the handed-on state),

exact at every boundary (chunk length 1 gives every step). For the LSTM cell state the path
c_t -> h_t = o_t * tanh(c_t) runs inside the kernel as well, so it is added back explicitly:
dL/dc_t = (gradient into the handed-on c_t) + dL/dh_t * o_t * (1 - tanh(c_t)^2).
The loss is a batch mean, so a sample's own gradient is the batch gradient times B.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch

from rnnstudy.models import LayerTrace, RecurrentNet
from rnnstudy.tasks import Batch, Task


@dataclass
class Profile:
    """Per-sample gradient norms at the probed steps of every layer and state.

    ``norms[(layer, state)]`` has shape ``(len(t), B)``; ``t`` are the probed time steps;
    ``informative`` is the task's ``(L, B)`` mask of the steps that carry the answer.
    """

    t: list[int]
    length: int
    norms: dict[tuple[int, str], torch.Tensor]
    informative: torch.Tensor

    def mean(self, key: tuple[int, str]) -> np.ndarray:
        """g_t: the batch mean of the per-sample norms."""
        return self.norms[key].mean(dim=1).double().cpu().numpy()

    def frame(self, step: int, percentiles: list[float] = ()) -> pd.DataFrame:
        """Tidy rows (step, layer, state, t, norm [, pNN]) for the results store."""
        parts = []
        for (layer, state), norms in self.norms.items():
            cols = {"step": step, "layer": layer, "state": state, "t": self.t, "norm": self.mean((layer, state))}
            if percentiles:
                q = torch.tensor([p / 100 for p in percentiles], dtype=norms.dtype, device=norms.device)
                values = torch.quantile(norms, q, dim=1).double().cpu().numpy()
                cols.update({f"p{p:g}": values[i] for i, p in enumerate(percentiles)})
            parts.append(pd.DataFrame(cols))
        return pd.concat(parts, ignore_index=True)

    def summary(self, eps: float) -> dict[str, float]:
        """Derived scalars per layer/state: decay rate, horizon, informative-to-end ratio."""
        out = {}
        lags = np.array([self.length - 1 - t for t in self.t], dtype=float)
        mask = self.informative[self.t].cpu()
        for (layer, state), norms in self.norms.items():
            name = f"l{layer}/{state}"
            g = self.mean((layer, state))
            out[f"decay_rate/{name}"] = decay_rate(lags, g)
            out[f"horizon/{name}"] = horizon(lags, g, eps)
            out[f"informative/{name}"] = informative_ratio(norms.cpu(), mask)
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


def informative_ratio(norms: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over samples of (mean g at that sample's informative steps) / (g at the last step)."""
    counts = mask.sum(dim=0)
    if not bool((counts > 0).any()):
        return float("nan")
    at_info = (norms * mask).sum(dim=0) / counts.clamp_min(1)
    ratio = at_info / norms[-1].clamp_min(torch.finfo(norms.dtype).tiny)
    return float(ratio[counts > 0].double().mean())


def _stacked_grads(tensors: list[torch.Tensor], row: int) -> torch.Tensor:
    """Row ``row`` of each tensor's gradient (zeros where none flowed), stacked over chunks."""
    return torch.stack([t.grad[row] if t.grad is not None else torch.zeros_like(t[row]) for t in tensors])


def _lstm_output_gate(layer: torch.nn.LSTM, trace: LayerTrace, ends: list[int]) -> torch.Tensor:
    hidden = layer.hidden_size
    outputs = torch.cat(trace.outputs).detach()
    previous = torch.cat([torch.zeros_like(outputs[:1]), outputs[:-1]])[ends].flatten(0, 1)
    inputs = trace.inputs[ends].detach().flatten(0, 1)
    w_ih, w_hh = layer.weight_ih_l0[3 * hidden :], layer.weight_hh_l0[3 * hidden :]
    b = layer.bias_ih_l0[3 * hidden :] + layer.bias_hh_l0[3 * hidden :]
    gates = torch.addmm(b, inputs, w_ih.T).addmm_(previous, w_hh.T)
    return gates.sigmoid_().view(len(ends), -1, hidden)


@torch.no_grad()
def read_profile(net: RecurrentNet, traces: list[LayerTrace], batch: Batch, loss_scale: float) -> Profile:
    """Turn the gradients left in the traces by ``backward`` into per-sample norms."""
    norms = {}
    ends = traces[0].ends
    for layer_index, (layer, trace) in enumerate(zip(net.layers, traces)):
        dh = _stacked_grads(trace.outputs, -1).add_(_stacked_grads(trace.h, 0)).mul_(loss_scale)
        norms[(layer_index, "h")] = torch.linalg.vector_norm(dh, dim=-1)
        if trace.c:
            c = torch.stack([c[0] for c in trace.c]).detach()
            through_h = torch.tanh(c).square_().neg_().add_(1).mul_(_lstm_output_gate(layer, trace, ends)).mul_(dh)
            dc = _stacked_grads(trace.c, 0).mul_(loss_scale).add_(through_h)
            norms[(layer_index, "c")] = torch.linalg.vector_norm(dc, dim=-1)
    return Profile(t=ends, length=batch.x.shape[0], norms=norms, informative=batch.informative)


def profile(net: RecurrentNet, batch: Batch, task: Task, chunk: int = 1) -> Profile:
    """Gradient-flow profile of ``net`` on one batch, outside training (leaves .grad set).

    The network runs in training mode for the call (cuDNN's RNN backward requires it) and is put back.
    """
    was_training = net.training
    net.train()
    try:
        x = batch.x.to(next(net.parameters()).dtype)
        out, traces = net.forward_traced(x, chunk)
        task.loss(out, batch).backward()
        return read_profile(net, traces, batch, loss_scale=x.shape[1])
    finally:
        net.train(was_training)


class GradFlowProbe(pl.Callback):
    """Probes the training step at step 0, every ``every`` steps and the last step.

    The probed step's forward runs chunked (same function, same update); after ``backward``
    the callback reads the profile and hands it to the module's sinks.
    """

    def __init__(self, every: int, eps: float, chunk: int = 1, percentiles: list[float] = ()) -> None:
        self.every, self.eps, self.chunk, self.percentiles = every, eps, chunk, list(percentiles)

    def _due(self, trainer: pl.Trainer) -> bool:
        step = trainer.global_step
        return step % self.every == 0 or step == trainer.max_steps - 1

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Batch, batch_idx: int) -> None:
        pl_module.trace_chunk = self.chunk if self._due(trainer) else None

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        traces = pl_module.traces
        if traces is None:
            return
        pl_module.traces = None
        batch = pl_module.traced_batch
        prof = read_profile(pl_module.net, traces, batch, loss_scale=batch.x.shape[1])
        step = trainer.global_step
        pl_module.emit_profile(step, prof.frame(step, self.percentiles), prof.summary(self.eps))
