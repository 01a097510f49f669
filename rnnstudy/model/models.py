"""Recurrent networks: a stack of single-layer cuDNN-fusable modules and a per-step readout.

Layers are separate single-layer modules (not one multi-layer module) so the gradient probe
can hand states between time chunks of every layer; on the fast path each layer is one fused
call over the whole sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rnnstudy.model.cells import CELLS, INJECTABLE
from rnnstudy.model.inits import initialise

if TYPE_CHECKING:
    from rnnstudy.model.tasks import Task
    from rnnstudy.run.config import InitConfig, ModelConfig, RunConfig


@dataclass
class LayerTrace:
    """States of one layer at the probed steps, kept in the autograd graph for the probe.

    ``outputs[k]`` is the layer output of chunk k (its last row is the state handed on);
    ``h[k]``/``c[k]`` are the states handed to chunk k+1; ``ends[k]`` the time step they hold.
    """

    inputs: torch.Tensor
    outputs: list[torch.Tensor]
    h: list[torch.Tensor]
    c: list[torch.Tensor]
    ends: list[int]


@dataclass
class InjectedTrace:
    """One layer run fused with a zero perturbation ``z`` of the previous state wired in through W_hh.

    The layer computes the same function (``z`` is zero); d(loss)/dz_{t+1} is the recurrent part of
    d(loss)/dh_t, and ``output``'s gradient the rest.
    """

    inputs: torch.Tensor
    output: torch.Tensor
    z: torch.Tensor


class GLUBlock(nn.Module):
    """The LRU paper's block after a recurrent layer, position-wise and residual: y_t = s_t + GLU(GELU(W s_t + b))."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.mix = nn.Linear(width, width)
        self.gate = nn.Linear(width, 2 * width)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s + F.glu(self.gate(F.gelu(self.mix(s))), dim=-1)


#: ``model.block`` -> the module after each recurrent layer (None: the layer's states go on as they are).
BLOCKS = {"none": None, "glu": GLUBlock}


class RecurrentNet(nn.Module):
    """A stack of one cell's layers (RNN, LSTM, GRU, minGRU, LRU), each optionally followed by a position-wise block
    (``model.block``), with a linear readout at every time step (time-major)."""

    def __init__(self, cfg: ModelConfig, input_size: int, output_size: int) -> None:
        super().__init__()
        self.cell = cfg.cell
        sizes = [input_size] + [cfg.hidden_size] * cfg.num_layers
        self.layers = nn.ModuleList(CELLS[cfg.cell].module(i, cfg.hidden_size) for i in sizes[:-1])
        block = BLOCKS[cfg.block]
        self.blocks = nn.ModuleList(block(cfg.hidden_size) for _ in self.layers) if block else None
        self.readout = nn.Linear(cfg.hidden_size, output_size)
        # Parameter-free twins taking [x_t, z_t] as input; they only ever run with this net's weights.
        injectable = cfg.cell in INJECTABLE
        self._wide = [CELLS[cfg.cell].module(i + cfg.hidden_size, cfg.hidden_size, "meta") for i in sizes[:-1] if injectable]

    def initialise(self, cfg: InitConfig, t_max: int) -> None:
        """Apply an initialisation to every recurrent layer (the readout keeps its default)."""
        for layer in self.layers:
            initialise(layer, self.cell, cfg, t_max)

    def after(self, index: int, states: torch.Tensor) -> torch.Tensor:
        """What the layer ``index`` (from 0) hands on from its states: them, or its block's output."""
        return states if self.blocks is None else self.blocks[index](states)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused forward: ``(L, B, in) -> (L, B, out)``."""
        for index, layer in enumerate(self.layers):
            x = self.after(index, layer(x)[0])
        return self.readout(x)

    def forward_traced(self, x: torch.Tensor, chunk: int = 1) -> tuple[torch.Tensor, list[LayerTrace]]:
        """Forward in time chunks, keeping every handed-on state visible to autograd.

        Same function as :meth:`forward`; the probe takes gradients with respect to the traced
        tensors (see :mod:`rnnstudy.model.gradflow`).
        """
        traces = []
        length = x.shape[0]
        for index, layer in enumerate(self.layers):
            trace = LayerTrace(x, [], [], [], [])
            state = None
            for start in range(0, length, chunk):
                out, state = layer(x[start : start + chunk], state)
                h, c = state if isinstance(state, tuple) else (state, None)
                trace.outputs.append(out)
                trace.h.append(h)
                if c is not None:
                    trace.c.append(c)
                trace.ends.append(min(start + chunk, length) - 1)
            x = self.after(index, torch.cat(trace.outputs))
            traces.append(trace)
        return self.readout(x), traces

    def forward_injected(self, x: torch.Tensor) -> tuple[torch.Tensor, list[InjectedTrace]]:
        """Fused forward, one call per layer, with a zero perturbation of every h_{t-1} visible to autograd.

        Each layer runs as its wide twin with input weights [W_ih, W_hh] on input [x_t, z_t]: every
        pre-activation sees W_hh (h_{t-1} + z_t), so with z = 0 the function and all weight gradients are
        unchanged. Exact for the cells in ``INJECTABLE`` (a GRU multiplies W_hn h_{t-1} by its reset gate).
        """
        if self.cell not in INJECTABLE:
            raise ValueError(f"the injected probe is exact only for {', '.join(INJECTABLE)}, not {self.cell}")
        traces = []
        for index, (layer, wide) in enumerate(zip(self.layers, self._wide)):
            z = torch.zeros(*x.shape[:2], layer.hidden_size, dtype=x.dtype, device=x.device, requires_grad=True)
            # Copies, not the layer's Parameters: the twin's forward flattens whatever it is handed (on CUDA,
            # _cudnn_rnn_flatten_weight re-points those tensors into its own buffer), and the real layer's weights must
            # stay where the fused training step keeps them. Gradients reach the Parameters through the copies.
            params = {name: p.clone() for name, p in layer.named_parameters()}
            params["weight_ih_l0"] = torch.cat([layer.weight_ih_l0, layer.weight_hh_l0], dim=1)
            out, _ = functional_call(wide, params, (torch.cat([x, z], dim=-1),))
            traces.append(InjectedTrace(x, out, z))
            x = self.after(index, out)
        return self.readout(x), traces


def initial_net(cfg: RunConfig, task: Task) -> RecurrentNet:
    """The network a run starts from: built and initialised from the global torch generator (seeded by the caller)."""
    net = RecurrentNet(cfg.model, task.input_size, task.output_size)
    net.initialise(cfg.init, int(cfg.chrono_tmax))
    return net
