"""Figure 1: log10 g_t against lag, per cell, best and default init, at init and at the end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports import frames, style
from rnnstudy.store import Results


def frame(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Profile points of the best-init and default-init runs, layer 0 hidden state."""
    best = frames.best_configs(runs, ["cell", "task", "T"]).assign(which="best init")
    default = frames.finished(runs)
    default = default[default["family"] == "default"].assign(which="default init")
    chosen = pd.concat([best, default[~default["run_id"].isin(best["run_id"])]])
    prof = frames.profiles(res, chosen)
    if prof.empty:
        return prof
    prof = prof[prof["phase"] != ""].merge(chosen[["run_id", "which"]], on="run_id")
    return prof.assign(panel=prof["task"] + ", T=" + prof["T"].astype(str)).dropna(subset=["log10_g"])


def draw(data: pd.DataFrame, out: Path) -> Path | None:
    """Facets task/T x phase; spread is one standard deviation over seeds."""
    if data.empty:
        return None
    grid = style.cell_lines(
        data,
        "lag",
        "log10_g",
        style="which",
        style_order=["best init", "default init"],
        row="panel",
        col="phase",
        col_order=["at init", "end"],
        errorbar="sd",
        height=2.6,
        aspect=1.6,
        facet_kws={"sharey": False, "sharex": "row"},
    )
    grid.set_axis_labels("lag T - t (steps back from the end)", "log10 mean ||dL/dh_t||")
    grid.set_titles("{row_name} | {col_name}")
    grid.figure.suptitle("How far back the gradient reaches (layer 1 hidden state)", y=1.01)
    return style.save(grid.figure, out)
