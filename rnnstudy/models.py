"""Recurrent networks: a stack of single-layer cuDNN-fusable modules and a per-step readout.

Layers are separate single-layer modules (not one multi-layer module) so the gradient probe
can hand states between time chunks of every layer; on the fast path each layer is one fused
call over the whole sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from rnnstudy.inits import initialise

if TYPE_CHECKING:
    from rnnstudy.config import InitConfig, ModelConfig


def _layer(cell: str, input_size: int, hidden_size: int) -> nn.RNNBase:
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size)
    return nn.RNN(input_size, hidden_size, nonlinearity=cell.removeprefix("rnn_"))


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


class RecurrentNet(nn.Module):
    """RNN/LSTM/GRU stack with a linear readout at every time step (time-major)."""

    def __init__(self, cfg: ModelConfig, input_size: int, output_size: int) -> None:
        super().__init__()
        self.cell = cfg.cell
        sizes = [input_size] + [cfg.hidden_size] * cfg.num_layers
        self.layers = nn.ModuleList(_layer(cfg.cell, i, cfg.hidden_size) for i in sizes[:-1])
        self.readout = nn.Linear(cfg.hidden_size, output_size)

    def initialise(self, cfg: InitConfig, t_max: int) -> None:
        """Apply an initialisation to every recurrent layer (the readout keeps its default)."""
        for layer in self.layers:
            initialise(layer, self.cell, cfg, t_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused forward: ``(L, B, in) -> (L, B, out)``."""
        for layer in self.layers:
            x, _ = layer(x)
        return self.readout(x)

    def forward_traced(self, x: torch.Tensor, chunk: int = 1) -> tuple[torch.Tensor, list[LayerTrace]]:
        """Forward in time chunks, keeping every handed-on state visible to autograd.

        Same function as :meth:`forward`; the probe takes gradients with respect to the traced
        tensors (see :mod:`rnnstudy.gradflow`).
        """
        traces = []
        length = x.shape[0]
        for layer in self.layers:
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
            x = torch.cat(trace.outputs)
            traces.append(trace)
        return self.readout(x), traces
