"""Figures: the memory-length frontier (normalised loss and solved fraction against T) and T50 per cell x family."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullFormatter

from rnnstudy.model.cells import CELL_COLOURS, CELL_LABELS, CELL_ORDER
from rnnstudy.model.tasks import TASKS
from rnnstudy.report import figures, frames, tables


def frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One point per line x T x seed: the seeds of the line's best configuration at that T (diverged seeds included)."""
    best = tables.best_trials(frames.studied(runs))
    if best.empty:
        return best
    label = np.where(best["setting"] != "", best["family"] + " " + best["setting"], best["family"])
    return best.assign(line=label)[
        ["cell", "line", "family", "value", "task", "T", "seed", "final_norm_loss", "solved", "threshold", "baseline",
         "run_id"]
    ]  # fmt: skip


def _lines(data: pd.DataFrame) -> dict[str, str]:
    """Each line's colour, in legend order: by cell, family and value; a cell's lines in shades of its colour
    (light to full as the value grows), so that cells stay apart and a cell's values read in order."""
    keys = data[["cell", "family", "value", "line"]].drop_duplicates("line").copy()
    keys["rank"] = keys["cell"].map({CELL_LABELS[c]: i for i, c in enumerate(CELL_ORDER)})
    keys["number"] = pd.to_numeric(keys["value"], errors="coerce")
    colours = {}
    for cell, d in keys.sort_values(["rank", "family", "number", "line"]).groupby("rank", sort=True):
        colours.update(zip(d["line"], figures.shades(CELL_ORDER[cell], len(d))))
    return colours


def _dodged(data: pd.DataFrame) -> pd.DataFrame:
    """Each panel's lines side by side around their T (a few percent apart on the log axis), so none hides another."""
    offset = pd.Series(1.0, index=data.index)
    order = list(_lines(data))
    for _, d in data.groupby(["task", "cell"]):
        lines = [name for name in order if name in set(d["line"])]
        shift = {name: figures.dodge(i, len(lines)) for i, name in enumerate(lines)}
        offset[d.index] = d["line"].map(shift)
    return data.assign(T_drawn=data["T"] * offset)


def _draw(data: pd.DataFrame, y: str, label: str, out: Path, log: bool) -> Path:
    per_point = data.groupby(["cell", "line", "task", "T"])["seed"].nunique()
    seeds, fewest = int(per_point.max()), int(per_point.min())
    data, colours = _dodged(data), _lines(data)
    grid = sns.relplot(
        data=data, kind="line", x="T_drawn", y=y, row="task", col="cell",
        col_order=[CELL_LABELS[c] for c in CELL_ORDER if CELL_LABELS[c] in set(data["cell"])],
        hue="line", hue_order=list(colours), palette=colours, style="line", style_order=list(colours), markers=True,
        dashes=False, errorbar=("pi", 100) if seeds > 1 and log else None,
        err_style="bars", height=2.8, aspect=1.15, facet_kws={"sharex": "row", "sharey": "row" if log else True},
    )  # fmt: skip
    for (task, _), ax in grid.axes_dict.items():
        if log:
            ax.axhline(1.0, color="grey", ls="--", lw=1, label="memoryless")
            if not TASKS[task].solved_higher_is_better:  # the bar is a loss: draw it on the loss axis
                bars = data[data["task"] == task]
                bar = (bars["threshold"].fillna(TASKS[task].default_threshold) / bars["baseline"]).median()
                ax.axhline(bar, color="green", ls=":", lw=1.2)
            ax.set_yscale("log")
            figures.plain_log_ticks(ax.yaxis)
        else:
            ax.axhline(0.5, color="grey", ls=":", lw=1)
            ax.set_ylim(-0.05, 1.05)
        ts = sorted(data[data["task"] == task]["T"].unique())
        ax.set_xscale("log")
        ax.set_xlim(min(ts) / 1.3, max(ts) * 1.3)  # a little room around the T tried, also when only one was
        ax.set_xticks(ts, [str(int(t)) for t in ts], rotation=45)
        ax.xaxis.set_minor_formatter(NullFormatter())  # the T tried are the only labels on the log-T axis
    grid.set_titles("{row_name} | {col_name}")
    grid.set_axis_labels("T (copy: delay; adding: length)", label)
    count = f"{fewest}-{seeds}" if fewest != seeds else f"{seeds}"
    band = (f"bars: range over the {count} seeds of each point" if log else f"{count} seeds a point") if seeds > 1 else "one seed"
    lossy = [t for t in sorted(data["task"].unique()) if not TASKS[t].solved_higher_is_better]
    bar = f"; dotted green: the solved bar ({', '.join(lossy)})" if lossy else ""
    extra = (f"; dashed: the memoryless baseline{bar}; a run that solved stopped at the validation that met the bar, so "
             "its final loss is its loss there" if log else "; dotted: half the seeds")  # fmt: skip
    sns.move_legend(grid, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, title=None, frameon=False)
    title = (f"Memory-length frontier, each line at its best configuration at each T ({band}{extra}; a panel's lines are "
             f"drawn side by side, {figures.DODGE:g}x apart around their T)")  # fmt: skip
    figures.caption(grid.figure, title)
    return figures.save(grid.figure, out)


def draw(data: pd.DataFrame, out: Path) -> list[Path]:
    """Final normalised loss (log, baseline at 1, solved bar) and the fraction of seeds solved, against T."""
    if data.empty:
        return []
    data = data.assign(solved=data["solved"].astype(float), cell=data["cell"].map(CELL_LABELS))
    return [
        _draw(data, "final_norm_loss", "final val loss / baseline (log)", out, log=True),
        _draw(data, "solved", "fraction of seeds solved", out.with_name(out.stem + "_solved.png"), log=False),
    ]


def draw_t50(memory: pd.DataFrame, out: Path) -> Path | None:
    """T50 per cell x family (x setting) as its text says it (:func:`rnnstudy.report.figures.t50_points`), one panel per task."""
    if memory.empty:
        return None
    tasks = sorted(memory["task"].unique())
    width = max(5.0, 0.5 * len(memory) / len(tasks) + 3)
    fig, axes = plt.subplots(1, len(tasks), figsize=(width * len(tasks), 4.2), squeeze=False, layout="constrained")
    for ax, task in zip(axes.flat, tasks):
        m = memory[memory["task"] == task].copy()
        m["order"] = m["cell"].map({c: i for i, c in enumerate(CELL_ORDER)})
        m = m.sort_values(["order", "family", "value"]).reset_index(drop=True)
        for i, row in m.iterrows():
            figures.t50_points(ax, "x", m.loc[[i]].assign(x=i), CELL_COLOURS[row["cell"]], legend=False)
        labels = [
            f"{CELL_LABELS[c]}\n{f}" + (f"\n{s}" if s else "") for c, f, s in zip(m["cell"], m["family"], m["setting"])
        ]
        ax.set_xticks(range(len(m)), labels, fontsize=7, rotation=60, ha="right", rotation_mode="anchor")
        ax.set_yscale("log")
        figures.plain_log_ticks(ax.yaxis)
        ax.set(title=task, ylabel="T50 (log): where half the seeds solve")
    fig.suptitle(f"Memory length T50 {figures.budget_and_lr(memory)}, with 95% intervals\n(hollow squares: "
                 "between two T tried, quasi-separated; triangles: bounds, hollow where weak)", fontsize=9)  # fmt: skip
    return figures.save(fig, out)
