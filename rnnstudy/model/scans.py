"""The recurrences trained by a scan: minGRU (Feng et al. 2024) and the Linear Recurrent Unit (Orvieto et al. 2023).

Both are single-layer modules with the fused modules' call: ``layer(x, state) -> (output, state)``, time-major, the
output the state at every step (so the gradient probe reads them as it reads an RNN), the state handed on a tensor of
its own (``(1, B, H)``): computed beside the output, not from it, as a fused kernel's h_n is, so the gradient into it
is the future's part alone.

minGRU, the paper's log-space form: keep_t = sigmoid(k_t), h~_t = g(c_t), with [k_t; c_t] = W x_t + b from the input
only, g(v) = v + 1/2 for v >= 0 and sigmoid(v) below (positive, so the state stays positive), and
h_t = keep_t * h_{t-1} + (1 - keep_t) * h~_t. The paper writes z_t = 1 - keep_t; its gate logit is -k_t. Trained by
the log-space scan (Heinsen 2023): log h_t = a_t + logcumsumexp(log b - a)_t with a_t = sum of log keep up to t,
exact in real arithmetic wherever the state handed in is positive; sequentially otherwise.

LRU: N = H/2 complex modes, lambda = exp(-exp(nu_log) + i exp(theta_log)), gamma = exp(gamma_log) (initialised to
sqrt(1 - |lambda|^2)), h_t = lambda * h_{t-1} + gamma * (B x_t); the layer outputs [Re h_t, Im h_t], so the harness's
readout is the paper's Re(C h_t) (its skip D x_t is left out: it carries no memory). Trained by a Hillis-Steele scan
over log2(T) doublings (lambda is the same at every step). The gradient norm of the complex state is the norm over its
real and imaginary parts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from rnnstudy.model.cells import Push


def _log_g(v: torch.Tensor) -> torch.Tensor:
    """log g(v) for minGRU's positive candidate g."""
    return torch.where(v >= 0, (v.clamp_min(0) + 0.5).log(), -F.softplus(-v))


def _g(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v >= 0, v.clamp_min(0) + 0.5, v.sigmoid())


class MinGRU(nn.Module):
    """minGRU, one layer: gates and candidate from the input only, trained by the log-space scan."""

    def __init__(self, input_size: int, hidden_size: int, device: str | None = None) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        bound = 1 / math.sqrt(input_size)  # nn.Linear's own initialisation, as the paper's code uses
        self.weight_ih_l0 = nn.Parameter(torch.empty(2 * hidden_size, input_size, device=device).uniform_(-bound, bound))
        self.bias_ih_l0 = nn.Parameter(torch.empty(2 * hidden_size, device=device).uniform_(-bound, bound))

    def preactivations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keep logit k and the candidate's pre-activation c at every step."""
        k, c = F.linear(x, self.weight_ih_l0, self.bias_ih_l0).chunk(2, dim=-1)
        return k, c

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, B, in)``, ``(1, B, H)`` or None (zero) -> the state at every step, and the last one handed on."""
        k, c = self.preactivations(x)
        if state is not None and not bool((state > 0).all()):
            return self.sequential(x, state)
        log_keep, log_b = -F.softplus(-k), -F.softplus(k) + _log_g(c)
        if state is not None:
            log_keep = torch.cat([torch.zeros_like(state), log_keep])
            log_b = torch.cat([state.log(), log_b])
        a = log_keep.cumsum(dim=0)
        log_h = a + torch.logcumsumexp(log_b - a, dim=0)
        log_h = log_h[1:] if state is not None else log_h
        return log_h.exp(), log_h[-1:].exp()  # siblings: the state handed on is not computed from the output

    def sequential(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same recursion one step at a time (any sign of the state handed in)."""
        k, c = self.preactivations(x)
        keep, cand = k.sigmoid(), _g(c)
        h = state[0] if state is not None else x.new_zeros(x.shape[1], self.hidden_size)
        out = []
        for t in range(x.shape[0]):
            h = keep[t] * h + (1 - keep[t]) * cand[t]
            out.append(h)
        return torch.stack(out), torch.stack(out[-1:])


def mingru_step(layer: MinGRU) -> Push:
    """minGRU's update with its tangent map: dF/ds = diag(keep), the gates reading the input only."""

    def push(s: torch.Tensor, x: torch.Tensor, v: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        k, c = layer.preactivations(x)
        keep = k.sigmoid()
        out = keep * s + (1 - keep) * _g(c)
        return out, None if v is None else keep[..., None] * v

    return push


class LRU(nn.Module):
    """The Linear Recurrent Unit, one layer of H / 2 complex modes, outputting their real and imaginary parts."""

    def __init__(self, input_size: int, hidden_size: int, device: str | None = None) -> None:
        super().__init__()
        if hidden_size % 2:
            raise ValueError(f"the LRU's hidden size holds real and imaginary parts: it must be even, got {hidden_size}")
        self.input_size, self.hidden_size, self.modes = input_size, hidden_size, hidden_size // 2
        n = self.modes
        self.nu_log = nn.Parameter(torch.empty(n, device=device))
        self.theta_log = nn.Parameter(torch.empty(n, device=device))
        self.gamma_log = nn.Parameter(torch.empty(n, device=device))
        scale = 1 / math.sqrt(2 * input_size)
        self.B_re = nn.Parameter(torch.randn(n, input_size, device=device) * scale)
        self.B_im = nn.Parameter(torch.randn(n, input_size, device=device) * scale)
        if device != "meta":
            self.ring(0.0, 1.0, 2 * math.pi)  # the paper's appendix defaults

    def ring(self, r_min: float, r_max: float, max_phase: float) -> None:
        """Ring initialisation: |lambda| uniform on the ring r_min <= |lambda| <= r_max (by area), phase U(0, max_phase),
        gamma = sqrt(1 - |lambda|^2)."""
        with torch.no_grad():
            u1, u2 = torch.rand(self.modes, dtype=torch.float64), torch.rand(self.modes, dtype=torch.float64)
            nu = -0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2)
            theta = (max_phase * u2).clamp_min(1e-12)
            self.nu_log.copy_(nu.clamp_min(1e-12).log())
            self.theta_log.copy_(theta.log())
            self.gamma_log.copy_(0.5 * torch.log1p(-torch.exp(-2 * nu).clamp(max=1 - 1e-12)))

    def eigen(self) -> torch.Tensor:
        """lambda, the modes' complex decay and rotation per step."""
        return torch.exp(torch.complex(-self.nu_log.exp(), self.theta_log.exp()))

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """gamma * (B x_t) at every step, complex."""
        return torch.complex(F.linear(x, self.B_re), F.linear(x, self.B_im)) * self.gamma_log.exp()

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, B, in)``, ``(1, B, H)`` or None (zero) -> [Re h_t, Im h_t] at every step, and the last one handed on."""
        lam, h = self.eigen(), self.drive(x)
        power, offset = lam, 1
        while offset < len(h):  # after the doubling with offset d, h_t sums lambda^j b_{t-j} for j < 2d
            h = torch.cat([h[:offset], h[offset:] + power * h[:-offset]])
            power, offset = power * power, 2 * offset
        if state is not None:
            h0 = torch.complex(*state[0].chunk(2, dim=-1))
            steps = torch.arange(1, len(h) + 1, device=x.device, dtype=self.nu_log.dtype)[:, None, None]
            h = h + torch.exp(steps * torch.complex(-self.nu_log.exp(), self.theta_log.exp())) * h0
        return torch.cat([h.real, h.imag], dim=-1), torch.cat([h[-1:].real, h[-1:].imag], dim=-1)


def lru_step(layer: LRU) -> Push:
    """The LRU's update with its tangent map: the same rotation-and-decay of each mode's (Re, Im) pair."""

    def rotate(s: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        a, b = s.chunk(2, dim=1 if s.dim() == 3 else -1)
        lr, li = (lam.real, lam.imag) if s.dim() == 2 else (lam.real[:, None], lam.imag[:, None])
        return torch.cat([lr * a - li * b, li * a + lr * b], dim=1 if s.dim() == 3 else -1)

    def push(s: torch.Tensor, x: torch.Tensor, v: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        lam, u = layer.eigen(), layer.drive(x)
        out = rotate(s, lam) + torch.cat([u.real, u.imag], dim=-1)
        return out, None if v is None else rotate(v, lam)

    return push
