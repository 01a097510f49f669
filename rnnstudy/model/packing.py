"""Which computation a packed run uses on a device: the measured rule each cell's :class:`~rnnstudy.model.cells.CellSpec`
declares (``packed``), or the one a run asks for."""

from __future__ import annotations

from rnnstudy.model.cells import CELLS, Executor


def resolve_executor(executor: str, cell: str, device: str = "cpu") -> Executor:
    """The executor to use; ``auto`` follows the cell's measured rule (the loop where it was not measured)."""
    if executor == "auto":
        return CELLS[cell].packed.get(device, "loop")
    if executor == "stacked" and CELLS[cell].update is None:
        raise ValueError(f"executor 'stacked' needs a cell written as an update; {cell} is not; allowed: auto, loop, apart")
    return executor  # type: ignore[return-value]


def packing_wins(cell: str, device: str) -> bool:
    """Whether a point's seeds of this cell train faster packed than apart on this device (the measured rule)."""
    return resolve_executor("auto", cell, device) != "apart"
