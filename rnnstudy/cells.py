"""The recurrent cells the harness knows: one table of their facts (name, label, colour, gates, probe method).

Every other module reads cells from here: the config's allowed values, the gate blocks of the
initialisation schemes, which cells the fused probe is exact for, and the report's labels and colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CellSpec:
    """One cell type: how people call it, its fixed colour, its gate blocks, and whether the fused probe is exact for it."""

    label: str
    colour: str
    gates: int
    #: The recurrence sees h_{t-1} only through W_hh h_{t-1}, so a perturbation injected through W_hh is exact
    #: (a GRU multiplies W_hn h_{t-1} by its reset gate, so it is not).
    injectable: bool
    #: The cell keeps a separate cell state c_t (probed as ``state = c``).
    has_cell_state: bool = False


CELLS: dict[str, CellSpec] = {
    "rnn_tanh": CellSpec("tanh RNN", "#d62728", 1, True),
    "rnn_relu": CellSpec("ReLU RNN", "#ff7f0e", 1, True),
    "lstm": CellSpec("LSTM", "#1f77b4", 4, True, has_cell_state=True),
    "gru": CellSpec("GRU", "#2ca02c", 3, False),
}
Cell = Literal[tuple(CELLS)]  # type: ignore[valid-type]
#: Cells whose fused probe is exact.
INJECTABLE = tuple(name for name, spec in CELLS.items() if spec.injectable)
CELL_ORDER = list(CELLS)
CELL_LABELS = {name: spec.label for name, spec in CELLS.items()}
CELL_COLOURS = {name: spec.colour for name, spec in CELLS.items()}
