"""Tables: memory length per cell x init, best parameters per study, run status counts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports import frames, search
from rnnstudy.store import Results


def memory_length(frontier: pd.DataFrame, res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Largest T solved by at least half the seeds, per cell x init family x task, beside the gradient horizon."""
    if frontier.empty:
        return pd.DataFrame()
    solved = frontier.groupby(["task", "cell", "family", "T"])["solved"].mean().reset_index()
    rows = []
    probe = res.metrics[(res.metrics["split"] == "probe") & (res.metrics["metric"] == "horizon/l0/h")]
    for (task, cell, family), d in solved.groupby(["task", "cell", "family"]):
        ok = d[d["solved"] >= 0.5]["T"]
        largest = int(d["T"].max())
        ids = frontier[
            (frontier["task"] == task) & (frontier["cell"] == cell) & (frontier["family"] == family) & (frontier["T"] == largest)
        ]["run_id"]
        at_init = probe[(probe["run_id"].isin(ids)) & (probe["step"] == 0)]["value"]
        rows.append(
            {
                "task": task,
                "cell": cell,
                "init": family,
                "memory length (largest T solved)": int(ok.max()) if len(ok) else f"none of T <= {largest}",
                "T tried": ", ".join(str(int(t)) for t in sorted(d["T"])),
                "gradient horizon at init (steps, at the largest T)": float(np.median(at_init)) if len(at_init) else np.nan,
            }
        )
    return pd.DataFrame(rows)


def best_parameters(runs: pd.DataFrame) -> pd.DataFrame:
    """Per study, the trial with the lowest mean final normalised loss and its parameters."""
    done = frames.finished(runs).dropna(subset=["study", "final_norm_loss"])
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
