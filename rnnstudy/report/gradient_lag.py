"""Figure 1: log10 g_t against lag, per cell, best and default init, at init and at the end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rnnstudy.report import figures, frames, tables
from rnnstudy.run.store import Results


def frame(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Answer-loss profile points of the best-init and default-init runs, layer 1 hidden state (a point with a run still
    open left out whole, as from the estimates: its seeds that ended first are its early solvers)."""
    best = frames.best_configs(runs, ["cell", "task", "T"]).assign(which="best init")
    default = frames.complete(runs)
    default = default[default["family"] == "default"].assign(which="default init")
    chosen = tables.finished_points(pd.concat([best, default[~default["run_id"].isin(best["run_id"])]]), runs)
    prof = frames.profiles(res, chosen)
    if prof.empty:
        return prof
    prof = prof[prof["phase"] != ""].merge(chosen[["run_id", "which"]], on="run_id")
    prof = prof.assign(panel=prof["task"] + ", T=" + prof["T"].astype(int).astype(str)).dropna(subset=["log10_g"])
    return prof.sort_values(["task", "T", "lag"], kind="stable")


def panels(data: pd.DataFrame) -> list[str]:
    """The figure's rows, task by task in increasing T (not in the order the study first ran them)."""
    return list(dict.fromkeys(data.sort_values(["task", "T"], kind="stable")["panel"]))


def draw(data: pd.DataFrame, out: Path) -> Path | None:
    """Facets task/T x phase; spread is one standard deviation over seeds where there are several."""
    if data.empty:
        return None
    seeds = int(data.groupby(["cell", "which", "panel", "phase"])["seed"].nunique().max())
    grid = figures.cell_lines(
        data,
        "lag",
        "log10_g",
        style="which",
        style_order=[w for w in ("best init", "default init") if w in set(data["which"])],  # a legend entry only if drawn
        row="panel",
        row_order=panels(data),
        col="phase",
        col_order=["at init", "end"],
        errorbar="sd" if seeds > 1 else None,
        height=2.6,
        aspect=1.6,
        facet_kws={"sharey": False, "sharex": "row"},
    )
    grid.set_axis_labels("lag: steps back from the end of the sequence", "log10 g")  # a row is too short for the full name
    grid.set_titles("{row_name} | {col_name}")
    band = f"band: one sd over {seeds} seeds" if seeds > 1 else "one seed"
    figures.caption(grid.figure, f"How far back the answer-loss gradient reaches: g = mean ||d(answer loss)/dh_t||, layer 1 "
                    f"hidden state ({band}).\nA row holds the cells whose runs reached that T (a T search visits each "
                    "line's own T); solid: the best initialisation there, dashed: the default one where it ran.", 11)
    return figures.save(grid.figure, out)
