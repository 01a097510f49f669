"""Figure: the trainability phase diagram, solved fraction over (initialisation parameter x T) per cell, with T50.

Top row: the seeds solved of the seeds run at each (value, T) visited (blank: not visited), coloured by the fraction.
Bottom row: T50 against the parameter as its text says it (:func:`rnnstudy.report.figures.t50_points`), and the init-time
prediction drawn where the predicted memory length equals T; one legend below the panels, where it hides nothing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rnnstudy.model.cells import CELL_COLOURS, CELL_LABELS, CELL_ORDER
from rnnstudy.report import figures, frames, tables


def frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Solved fraction, solved runs and seeds per task x cell x axis value x T (lines held at a value of an axis only)."""
    lines = tables.best_trials(frames.studied(runs))
    lines = lines[lines["axis"] != ""] if not lines.empty else lines
    if lines.empty:
        return pd.DataFrame()
    return (
        lines.groupby(["task", "cell", "family", "axis", "value", "T"])
        .agg(solved=("solved", "mean"), won=("solved", "sum"), seeds=("seed", "nunique"))
        .reset_index()
    )


def predicted(runs: pd.DataFrame) -> pd.DataFrame:
    """Per task x cell x axis value: the T where the init-time predicted memory length equals T (geometric interpolation).

    The prediction (rnnstudy.model.diagnostics) is computed on each visited point's first-seed initial network;
    where it stays above (below) T at every T visited, the largest (smallest) T is given and flagged.
    """
    from rnnstudy.model.diagnostics import diagnose
    from rnnstudy.report.prediction import run_config

    lines = frames.studied(runs)
    lines = lines[(lines["axis"] != "") & (lines["seed"] == lines["seed"].min())] if not lines.empty else lines
    if lines.empty:
        return pd.DataFrame()
    rows = []
    for (task, cell, axis, value), d in lines.groupby(["task", "cell", "axis", "value"]):
        points = d.drop_duplicates("T").sort_values("T")
        gap = [diagnose(run_config(path), batch_size=8, k=1).predicted_memory - T for path, T in zip(points["path"], points["T"])]
        Ts = points["T"].to_numpy(dtype=float)
        crossing, bound = _crossing(Ts, np.array(gap))
        rows.append({"task": task, "cell": cell, "axis": axis, "value": value, "T_predicted": crossing, "bound": bound})
    return pd.DataFrame(rows)


def _crossing(Ts: np.ndarray, gap: np.ndarray) -> tuple[float, str]:
    """Where predicted - T changes sign (log-linear between the two T around it), or the bound it stays beyond."""
    for i in range(len(Ts) - 1):
        if gap[i] >= 0 > gap[i + 1]:
            w = gap[i] / (gap[i] - gap[i + 1])
            return float(np.exp((1 - w) * np.log(Ts[i]) + w * np.log(Ts[i + 1]))), ""
    return (float(Ts.max()), ">") if (gap >= 0).all() else (float(Ts.min()), "<")


def draw(cells: pd.DataFrame, memory: pd.DataFrame, prediction: pd.DataFrame, out: Path) -> Path | None:
    """One column per cell (per task): the solved-fraction heatmap over value x T, and T50 against the value."""
    if cells.empty:
        return None
    panels = [
        (task, c)
        for task in sorted(cells["task"].unique())
        for c in CELL_ORDER
        if ((cells["task"] == task) & (cells["cell"] == c)).any()
    ]
    fig, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 6.4), squeeze=False, layout="constrained")
    image = None
    for col, (task, cell) in enumerate(panels):
        d = cells[(cells["task"] == task) & (cells["cell"] == cell)]
        grid = d.pivot_table(index="T", columns="value", values="solved")
        won = d.pivot_table(index="T", columns="value", values="won").reindex_like(grid)
        seeds = d.pivot_table(index="T", columns="value", values="seeds").reindex_like(grid)
        top, bottom = axes[0, col], axes[1, col]
        image = top.imshow(
            grid.to_numpy(), origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest"
        )
        top.set_xticks(range(len(grid.columns)), [f"{v:g}" for v in grid.columns])
        top.set_yticks(range(len(grid.index)), [str(int(t)) for t in grid.index])
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(v):  # the runs behind each cell: 5 or 10 seeds
                top.text(j, i, f"{won.iat[i, j]:.0f}/{seeds.iat[i, j]:.0f}", ha="center", va="center", fontsize=7,
                         color="white" if v < 0.6 else "black")  # fmt: skip
        axis = d["axis"].iloc[0].removeprefix("init.")
        top.set(title=f"{task} | {CELL_LABELS[cell]}", xlabel=axis, ylabel="T visited")
        top.grid(False)
        m = memory[(memory["task"] == task) & (memory["cell"] == cell) & (memory["axis"] != "")].sort_values("value")
        figures.t50_points(bottom, "value", m, CELL_COLOURS[cell])
        p = (
            prediction[(prediction["task"] == task) & (prediction["cell"] == cell)].sort_values("value")
            if not prediction.empty
            else prediction
        )
        if not p.empty:  # a crossing is a prediction; a prediction beyond every T visited is only a bound, drawn hollow
            crossed = p[p["bound"] == ""]
            bottom.plot(crossed["value"], crossed["T_predicted"], ls="--", color="grey", marker=".",
                        label="predicted at init: k* = T")  # fmt: skip
            for sign, marker in ((">", "^"), ("<", "v")):
                b = p[p["bound"] == sign]
                if not b.empty:
                    bottom.scatter(b["value"], b["T_predicted"], marker=marker, facecolors="none", edgecolors="grey",
                                   label=f"prediction {sign} every T visited")  # fmt: skip
        bottom.set_yscale("log")
        figures.plain_log_ticks(bottom.yaxis)
        if (m["value"] > 0).all() and m["value"].max() >= 10 * m["value"].min():
            bottom.set_xscale("log")
        bottom.set(xlabel=axis, ylabel="T50 (log)")
    handles = {}
    for ax in axes[1]:
        handles |= dict(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 4), fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes[0, :].tolist(), label="fraction of seeds solved", shrink=0.8)
    fig.suptitle("Trainability phase diagram: seeds solved of seeds run at each (initialisation parameter x T; blank: "
                 f"not visited), and T50 against the parameter,\n{figures.budget_and_lr(memory)}")  # fmt: skip
    return figures.save(fig, out)
