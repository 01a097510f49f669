"""Figure 3: the memory-length frontier, normalised loss and solved fraction against T."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from reports import frames, style


def frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One point per cell x init family x task x T x seed (best parameters within each family)."""
    best = frames.best_configs(runs, ["cell", "family", "task", "T"])
    if best.empty:
        return best
    return best[["cell", "family", "init", "task", "T", "seed", "final_norm_loss", "solved", "run_id"]]


def draw(data: pd.DataFrame, out: Path) -> Path | None:
    """Per task: normalised loss (log scale, baseline at 1) and solved fraction against T."""
    if data.empty:
        return None
    tasks = sorted(data["task"].unique())
    fig, axes = plt.subplots(2, len(tasks), figsize=(6.5 * len(tasks), 7), squeeze=False, sharex="col")
    for j, task in enumerate(tasks):
        d = data[data["task"] == task].assign(solved=lambda x: x["solved"].astype(float))
        top, bottom = axes[0, j], axes[1, j]
        lines = {"data": d, "x": "T", **style.by_cell(d), "style": "family", "markers": True}
        sns.lineplot(**lines, y="final_norm_loss", errorbar=("pi", 100), ax=top)
        top.axhline(1.0, color="grey", ls="--", lw=1, label="memoryless baseline")
        top.set_yscale("log")
        top.set_title(f"{task}: final validation loss / memoryless baseline")
        top.set_ylabel("normalised loss (log)")
        sns.lineplot(**lines, y="solved", errorbar=None, ax=bottom, legend=False)
        bottom.set_ylim(-0.05, 1.05)
        bottom.set_ylabel("fraction of seeds solved")
        bottom.set_xlabel("T (copy: delay; adding: length)")
        if d["T"].max() / max(d["T"].min(), 1) >= 10:
            for ax in (top, bottom):
                ax.set_xscale("log")
        top.legend(fontsize=7, loc="best")
    fig.suptitle("Memory-length frontier (band: range over seeds)")
    fig.tight_layout()
    return style.save(fig, out)
