"""Init-time diagnostics of a (cell, initialisation, task, T), and the memory length they predict.

Computed on a batch of the task's own input sequences, without training:

- the answer-loss gradient profile at initialisation (decay rate, horizon) from the exact probe;
- the Lyapunov spectrum of the state-to-state Jacobian along the trajectory (QR method over the
  full state: h for the RNNs and the GRU, (h, c) for the LSTM), top ``k`` exponents per step, with
  a convergence check (the estimate over the second half of the sequence against the whole);
- for gated cells, the timescales 1/(1 - keep gate) of every unit along the trajectory (LSTM: the
  forget gate f; GRU: the update gate z).

The predictor (stated in docs/diagnostics.md): a gradient that decays at r log10 per step reaches
back k* = log10(1/eps) / -r steps before it falls below eps of its peak. Each copy symbol is recalled
T + 10 steps after it is shown (the task's ``recall_offset``; the first symbol lies T + 19 steps
before the end of the sequence); adding's first marker lies up to T - 1 steps before the answer. So
the predicted memory length is k* - 10 (copy) or k* (adding), and the predicted normalised loss at T
is min(1, lag_T / k*) with lag_T = T + 10 (copy) or T (adding): 0 where the gradient reaches the
information undiminished, 1 where it has fallen by eps. Nothing is fitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from rnnstudy.model.cells import CELLS, GATED, Push
from rnnstudy.model.gradflow import profile
from rnnstudy.model.models import RecurrentNet, initial_net
from rnnstudy.model.tasks import TASKS, Task, build_task
from rnnstudy.names import metric_key

if TYPE_CHECKING:
    from rnnstudy.run.config import RunConfig

#: Sequences the Lyapunov spectrum is averaged over (besides every time step of the second half).
LYAPUNOV_SAMPLES = 4
#: Predicted reach when the gradient does not decay at all (no finite horizon).
UNBOUNDED = math.inf
#: Driven steps (at least) a Lyapunov exponent used as a feature is averaged over: short tasks are driven by
#: several of their sequences back to back.
LYAPUNOV_DRIVEN = 200


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


def predicted_loss(reach: float, task: str, T: int) -> float:
    """Predicted final normalised loss at T: min(1, lag_T / k*), lag_T = T + the task's recall offset."""
    lag = T + TASKS[task].recall_offset
    return min(1.0, lag / reach) if reach > 0 else 1.0


def reach_from_rate(rate_log10: float, eps: float) -> float:
    """Steps back before a gradient decaying at ``rate_log10`` per step falls below ``eps`` of its peak."""
    return math.log10(1 / eps) / -rate_log10 if rate_log10 < 0 else UNBOUNDED


def step_function(net: RecurrentNet, layer_index: int = 0) -> Push:
    """The layer's update with its exact tangent map (its cell's :meth:`CellSpec.push`)."""
    return CELLS[net.cell].push(net.layers[layer_index])


def lyapunov_spectrum(push: Push, s0: torch.Tensor, xs: torch.Tensor, k: int) -> tuple[np.ndarray, bool]:
    """Top-``k`` Lyapunov exponents (natural log per step, sorted) of s_t = F(s_{t-1}, x_t), by the QR method.

    ``push(s, x, V)`` gives F(s, x) and the exact Jacobian-vector products dF/ds V (see :func:`step_function`);
    ``s0`` (B, n) is the start state, ``xs`` (L, B, in) the inputs; the k tangents are pushed and
    re-orthonormalised each step; the exponents are averaged over
    the batch, over the second half of the sequence (the first is the transient in which the tangents
    align). Converged: the third and fourth quarters agree within 10% of the estimate (or 0.01).
    """
    B, n = s0.shape
    k = min(k, n)
    q = torch.linalg.qr(torch.randn(B, n, k, dtype=s0.dtype, generator=torch.Generator().manual_seed(0)).to(s0.device))[0]
    s, logs = s0, []
    for x in xs:
        s, v = push(s, x, q)
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


def state_size(net: RecurrentNet) -> int:
    """The first layer's full state: h, or (h, c) for the LSTM."""
    return CELLS[net.cell].state_size(net.layers[0].hidden_size)


def driven_spectrum(net: RecurrentNet, xs: torch.Tensor, k: int) -> tuple[np.ndarray, bool]:
    """The first layer's top-``k`` Lyapunov exponents driven by the inputs ``xs`` (L, B, in) from a zero state."""
    with torch.no_grad():
        return lyapunov_spectrum(step_function(net), xs.new_zeros(xs.shape[1], state_size(net)), xs, k)


def _timescales(net: RecurrentNet, xs: torch.Tensor) -> np.ndarray:
    """1 / (1 - keep gate) of every unit, step and sample along the first layer's trajectory."""
    layer = net.layers[0]
    H = layer.hidden_size
    step = step_function(net)
    s = xs.new_zeros(xs.shape[1], state_size(net))
    keep = []
    for x in xs:
        h = s[..., :H]
        gates = x @ layer.weight_ih_l0.T + layer.bias_ih_l0
        if CELLS[net.cell].rnnbase:  # a module of its own (minGRU) gates on the input only
            gates = gates + h @ layer.weight_hh_l0.T + layer.bias_hh_l0
        block = CELLS[net.cell].keep_gate
        keep.append(torch.sigmoid(gates[..., block * H : (block + 1) * H]).detach())
        s = step(s, x, None)[0].detach()
    return (1 / (1 - torch.stack(keep).clamp(max=1 - 1e-12))).flatten().double().cpu().numpy()


def diagnose(cfg: RunConfig, batch_size: int = 16, k: int = 8, data_seed: int = 0, keep: dict | None = None) -> Diagnostics:
    """The diagnostics of the run config's initial network (the same weights its training starts from).

    ``keep``, when given, receives the profile, the spectrum and the timescales (for :func:`draw`).
    """
    torch.manual_seed(cfg.seed)  # what training's seed_everything does for the weights
    task = build_task(cfg)
    return diagnose_net(initial_net(cfg, task), task, cfg.probe.eps, batch_size, k, data_seed, keep)


def diagnose_net(
    net: RecurrentNet, task: Task, eps: float, batch_size: int = 16, k: int = 8, data_seed: int = 0, keep: dict | None = None
) -> Diagnostics:
    """The diagnostics of a network as it is now, on a batch of the task's own sequences (first layer)."""
    batch = task.sample(batch_size, torch.Generator(device=next(net.parameters()).device).manual_seed(data_seed))
    x = batch.x.to(next(net.parameters()).dtype)
    prof = profile(net, batch._replace(x=x), task, method="auto")
    summary = prof.summary(eps)
    rate, horizon = summary[metric_key("decay_rate")], summary[metric_key("horizon")]
    spectrum, converged = driven_spectrum(net, x[:, :LYAPUNOV_SAMPLES], k)  # time averages: a few sequences suffice
    scales = _timescales(net, x) if net.cell in GATED else np.array([np.nan])
    if keep is not None:
        keep.update(profile=prof, timescales=scales, spectrum=spectrum, net=net, batch=batch._replace(x=x), task=task)
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
        predicted_memory=max(0.0, reach - task.recall_offset),
    )


def init_features(cfg: RunConfig, batch_size: int = 16, k: int = 4, data_seed: int = 0) -> dict[str, float]:
    """Zero-parameter features of a run's exact initial network, each a memory predictor on its own (higher: more memory).

    ``timescale_reach``: the fraction of gate timescales 1/(1 - keep gate) (unit x step x sample, on the task's own
    sequences) that reach the lag the task needs (T + its recall offset); NaN for vanilla RNNs.
    ``lyapunov_top``: the top Lyapunov exponent over at least ``LYAPUNOV_DRIVEN`` driven steps, with
    ``lyapunov_converged`` (its last two quarters agree); ``-lyapunov_top`` is the feature, so a chaotic
    network (lambda_1 > 0) counts against memory, not for it.
    """
    torch.manual_seed(cfg.seed)  # what training's seed_everything does for the weights
    task = build_task(cfg)
    net = initial_net(cfg, task)
    gen = torch.Generator().manual_seed(data_seed)
    x = task.sample(batch_size, gen).x.to(next(net.parameters()).dtype)
    lag = task.T + task.recall_offset
    with torch.no_grad():
        reach = float((_timescales(net, x) >= lag).mean()) if net.cell in GATED else math.nan
        repeats = math.ceil(LYAPUNOV_DRIVEN / x.shape[0])
        drive = torch.cat([task.sample(LYAPUNOV_SAMPLES, gen).x for _ in range(repeats)]).to(x.dtype)
    spectrum, converged = driven_spectrum(net, drive, k)
    return {"timescale_reach": reach, "lyapunov_top": float(spectrum[0]), "lyapunov_converged": float(converged)}


def draw(diag: Diagnostics, keep: dict, path: str) -> str:
    """Three panels: the answer-loss gradient against lag, the Lyapunov spectrum, the gate timescales; a fourth, the
    parameter sensitivity against lag, where ``keep`` holds it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prof = keep["profile"]
    sens = keep.get("sensitivity")
    fig, axes = plt.subplots(1, 3 + (sens is not None), figsize=(13 + 4.3 * (sens is not None), 3.6), layout="constrained")
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
        axes[2].text(0.5, 0.5, f"no keep gate ({diag.cell})", ha="center")
    if sens is not None:
        axes[3].semilogy(sens.lags(), sens.norms[1])
        axes[3].set(xlabel="lag: steps back from the end", ylabel="||dL/dtheta at step t||",
                    title="parameter sensitivity at init")  # fmt: skip
    fig.suptitle(f"{diag.cell}, {diag.task} T={diag.T}: predicted memory length {diag.predicted_memory:.0f} steps")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
