"""Figure 3: the memory-length frontier, normalised loss and solved fraction against T, per task and cell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from rnnstudy import figures
from rnnstudy.cells import CELL_LABELS, CELL_ORDER
from rnnstudy.report import frames


def frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One point per cell x init family x task x T x seed: the seeds of the family's best trial at that T."""
    best = frames.best_configs(runs, ["cell", "family", "task", "T"])
    if best.empty:
        return best
    return best[["cell", "family", "init", "task", "T", "seed", "final_norm_loss", "solved", "run_id"]]


def _draw(data: pd.DataFrame, y: str, label: str, out: Path, log: bool) -> Path:
    seeds = int(data.groupby(["cell", "family", "task", "T"])["seed"].nunique().max())
    grid = sns.relplot(
        data=data,
        kind="line",
        x="T",
        y=y,
        row="task",
        col="cell",
        col_order=[CELL_LABELS[c] for c in CELL_ORDER if CELL_LABELS[c] in set(data["cell"])],
        hue="family",
        style="family",
        markers=True,
        dashes=False,
        errorbar=("pi", 100) if seeds > 1 else None,
        height=2.8,
        aspect=1.1,
        facet_kws={"sharex": "row", "sharey": "row" if log else True},
    )
    for (task, _), ax in grid.axes_dict.items():
        if log:
            ax.axhline(1.0, color="grey", ls="--", lw=1)
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.05, 1.05)
        ts = sorted(data[data["task"] == task]["T"].unique())
        ax.set_xscale("log")
        ax.set_xticks(ts, [str(int(t)) for t in ts])
        ax.minorticks_off()
    grid.set_titles("{row_name} | {col_name}")
    grid.set_axis_labels("T (copy: delay; adding: length)", label)
    band = f"band: range over {seeds} seeds" if seeds > 1 else "one seed"
    grid.figure.suptitle(f"Memory-length frontier: each family at its best searched parameters at each T ({band})", y=1.02)
    return figures.save(grid.figure, out)


def draw(data: pd.DataFrame, out: Path) -> list[Path]:
    """Final normalised loss (log, baseline at 1) and the fraction of seeds solved, against T."""
    if data.empty:
        return []
    data = data.assign(solved=data["solved"].astype(float), cell=data["cell"].map(CELL_LABELS))
    return [
        _draw(data, "final_norm_loss", "final val loss / baseline (log)", out, log=True),
        _draw(data, "solved", "fraction of seeds solved", out.with_name(out.stem + "_solved.png"), log=False),
    ]
