"""Tables: memory length per cell x init, best parameters per study, run status counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnstudy.report import frames, search
from rnnstudy.store import Results


def memory_length(frontier: pd.DataFrame, res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Per task x cell x init family: the largest T solved by at least half the seeds, every smaller T of the grid tried.

    The grid of a task is every T any run of it used; a family missing at a smaller T gets no verdict above it.
    Beside it: the median answer-loss gradient horizon at initialisation, at the largest T the family was tried.
    """
    if frontier.empty:
        return pd.DataFrame()
    grid = runs.groupby("task")["T"].apply(lambda ts: sorted({int(t) for t in ts}))
    per_t = frontier.groupby(["task", "cell", "family", "T"]).agg(solved=("solved", "mean"), seeds=("seed", "nunique"))
    probe = res.metrics[(res.metrics["split"] == "probe") & (res.metrics["metric"] == frames.probe_metric("horizon"))]
    at_init = probe[probe["step"] == 0].set_index("run_id")["value"]
    rows = []
    for (task, cell, family), d in per_t.groupby(level=["task", "cell", "family"]):
        fractions = {int(T): frac for (_, _, _, T), frac in d["solved"].items()}
        memory, missing = None, []
        for T in grid[task]:
            if T not in fractions:
                missing.append(T)
            elif fractions[T] >= 0.5 and not missing:
                memory = T
        largest = max(fractions)
        ids = frontier[
            (frontier["task"] == task) & (frontier["cell"] == cell) & (frontier["family"] == family) & (frontier["T"] == largest)
        ]["run_id"]
        horizons = at_init.reindex(ids).dropna()
        seeds = int(d["seeds"].max())
        rows.append(
            {
                "task": task,
                "cell": cell,
                "init family": family,
                "memory length": memory if memory is not None else np.nan,
                "verdict": _verdict(memory, largest, grid[task]),
                "solved fraction at each T": ", ".join(f"{T}: {fractions[T]:.0%}" for T in sorted(fractions)),
                "seeds": seeds,
                "T not tried": ", ".join(map(str, missing)) or "-",
                "gradient horizon at init (answer loss, steps)": float(np.median(horizons)) if len(horizons) else np.nan,
                "horizon measured at T": largest,
            }
        )
    return pd.DataFrame(rows)


def _verdict(memory: int | None, largest: int, grid: list[int]) -> str:
    if memory is None:
        return f"none of T <= {largest}"
    return f"T >= {memory} (the largest T of the grid)" if memory == max(grid) else f"T = {memory}"


def best_parameters(runs: pd.DataFrame) -> pd.DataFrame:
    """Per study, the trial with the lowest mean final normalised loss, its parameters and how many trials it beat."""
    done = frames.complete(runs).dropna(subset=["study", "final_norm_loss"])
    if done.empty:
        return pd.DataFrame()
    params = [c for c in runs.columns if c.startswith(search.PARAM_PREFIXES)]
    rows = []
    for study, d in done.groupby("study"):
        per_trial = d.groupby("trial")["final_norm_loss"].mean()
        trial = per_trial.idxmin()
        first = d[d["trial"] == trial].iloc[0]
        chosen = {p: first[p] for p in params if pd.notna(first.get(p))}
        rows.append(
            {
                "study": study,
                "trials finished": int(d["trial"].nunique()),
                "best trial": int(trial),
                "best loss / baseline": per_trial.min(),
                "init": first["init"],
                "parameters": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items()),
            }
        )
    return pd.DataFrame(rows)


def status_counts(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs per status and cell."""
    return runs.pivot_table(index="cell", columns="status", values="run_id", aggfunc="count", fill_value=0).reset_index()


def markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table."""
    if df.empty:
        return "_(no rows)_"

    def fmt(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "-" if np.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])
