"""Figure 2: gradient-flow heatmaps (training step x lag, log colour), one run per task x cell at its largest T."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rnnstudy.model.cells import CELL_LABELS
from rnnstudy.report import figures, frames
from rnnstudy.run.heatmap import log_scale, profile_heatmap
from rnnstudy.run.store import Results


def frame(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Profiles of one run per task x cell: at the largest T that cell was trained at, the best configuration's typical
    seed (the median final loss; of an even count the lower middle), not one that happens to be first."""
    best = frames.best_configs(runs, ["cell", "task", "T"])
    if best.empty:
        return pd.DataFrame()
    largest = best[best["T"] == best.groupby(["task", "cell"])["T"].transform("max")]
    ranked = largest.sort_values(["task", "cell", "final_norm_loss", "seed"])
    middle = ranked.groupby(["task", "cell"]).cumcount() == (ranked.groupby(["task", "cell"])["seed"].transform("size") - 1) // 2
    chosen = ranked[middle]
    return frames.profiles(res, chosen).merge(chosen[["run_id", "solved"]], on="run_id")


def draw(data: pd.DataFrame, out: Path) -> Path | None:
    """One panel per run."""
    if data.empty:
        return None
    runs = data[["run_id", "cell", "task", "T", "init", "seed", "solved"]].drop_duplicates("run_id")
    cols = min(3, len(runs))
    rows = int(np.ceil(len(runs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.0 * rows), squeeze=False, layout="constrained")
    norm = log_scale(data["norm"].to_numpy(dtype=float))
    for ax, (_, run) in zip(axes.flat, runs.iterrows()):
        outcome = "solved" if run["solved"] else "not solved"
        title = f"{CELL_LABELS[run['cell']]} {run['task']} T={int(run['T'])}\n{run['init']}, seed {run['seed']} ({outcome})"
        profile_heatmap(data[data["run_id"] == run["run_id"]], title=title, ax=ax, norm=norm)
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.suptitle("||d(answer loss)/dh_t|| over training (layer 1; one log colour scale for every panel)")
    return figures.save(fig, out)
