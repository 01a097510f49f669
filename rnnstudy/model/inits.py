"""Initialisation schemes for recurrent layers, in registries keyed by scheme name.

Recurrent and input schemes act on one gate block (``H x H`` or ``H x in``) at a time, so an
orthogonal or identity LSTM is orthogonal/identity per gate. Bias schemes see the whole layer
because PyTorch splits each bias in two (``bias_ih`` + ``bias_hh``) and orders gates i, f, g, o
(LSTM) and r, z, n (GRU): a target bias is written to ``bias_ih`` and ``bias_hh`` is zeroed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rnnstudy.lazy import LazyModule
from rnnstudy.model.cells import CELLS, FORGET_GATED, GATED, RNNBASE

torch = LazyModule("torch")  # the config path reads the scheme registry without paying for torch's import
nn = LazyModule("torch.nn")

if TYPE_CHECKING:
    from rnnstudy.run.config import InitConfig


@dataclass(frozen=True)
class Scheme:
    """A registered scheme: what it does, the ``init.*`` parameters it reads, the cells it fits."""

    apply: Callable
    params: tuple[str, ...] = ()
    cells: tuple[str, ...] = ()  # empty: every cell


RECURRENT: dict[str, Scheme] = {}
INPUT: dict[str, Scheme] = {}
BIAS: dict[str, Scheme] = {}
KINDS = {"recurrent": RECURRENT, "input": INPUT, "bias": BIAS}


def _register(registry: dict, *names: str, params: tuple[str, ...] = (), cells: tuple[str, ...] = ()) -> Callable:
    def wrap(fn: Callable) -> Callable:
        for name in names:
            registry[name] = Scheme(fn, params, cells)
        return fn

    return wrap


def schemes_name(recurrent: str, bias: str) -> str:
    """A run's recurrent and bias schemes in one name, as run names and family labels write them: ``default+chrono``."""
    return recurrent if bias == "default" else f"{recurrent}+{bias}"


def tunable_params() -> set[str]:
    """Every parameter some registered scheme reads."""
    return {p for registry in KINDS.values() for scheme in registry.values() for p in scheme.params}


@_register(RECURRENT, "default")
@_register(INPUT, "default")
def keep_default(w: torch.Tensor, cfg: InitConfig) -> None:
    """PyTorch's own U(-1/sqrt(H), 1/sqrt(H)), already in place."""


@_register(RECURRENT, "orthogonal", params=("gain",), cells=RNNBASE)
def orthogonal(w: torch.Tensor, cfg: InitConfig) -> None:
    """Orthogonal (QR of a Gaussian, sign-corrected) times ``gain``."""
    nn.init.orthogonal_(w, gain=cfg.gain)


@_register(RECURRENT, "identity", params=("scale",), cells=RNNBASE)
def identity(w: torch.Tensor, cfg: InitConfig) -> None:
    """``scale`` times the identity (IRNN, Le et al. 2015)."""
    with torch.no_grad():
        w.copy_(cfg.scale * torch.eye(w.shape[0], dtype=w.dtype))


@_register(RECURRENT, "spectral", params=("rho",), cells=RNNBASE)
def spectral(w: torch.Tensor, cfg: InitConfig) -> None:
    """Gaussian N(0, 1/H) rescaled so its spectral radius is ``rho``."""
    with torch.no_grad():
        g = torch.randn(w.shape, dtype=torch.float64) / math.sqrt(w.shape[0])
        radius = torch.linalg.eigvals(g).abs().max()
        w.copy_((cfg.rho * g / radius).to(w.dtype))


@_register(RECURRENT, "xavier", params=("gain",), cells=RNNBASE)
def xavier(w: torch.Tensor, cfg: InitConfig) -> None:
    """Glorot uniform with ``gain``."""
    nn.init.xavier_uniform_(w, gain=cfg.gain)


@_register(RECURRENT, "kaiming", params=("gain",), cells=RNNBASE)
def kaiming(w: torch.Tensor, cfg: InitConfig) -> None:
    """He normal (fan-in, ReLU gain) times ``gain``."""
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    with torch.no_grad():
        w.mul_(cfg.gain)


@_register(INPUT, "xavier", params=("input_gain",), cells=RNNBASE)
def input_xavier(w: torch.Tensor, cfg: InitConfig) -> None:
    """Glorot uniform with ``input_gain``."""
    nn.init.xavier_uniform_(w, gain=cfg.input_gain)


@_register(INPUT, "orthogonal", params=("input_gain",), cells=RNNBASE)
def input_orthogonal(w: torch.Tensor, cfg: InitConfig) -> None:
    """(Semi-)orthogonal times ``input_gain``."""
    nn.init.orthogonal_(w, gain=cfg.input_gain)


@_register(INPUT, "normal", params=("input_gain",), cells=RNNBASE)
def input_normal(w: torch.Tensor, cfg: InitConfig) -> None:
    """N(0, input_gain^2); IRNN's small input weights are ``input_gain=0.001``."""
    nn.init.normal_(w, std=cfg.input_gain)


@_register(BIAS, "default")
def bias_default(layer: nn.RNNBase, cell: str, cfg: InitConfig, t_max: int) -> None:
    """PyTorch's own U(-1/sqrt(H), 1/sqrt(H)) on both bias vectors, already in place."""


@_register(BIAS, "zero", cells=tuple(dict.fromkeys(RNNBASE + GATED)))
def bias_zero(layer: nn.RNNBase, cell: str, cfg: InitConfig, t_max: int) -> None:
    """All biases 0."""
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("bias"):
                p.zero_()


def _gate(bias: torch.Tensor, index: int, hidden: int) -> torch.Tensor:
    return bias[index * hidden : (index + 1) * hidden]


@_register(BIAS, "forget", params=("forget_bias",), cells=FORGET_GATED)
def bias_forget(layer: nn.RNNBase, cell: str, cfg: InitConfig, t_max: int) -> None:
    """Forget-gate bias ``forget_bias`` (the LSTM's f), other biases 0 (Gers et al.; Jozefowicz et al.)."""
    bias_zero(layer, cell, cfg, t_max)
    with torch.no_grad():
        _gate(layer.bias_ih_l0, CELLS[cell].keep_gate, layer.hidden_size).fill_(cfg.forget_bias)


@_register(BIAS, "chrono", params=("chrono_tmax",), cells=GATED)
def bias_chrono(layer: nn.RNNBase, cell: str, cfg: InitConfig, t_max: int) -> None:
    """Chrono (Tallec & Ollivier 2018): keep-gate bias log U(1, T_max-1), the write gate's its negative, others 0.

    LSTM: b_f = log U(1, T_max-1), b_i = -b_f. GRU: the update gate z keeps the state
    (h' = (1-z) n + z h) and also writes, so b_z = +log U(1, T_max-1) alone; minGRU's keep logit likewise.
    """
    bias_zero(layer, cell, cfg, t_max)
    hidden, spec = layer.hidden_size, CELLS[cell]
    with torch.no_grad():
        keep = torch.log(torch.empty(hidden).uniform_(1.0, t_max - 1.0))
        _gate(layer.bias_ih_l0, spec.keep_gate, hidden).copy_(keep)
        if spec.write_gate is not None:
            _gate(layer.bias_ih_l0, spec.write_gate, hidden).copy_(-keep)


@_register(RECURRENT, "ring", params=("r_min", "r_max", "max_phase"), cells=("lru",))
def ring(layer: nn.Module, cfg: InitConfig) -> None:
    """The LRU's ring (Orvieto et al. 2023): |lambda| uniform by area on [r_min, r_max], phase U(0, max_phase)."""
    layer.ring(cfg.r_min, cfg.r_max, cfg.max_phase)


def initialise(layer: nn.Module, cell: str, cfg: InitConfig, t_max: int) -> None:
    """Apply the configured input, recurrent and bias schemes to one single-layer module: per gate block of an
    ``nn.RNNBase``'s weights, or to a module of its own as a whole (its recurrent scheme; its input keeps its default)."""
    if CELLS[cell].rnnbase:
        hidden = layer.hidden_size
        for k in range(CELLS[cell].gates):
            rows = slice(k * hidden, (k + 1) * hidden)
            RECURRENT[cfg.recurrent].apply(layer.weight_hh_l0.data[rows], cfg)
            INPUT[cfg.input].apply(layer.weight_ih_l0.data[rows], cfg)
    else:
        RECURRENT[cfg.recurrent].apply(layer, cfg)
    BIAS[cfg.bias].apply(layer, cell, cfg, t_max)
