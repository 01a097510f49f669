"""Figure 4: learning curves, validation normalised loss against step, best init per cell and T."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rnnstudy.names import NORM_LOSS
from rnnstudy.report import figures, frames
from rnnstudy.run.store import Results


def frame(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Validation curves of the best-init runs of every cell/task/T."""
    best = frames.best_configs(runs, ["cell", "task", "T"])
    if best.empty:
        return best
    curves = frames.validation_curves(res, best)
    return curves.assign(panel=curves["task"] + ", T=" + curves["T"].astype(int).astype(str))


def draw(data: pd.DataFrame, out: Path) -> Path | None:
    """One panel per task/T; the memoryless baseline at 1."""
    if data.empty:
        return None
    seeds = int(data.groupby(["cell", "panel"])["seed"].nunique().max())
    grid = figures.cell_lines(
        data,
        "step",
        NORM_LOSS,
        col="panel",
        col_wrap=min(4, data["panel"].nunique()),
        errorbar=("pi", 100) if seeds > 1 else None,
        height=2.8,
        aspect=1.3,
    )
    for ax in grid.axes.flat:
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
    grid.set_axis_labels("training step", "val loss / baseline (log)")
    grid.set_titles("{col_name}")
    band = f"band: range over {seeds} seeds" if seeds > 1 else "one seed"
    grid.figure.suptitle(f"Learning curves, best initialisation per cell ({band}; dashed: the memoryless baseline)", y=1.02)
    return figures.save(grid.figure, out)
