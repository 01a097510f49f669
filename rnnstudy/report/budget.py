"""Memory length against the training budget: T50 at a ladder of budgets read from the same runs, and the growth law.

A run solved within b steps if and only if it first met its bar at or before step b, so every smaller budget's T50
comes from the runs already trained. The budget-free summary of a line is how steps-to-solve grow with T
(``steps ~ T^alpha``, :func:`rnnstudy.memory.growth_law`), drawn beside the ladder as the T50 it implies.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rnnstudy import figures
from rnnstudy.cells import CELL_LABELS, CELL_ORDER
from rnnstudy.memory import BUDGET_LADDER, growth_law, solved_within, t50
from rnnstudy.names import Censored
from rnnstudy.report import frames
from rnnstudy.report.tables import LINE, best_trials, estimate_columns, estimate_text

#: A line whose T50 at the full budget exceeds its T50 at the rung below by more than this factor is still rising.
RISING = 1.1
#: The growth law's T50 is drawn up to this factor beyond the largest T a line visited (further is extrapolation).
LAW_REACH = 4.0


def frame(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The section's two frames, each line's growth law fitted once.

    The ladder: one row per line x rung of :data:`~rnnstudy.memory.BUDGET_LADDER` (``budget`` in steps), with the
    estimate's machine columns (:func:`rnnstudy.report.tables.estimate_columns`) and ``law_T50``, the T50 the line's
    growth law implies at that budget. The laws: per line, steps-to-solve ~ T^alpha, alpha with its 95%
    profile-likelihood interval (log-normal; a solve is interval-censored between the validation before it and its
    own, a run unsolved right-censored at the budget).
    """
    rungs, growth = [], []
    for key, d in best_trials(frames.studied(runs)).groupby(LINE, dropna=False):
        line = dict(zip(LINE, key))
        steps = d["steps_to_solve"].astype(float)
        law = growth_law(d["T"], steps, d["budget"].astype(float), d["val_every"].astype(float))
        growth.append({**line, "alpha": law.alpha, "alpha_low": law.low, "alpha_high": law.high,
                       "intercept": law.intercept, "sigma": law.sigma, "runs": law.runs, "solved": law.solved})  # fmt: skip
        full = float(d["budget"].max())
        for b in (full * fraction for fraction in BUDGET_LADDER):
            est = t50(d.assign(solved=solved_within(steps, b)))
            rungs.append({**line, "value": d["value"].iloc[0], "budget": int(b), **estimate_columns(est),
                          "law_T50": law.T_at(b)})  # fmt: skip
    return pd.DataFrame(rungs), pd.DataFrame(growth)


def rising(rungs: pd.DataFrame) -> str:
    """Whether a line's T50 still grows between the last two rungs: yes, no, or unknown where the top rung is a bound
    above (every T tried solved: the T search did not reach the transition at this budget)."""
    top, below = rungs.sort_values("budget").iloc[-1], rungs.sort_values("budget").iloc[-2]
    if top["censored"] == Censored.ABOVE:
        return "unknown: every T tried solved"
    value = lambda r: r["T50"] if r["censored"] == Censored.NONE else r["bound"]  # noqa: E731
    return "yes" if value(top) > RISING * value(below) else "no"


def table(rungs: pd.DataFrame, growth: pd.DataFrame) -> pd.DataFrame:
    """For people: per line, T50 at each budget, alpha with its interval, and whether T50 still rises at the full budget."""
    if rungs.empty:
        return pd.DataFrame()
    rows = []
    for key, d in rungs.groupby(LINE, dropna=False, sort=False):
        law = growth.set_index(LINE).loc[key]
        row = {"task": key[0], "cell": CELL_LABELS[key[1]], "family": key[2], "setting": key[3]}
        row |= {f"T50 at {int(r['budget'])} steps": estimate_text(r) for _, r in d.sort_values("budget").iterrows()}
        row["alpha (steps ~ T^alpha) [95%]"] = (
            "-" if np.isnan(law["alpha"]) else f"{law['alpha']:.2f} [{law['alpha_low']:.2f}, {law['alpha_high']:.2f}]"
        )
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
            est = d[d["censored"] == Censored.NONE]
            ax.errorbar(est["x"], est["T50"], yerr=[est["T50"] - est["low"], est["high"] - est["T50"]], fmt="o-",
                        color=colour, capsize=3)  # fmt: skip
            for sign, marker in ((Censored.ABOVE, "^"), (Censored.BELOW, "v")):
                bound = d[d["censored"] == sign]
                ax.scatter(bound["x"], bound["bound"], marker=marker, color=colour)
            seen = [T for v in d["T_visited"] for T in v]  # the law drawn only near the T it saw
            law = d[d["law_T50"].between(min(seen) / LAW_REACH, LAW_REACH * max(seen))]
            ax.plot(law["x"], law["law_T50"], "--", color=colour, alpha=0.6)
            ax.plot([], [], "o-", color=colour, label=f"{family} {setting}".strip())
        ax.set(xscale="log", yscale="log", title=f"{task}: {CELL_LABELS[cell]}", xlabel="training budget (steps)",
               ylabel="T50 (log)")  # fmt: skip
        figures.plain_log_ticks(ax.xaxis)
        figures.plain_log_ticks(ax.yaxis)
        ax.legend(fontsize=7)
    fig.suptitle("T50 against the training budget, read from the same runs (bars: 95% intervals; triangles: bounds, "
                 "every T tried solved or none; dashed: T50 implied by steps ~ T^alpha, within 4x of the T tried; a panel's "
                 f"lines {figures.DODGE:g}x apart around their budget)",
                 fontsize=9)  # fmt: skip
    return figures.save(fig, out)
