"""Figure: T50 against the learning rate, for memory-length lines that differ only in their lr (rows that set it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from rnnstudy.model.cells import CELL_COLOURS, CELL_LABELS, CELL_ORDER
from rnnstudy.report import figures

#: What one initialisation is: lines with these equal and different lrs make one sensitivity curve.
INIT = ["task", "cell", "family", "axis", "value"]


def frame(memory: pd.DataFrame) -> pd.DataFrame:
    """The memory-length lines of every initialisation trained at more than one lr, each line at its one lr."""
    if memory.empty:
        return memory
    single = memory[memory["lr"].map(len) == 1]
    single = single.assign(lr_value=single["lr"].map(lambda v: v[0]))
    lrs = single.groupby(INIT, dropna=False)["lr_value"].transform("nunique")
    return single[lrs > 1].sort_values([*INIT, "lr_value"])


def draw(data: pd.DataFrame, out: Path) -> Path | None:
    """One panel per initialisation: T50 with its interval against the lr (log-log), bounds as triangles."""
    if data.empty:
        return None
    groups = sorted(data.groupby(INIT, dropna=False), key=lambda g: (CELL_ORDER.index(g[0][1]), str(g[0])))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False, layout="constrained")
    for ax, ((task, cell, family, axis, value), d) in zip(axes.flat, groups):
        figures.t50_points(ax, "lr_value", d, CELL_COLOURS[cell])
        ax.set_xscale("log")
        ax.set_yscale("log")
        figures.plain_log_ticks(ax.yaxis)
        setting = f" {axis.removeprefix('init.')}={value:g}" if axis else ""
        ax.set(title=f"{task} | {CELL_LABELS[cell]} | {family}{setting}", xlabel="learning rate (log)",
               ylabel="T50 (log)")  # fmt: skip
        ax.legend(fontsize=7)
    budget = ", ".join(f"{b:g}" for b in sorted(data["budget"].unique()))
    fig.suptitle(f"Memory length against the learning rate, one initialisation per panel ({budget} steps)")
    return figures.save(fig, out)
