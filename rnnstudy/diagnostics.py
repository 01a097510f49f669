"""Init-time diagnostics of a (cell, initialisation, task, T), and the memory length they predict.

Computed on a batch of the task's own input sequences, without training:

- the answer-loss gradient profile at initialisation (decay rate, horizon) from the exact probe;
- the Lyapunov spectrum of the state-to-state Jacobian along the trajectory (QR method over the
  full state: h for the RNNs and the GRU, (h, c) for the LSTM), top ``k`` exponents per step, with
  a convergence check (the estimate over the second half of the sequence against the whole);
- for gated cells, the timescales 1/(1 - keep gate) of every unit along the trajectory (LSTM: the
  forget gate f; GRU: the update gate z).

The predictor (stated in docs/diagnostics.md): a gradient that decays at r log10 per step reaches
back k* = log10(1/eps) / -r steps before it falls below eps of its peak. The information of the
copy task sits 10 steps further back than its delay (T + 10 .. T + 19 before the end); that of the
adding problem up to T steps back. So the predicted memory length is k* - 10 (copy) or k* (adding),
and the predicted normalised loss at T is min(1, lag_T / k*) with lag_T = T + 10 (copy) or T
(adding): 0 where the gradient reaches the information undiminished, 1 where it has fallen by eps.
Nothing is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rnnstudy.config import RunConfig
from rnnstudy.gradflow import profile
from rnnstudy.models import RecurrentNet
from rnnstudy.tasks import Task

#: How far back the information lies beyond the delay/length, per task: copy's first symbol is T + 10 steps before the end.
INFO_OFFSET = {"copy": 10, "adding": 0}
#: Predicted reach when the gradient does not decay at all (no finite horizon).
UNBOUNDED = math.inf


@dataclass
class Diagnostics:
    """What the initialisation looks like on the task, and the memory length it predicts."""

    cell: str
    task: str
    T: int
    decay_rate: float
    horizon: float
    lyapunov: list[float]
    lyapunov_converged: bool
    timescale_median: float
    timescale_p90: float
    reach: float
    predicted_memory: float
    lyapunov_reach: float

    def row(self) -> dict[str, object]:
        """One flat row for a table."""
        out = asdict(self)
        out["lyapunov_top"] = self.lyapunov[0] if self.lyapunov else math.nan
        del out["lyapunov"]
        return out


def predicted_loss(reach: float, task: str, T: int) -> float:
    """Predicted final normalised loss at T: min(1, lag_T / k*), lag_T the information's lag."""
    lag = T + INFO_OFFSET.get(task, 0)
    return min(1.0, lag / reach) if reach > 0 else 1.0


def reach_from_rate(rate_log10: float, eps: float) -> float:
    """Steps back before a gradient decaying at ``rate_log10`` per step falls below ``eps`` of its peak."""
    return math.log10(1 / eps) / -rate_log10 if rate_log10 < 0 else UNBOUNDED


def step_function(net: RecurrentNet, layer_index: int = 0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The layer's state update s_t = F(s_{t-1}, x_t) written out (s = h, or (h, c) stacked for the LSTM)."""
    layer = net.layers[layer_index]
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0
    H = layer.hidden_size

    def rnn(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pre = x @ w_ih.T + b_ih + s @ w_hh.T + b_hh
        return torch.tanh(pre) if net.cell == "rnn_tanh" else torch.relu(pre)

    def lstm(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h, c = s[..., :H], s[..., H:]
        i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)

    def gru(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ir, iz, in_ = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
        hr, hz, hn = (s @ w_hh.T + b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        return (1 - z) * torch.tanh(in_ + r * hn) + z * s

    return {"lstm": lstm, "gru": gru}.get(net.cell, rnn)


def lyapunov_spectrum(
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], s0: torch.Tensor, xs: torch.Tensor, k: int
) -> tuple[np.ndarray, bool]:
    """Top-``k`` Lyapunov exponents (natural log per step, sorted) of s_t = step(s_{t-1}, x_t), by the QR method.

    ``s0`` (B, n) is the start state, ``xs`` (L, B, in) the inputs; tangents are pushed through the
    exact Jacobian-vector product and re-orthonormalised each step; the exponents are averaged over
    the batch, over the second half of the sequence (the first is the transient in which the tangents
    align). Converged: the third and fourth quarters agree within 10% of the estimate (or 0.01).
    """
    B, n = s0.shape
    k = min(k, n)
    q = torch.linalg.qr(torch.randn(B, n, k, dtype=s0.dtype, generator=torch.Generator().manual_seed(0)).to(s0.device))[0]
    s, logs = s0, []

    def tangent(s: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(lambda s: step(s, x), (s,), (v,))[1]

    push = torch.func.vmap(tangent, in_dims=(None, None, 2), out_dims=2)
    for x in xs:
        v = push(s, x, q).detach()
        s = step(s, x).detach()
        q, r = torch.linalg.qr(v)
        logs.append(torch.log(torch.diagonal(r, dim1=-2, dim2=-1).abs().clamp_min(1e-300)))
    logs = torch.stack(logs)  # (L, B, k)
    # The first half is a transient (the tangents align with the growing directions); estimate on the second.
    L = len(logs)
    late = logs[L // 2 :].mean(dim=(0, 1))
    third, fourth = logs[L // 2 : 3 * L // 4].mean(dim=(0, 1)), logs[3 * L // 4 :].mean(dim=(0, 1))
    spectrum = np.sort(late.double().cpu().numpy())[::-1]
    converged = bool(torch.all((third - fourth).abs() <= torch.maximum(0.1 * late.abs(), torch.tensor(0.01))))
    return spectrum, converged


def _timescales(net: RecurrentNet, xs: torch.Tensor) -> np.ndarray:
    """1 / (1 - keep gate) of every unit, step and sample along the first layer's trajectory."""
    layer = net.layers[0]
    H = layer.hidden_size
    step = step_function(net)
    s = torch.zeros(xs.shape[1], 2 * H if net.cell == "lstm" else H, dtype=xs.dtype, device=xs.device)
    keep = []
    for x in xs:
        h = s[..., :H]
        gates = x @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h @ layer.weight_hh_l0.T + layer.bias_hh_l0
        block = 1  # the forget gate (LSTM: i, f, g, o) and the update gate (GRU: r, z, n) are both block 1
        keep.append(torch.sigmoid(gates[..., block * H : (block + 1) * H]).detach())
        s = step(s, x).detach()
    return (1 / (1 - torch.stack(keep).clamp(max=1 - 1e-12))).flatten().double().cpu().numpy()


def diagnose(cfg: RunConfig, batch_size: int = 16, k: int = 8, data_seed: int = 0, keep: dict | None = None) -> Diagnostics:
    """The diagnostics of the run config's initial network (the same weights its training starts from).

    ``keep``, when given, receives the profile, the spectrum and the timescales (for :func:`draw`).
    """
    import lightning.pytorch as pl

    from rnnstudy.lit import RecurrentModule, build_task

    pl.seed_everything(cfg.seed, verbose=False)
    task = build_task(cfg)
    return diagnose_net(RecurrentModule(cfg, task).net, task, cfg.probe.eps, batch_size, k, data_seed, keep)


def diagnose_net(
    net: RecurrentNet, task: Task, eps: float, batch_size: int = 16, k: int = 8, data_seed: int = 0, keep: dict | None = None
) -> Diagnostics:
    """The diagnostics of a network as it is now, on a batch of the task's own sequences (first layer)."""
    batch = task.sample(batch_size, torch.Generator(device=next(net.parameters()).device).manual_seed(data_seed))
    x = batch.x.to(next(net.parameters()).dtype)
    prof = profile(net, batch._replace(x=x), task)
    summary = prof.summary(eps)
    rate, horizon = summary["answer/decay_rate/l1/h"], summary["answer/horizon/l1/h"]
    n = 2 * net.layers[0].hidden_size if net.cell == "lstm" else net.layers[0].hidden_size
    with torch.enable_grad():
        spectrum, converged = lyapunov_spectrum(
            step_function(net), torch.zeros(x.shape[1], n, dtype=x.dtype, device=x.device), x, k
        )
    scales = _timescales(net, x) if net.cell in ("lstm", "gru") else np.array([np.nan])
    if keep is not None:
        keep.update(profile=prof, timescales=scales, spectrum=spectrum)
    reach = reach_from_rate(rate, eps) if math.isfinite(rate) else 0.0
    return Diagnostics(
        cell=net.cell,
        task=task.name,
        T=task.T,
        decay_rate=rate,
        horizon=horizon,
        lyapunov=[float(v) for v in spectrum],
        lyapunov_converged=converged,
        timescale_median=float(np.median(scales)),
        timescale_p90=float(np.quantile(scales, 0.9)),
        reach=reach,
        predicted_memory=max(0.0, reach - INFO_OFFSET.get(task.name, 0)),
        lyapunov_reach=reach_from_rate(float(spectrum[0]) / math.log(10), eps),
    )


def draw(diag: Diagnostics, keep: dict, path: str) -> str:
    """Three panels: the answer-loss gradient against lag, the Lyapunov spectrum, the gate timescales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prof = keep["profile"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    axes[0].semilogy(prof.lags(), prof.mean((1, "h")))
    axes[0].set(
        xlabel="lag: steps back from the end", ylabel="mean ||d(answer loss)/dh_t||", title="answer-loss gradient at init"
    )
    axes[1].bar(range(1, len(keep["spectrum"]) + 1), keep["spectrum"])
    axes[1].axhline(0, color="grey", lw=1)
    axes[1].set(xlabel="exponent index", ylabel="Lyapunov exponent (per step)", title="top of the Lyapunov spectrum")
    scales = keep["timescales"]
    if np.isfinite(scales).any():
        axes[2].hist(np.log10(scales[np.isfinite(scales)]), bins=40)
        axes[2].set(xlabel="log10 timescale 1/(1 - keep gate) (steps)", ylabel="units x steps", title="gate timescales")
    else:
        axes[2].axis("off")
        axes[2].text(0.5, 0.5, "no gates (vanilla RNN)", ha="center")
    fig.suptitle(f"{diag.cell}, {diag.task} T={diag.T}: predicted memory length {diag.predicted_memory:.0f} steps")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
