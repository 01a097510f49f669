"""Memory length against the training budget: T50 at a ladder of budgets read from the same runs, and the growth law.

A run solved within b steps if and only if it first met its bar at or before step b, so every smaller budget's T50
comes from the runs already trained. The budget-free summary of a line is how steps-to-solve grow with T
(``steps ~ T^alpha``, :func:`rnnstudy.analysis.memory.growth_law`), drawn beside the ladder as the T50 it implies.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rnnstudy.analysis.memory import BUDGET_LADDER, growth_law, solved_within, t50
from rnnstudy.model.cells import CELL_LABELS, CELL_ORDER
from rnnstudy.report import figures, frames
from rnnstudy.report.tables import LINE, best_trials, estimate_columns, estimate_text, span

#: The growth law's T50 is drawn up to this factor beyond the largest T a line visited (further is extrapolation).
LAW_REACH = 4.0


def frame(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The section's two frames, each line's growth law fitted once.

    The ladder: one row per line x rung of :data:`~rnnstudy.analysis.memory.BUDGET_LADDER` (``budget`` in steps), with the
    estimate's machine columns (:func:`rnnstudy.report.tables.estimate_columns`) and ``law_T50``, the T50 the line's
    growth law implies at that budget. The laws: per line, steps-to-solve ~ T^alpha, alpha with its 95%
    profile-likelihood interval (log-normal; a solve is interval-censored between the validation before it and its
    own, a run unsolved right-censored at the budget).
    """
    rungs, growth = [], []
    for key, d in best_trials(frames.studied(runs)).groupby(LINE, dropna=False):
        line = dict(zip(LINE, key))
        steps = d["steps_to_solve"].astype(float)
        law = growth_law(d["T"], steps, d["budget"].astype(float), steps - d["solved_after"].astype(float))
        full = float(d["budget"].max())
        growth.append({**line, "alpha": law.alpha, "alpha_low": law.low, "alpha_high": law.high,
                       "intercept": law.intercept, "sigma": law.sigma, "runs": law.runs, "solved": law.solved,
                       "budget": full, **resolution(d)})  # fmt: skip
        below = 0.0
        for b in (full * fraction for fraction in BUDGET_LADDER):
            est = t50(d.assign(solved=solved_within(steps, b)))
            late = d[(steps > below) & (steps <= b)]  # first solved since the rung below: what this rung adds
            rungs.append({**line, "value": d["value"].iloc[0], "budget": int(b), **estimate_columns(est),
                          "law_T50": law.T_at(b), "new_solves": len(late), "runs": len(d),
                          "new_solves_T": ", ".join(f"{t:.0f}" for t in sorted(set(late["T"])))})  # fmt: skip
            below = b
    return pd.DataFrame(rungs), pd.DataFrame(growth)


def resolution(d: pd.DataFrame) -> dict[str, float]:
    """What a line's runs can say about alpha: the T over which its solves spread (``T_low``, ``T_high``) and the
    smallest growth the validations resolve there, log((s + v) / s) / log(T_high / T_low) for the earliest solve s and
    the gap v between its validation and the one before (val_every, or the ladder's step there): solves one validation
    apart across the whole range (NaN with fewer than two T)."""
    solved = d[d["solved"]]
    if solved["T"].nunique() < 2:
        return {"T_low": np.nan, "T_high": np.nan, "alpha_resolution": np.nan}
    earliest = solved.loc[solved["steps_to_solve"].astype(float).idxmin()]
    first, every = float(earliest["steps_to_solve"]), float(earliest["steps_to_solve"] - earliest["solved_after"])
    low, high = float(solved["T"].min()), float(solved["T"].max())
    return {"T_low": low, "T_high": high, "alpha_resolution": float(np.log1p(every / first) / np.log(high / low))}


def rising(rungs: pd.DataFrame) -> str:
    """Whether a line's T50 still rises between the last two rungs, by rule: "yes" only where the full budget's 95%
    interval (or bound) lies wholly above the rung below's; "not shown" where they overlap. Either way, the evidence:
    how many of the line's runs first solved after the rung below, and at which T."""
    top, below = rungs.sort_values("budget").iloc[-1], rungs.sort_values("budget").iloc[-2]
    (top_low, _), (_, below_high) = span(top), span(below)
    if top_low >= below_high:
        return f"yes: {estimate_text(top)} against {estimate_text(below)} at {int(below['budget'])} steps; {added(rungs)}"
    return f"not shown: the intervals overlap; {added(rungs)}"


def added(rungs: pd.DataFrame) -> str:
    """What a line's full budget added to the rung below: how many of its runs first solved since then, and at which T."""
    top, below = rungs.sort_values("budget").iloc[-1], rungs.sort_values("budget").iloc[-2]
    return (f"{top['new_solves']} of {top['runs']} runs first solved after step {int(below['budget'])}"
            + (f" (T {top['new_solves_T']})" if top["new_solves"] else ""))  # fmt: skip


def alpha_text(law: pd.Series) -> str:
    """alpha with its interval and the T it was fitted over, or the resolution limit it lies below."""
    if np.isnan(law["alpha"]):
        return "- (solves at fewer than two T)"
    span = f"T {law['T_low']:.0f}-{law['T_high']:.0f}"
    if law["alpha_high"] < law["alpha_resolution"]:
        return (f"< {law['alpha_resolution']:.2f}, the validation grid's resolution over {span} "
                f"(fit {law['alpha']:.2f} [{law['alpha_low']:.2f}, {law['alpha_high']:.2f}])")  # fmt: skip
    return f"{law['alpha']:.2f} [{law['alpha_low']:.2f}, {law['alpha_high']:.2f}] over {span}"


def table(rungs: pd.DataFrame, growth: pd.DataFrame) -> pd.DataFrame:
    """For people: per line, T50 at each budget, alpha with its interval, and whether T50 still rises at the full budget."""
    if rungs.empty:
        return pd.DataFrame()
    rows = []
    for key, d in rungs.groupby(LINE, dropna=False, sort=False):
        law = growth.set_index(LINE).loc[key]
        row = {"task": key[0], "cell": CELL_LABELS[key[1]], "family": key[2], "setting": key[3]}
        row |= {f"T50 at {int(r['budget'])} steps": estimate_text(r) for _, r in d.sort_values("budget").iterrows()}
        row["alpha (steps ~ T^alpha) [95%]"] = alpha_text(law)
        row["still rising at the full budget"] = rising(d)
        rows.append(row)
    return pd.DataFrame(rows)


def draw(rungs: pd.DataFrame, out: Path) -> Path | None:
    """T50 against budget (log-log), one panel per task x cell, one colour per family x setting; dashed: the growth law."""
    if rungs.empty:
        return None
    panels = sorted({(t, c) for t, c in zip(rungs["task"], rungs["cell"])}, key=lambda p: (p[0], CELL_ORDER.index(p[1])))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False, layout="constrained")
    for ax, (task, cell) in zip(axes.flat, panels):
        here = rungs[(rungs["task"] == task) & (rungs["cell"] == cell)]
        lines = sorted(here.groupby(["family", "setting"], sort=False), key=lambda g: (g[0][0], g[1]["value"].iloc[0]))
        colours = figures.shades(cell, len(lines))
        for i, ((family, setting), d) in enumerate(lines):  # each line a little apart in x: bounds often coincide
            d = d.sort_values("budget")
            d = d.assign(x=d["budget"] * figures.dodge(i, len(lines)))
            colour = colours[i]
            figures.t50_points(ax, "x", d, colour, legend=False)
            seen = [T for v in d["T_visited"] for T in v]  # the law drawn only near the T it saw
            law = d[d["law_T50"].between(min(seen) / LAW_REACH, LAW_REACH * max(seen))]
            ax.plot(law["x"], law["law_T50"], "--", color=colour, alpha=0.6)
            ax.plot([], [], "o", color=colour, label=f"{family} {setting}".strip())
        ax.set(xscale="log", yscale="log", title=f"{task}: {CELL_LABELS[cell]}", xlabel="training budget (steps)",
               ylabel="T50 (log)")  # fmt: skip
        figures.plain_log_ticks(ax.xaxis)
        figures.plain_log_ticks(ax.yaxis)
        ax.legend(fontsize=7)
    figures.caption(fig, "T50 against the training budget, read from the same runs\n(dots: T50 [95% interval]; hollow "
                    "squares: between two T tried, quasi-separated; triangles: bounds, hollow where weak; dashed: T50 "
                    f"implied by steps ~ T^alpha, within 4x of the T tried; a panel's lines {figures.DODGE:g}x apart "
                    "around their budget)")  # fmt: skip
    return figures.save(fig, out)
