"""Figure and table: the learning-rate calibration, final loss against lr per cell, and the lr each cell then trained at."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from rnnstudy.model.cells import CELL_COLOURS
from rnnstudy.report import figures, frames
from rnnstudy.study.stages import CalibrationStage


def frame(runs: pd.DataFrame) -> pd.DataFrame:
    """The calibration runs: cell, task, T, lr, seed and final normalised loss (a diverged run: NaN, drawn at the top)."""
    if runs.empty:
        return pd.DataFrame()
    cal = runs[runs["stage"] == CalibrationStage.label]
    return cal[["cell", "task", "base", "T", "lr", "seed", "status", "final_norm_loss"]].reset_index(drop=True)


def chosen(calibration: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell x task (x row and grid point): the lr the calibration stage chose by its own rule, the lrs it tried
    (the grid and any it added beyond an edge), whether the choice is bracketed by them, and the lr its study runs
    trained at."""
    if calibration.empty:
        return pd.DataFrame()
    rows = []
    for (task, cell, base), d in calibration.groupby(["task", "cell", "base"]):
        finals = {lr: list(g["final_norm_loss"]) for lr, g in d.groupby("lr")}
        lr = CalibrationStage.choose(finals)
        score = CalibrationStage.score(finals[lr])
        tried = sorted(finals)
        rows.append({"task": task, "cell": cell, "base": base, "chosen_lr": lr, "score": score, "tried_lr": tried,
                     "bracketed": tried[0] < lr < tried[-1]})  # fmt: skip
    keys = ["task", "cell", "base"]
    used = frames.studied(runs).groupby(keys)["lr"].agg(lambda v: sorted(set(v)))
    return pd.DataFrame(rows).merge(used.rename("trained_lr").reset_index(), on=keys, how="left")


def chosen_table(picked: pd.DataFrame) -> pd.DataFrame:
    """The calibration's choice written for people."""
    if picked.empty:
        return picked
    return pd.DataFrame(
        {
            "task": picked["task"],
            "cell": picked["cell"],
            "row and grid point": picked["base"].replace("", "-"),
            "lr tried": picked["tried_lr"].map(lambda v: ", ".join(f"{x:g}" for x in v)),
            "chosen lr": picked["chosen_lr"],
            "bracketed": picked["bracketed"].map(
                lambda b: "yes" if b else "no: at the edge of the lrs tried, after the grid's extension bound"
            ),
            "median final loss / baseline": picked["score"],
            "lr the study trained at": picked["trained_lr"].map(
                lambda v: ", ".join(f"{x:g}" for x in v) if isinstance(v, list) else "-"
            ),
        }
    )


def draw(calibration: pd.DataFrame, picked: pd.DataFrame, out: Path) -> Path | None:
    """Final normalised loss against lr (both log), one panel per task, a line per cell (median over seeds, each seed a dot)."""
    if calibration.empty:
        return None
    data = calibration.assign(final=calibration["final_norm_loss"].fillna(calibration["final_norm_loss"].max() * 2))
    grid = sns.relplot(
        data=data, kind="line", x="lr", y="final", col="task", estimator="median", errorbar=None, marker="o",
        height=3.2, aspect=1.3, facet_kws={"sharey": False}, **figures.by_cell(data),
    )  # fmt: skip
    for task, ax in grid.axes_dict.items():
        d = data[data["task"] == task]
        sns.scatterplot(data=d, x="lr", y="final", ax=ax, legend=False, s=12, alpha=0.5, **figures.by_cell(d))
        for _, row in picked[picked["task"] == task].iterrows():
            ax.axvline(row["chosen_lr"], color=CELL_COLOURS[row["cell"]], ls=":", lw=1.2)
        ax.set(xscale="log", yscale="log")
        ax.axhline(1.0, color="grey", ls="--", lw=1)
    T = ", ".join(str(int(t)) for t in sorted(data["T"].unique()))
    grid.set_axis_labels("learning rate (log)", "final val loss / baseline (log)")
    grid.figure.suptitle(f"Learning-rate calibration at T = {T} (line: median over seeds; dotted: the lr chosen; dashed: "
                         "the memoryless baseline)", y=1.03)  # fmt: skip
    return figures.save(grid.figure, out)
