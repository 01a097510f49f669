"""Packed runs' stacked computation: the forward of K members' networks as one batched matmul per time step.

``torch.func.vmap`` does not cover ``nn.LSTM``/``nn.GRU``, so the recurrence is written out (each cell's
:attr:`~rnnstudy.model.cells.CellSpec.update`) over the members' weights stacked along a leading K axis. The weights are
stacked from the members' own parameters at every call, so each member's gradient lands on its own parameters and
its optimizer state, clipping and checkpoint stay its own. Same function as each member's fused forward, up to
rounding (tested in float64 against separate runs).
"""

from __future__ import annotations

import torch

from rnnstudy.model.cells import CELLS
from rnnstudy.model.models import RecurrentNet


def _stack(nets: list[RecurrentNet], get: str, layer: int | None = None) -> torch.Tensor:
    modules = [net.readout if layer is None else net.layers[layer] for net in nets]
    return torch.stack([getattr(m, get) for m in modules])


def stacked_forward(nets: list[RecurrentNet], xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each net's output on its own input, ``(L, B, in) -> (L, B, out)``, computed for all K members at once."""
    update = CELLS[nets[0].cell].update
    states = len(CELLS[nets[0].cell].state)
    x = torch.stack(xs)  # (K, L, B, in)
    K, L, B, _ = x.shape
    for layer in range(len(nets[0].layers)):
        w_ih, w_hh = _stack(nets, "weight_ih_l0", layer), _stack(nets, "weight_hh_l0", layer)
        b_ih, b_hh = _stack(nets, "bias_ih_l0", layer), _stack(nets, "bias_hh_l0", layer)
        projected = torch.baddbmm(b_ih.unsqueeze(1), x.reshape(K, L * B, -1), w_ih.mT).view(K, L, B, -1)
        state = (x.new_zeros(K, B, w_hh.shape[-1]),) * states
        outputs = []
        for gi in projected.unbind(1):  # one backward for all steps (indexing per step scatters a full gradient each time)
            state = update(gi, torch.baddbmm(b_hh.unsqueeze(1), state[0], w_hh.mT), state)
            outputs.append(state[0])
        x = torch.stack(outputs, dim=1)  # (K, L, B, H)
        if nets[0].blocks is not None:  # position-wise: each member's own block on its own states
            x = torch.stack([net.after(layer, states) for net, states in zip(nets, x.unbind(0))])
    out = torch.baddbmm(_stack(nets, "bias").unsqueeze(1), x.reshape(K, L * B, -1), _stack(nets, "weight").mT)
    return list(out.view(K, L, B, -1).unbind(0))
