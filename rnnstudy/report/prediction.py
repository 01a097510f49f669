"""Predicted against measured memory length: the init-time predictor checked on a results store.

For every run it recomputes the diagnostics of the run's initial network (its config and seed give
the exact weights training started from), then compares, with Spearman rank correlations and
bootstrap intervals:

- per task x cell x init family: the predicted memory length (median over the family's runs)
  against the measured one (T50 of the memory-length table; censored estimates left out);
- per task and T: each run's predicted normalised loss against its final normalised loss.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from rnnstudy import figures
from rnnstudy.config import RunConfig
from rnnstudy.diagnostics import diagnose, predicted_loss
from rnnstudy.report import frames, tables
from rnnstudy.store import Results, read_info

BOOTSTRAP = 2000


def spearman(x: pd.Series, y: pd.Series, seed: int = 0) -> tuple[float, float, float, int]:
    """Spearman's rank correlation with a 95% percentile bootstrap interval, and the number of pairs."""
    pairs = pd.DataFrame({"x": x, "y": y}).replace([np.inf, -np.inf], np.nan).dropna()
    n = len(pairs)
    if n < 3 or pairs["x"].nunique() < 2 or pairs["y"].nunique() < 2:
        return math.nan, math.nan, math.nan, n
    rho = pairs["x"].rank().corr(pairs["y"].rank())
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        sample = pairs.iloc[rng.integers(0, n, n)]
        if sample["x"].nunique() > 1 and sample["y"].nunique() > 1:
            draws.append(sample["x"].rank().corr(sample["y"].rank()))
    low, high = np.nanpercentile(draws, [2.5, 97.5]) if draws else (math.nan, math.nan)
    return float(rho), float(low), float(high), n


def run_diagnostics(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """The diagnostics of every finished run's initial network, beside its final normalised loss."""
    done = frames.complete(frames.studied(runs))
    rows = []
    for i, (_, run) in enumerate(done.iterrows(), 1):
        d = diagnose(run_config(run["path"]))
        rows.append({**run[["run_id", "cell", "task", "T", "family", "setting", "seed", "final_norm_loss"]].to_dict(), **d.row()})
        rows[-1]["predicted_loss"] = predicted_loss(d.reach, d.task, d.T)
        if i % 50 == 0 or i == len(done):
            print(f"  diagnostics {i}/{len(done)} runs", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def run_config(folder: str | Path) -> RunConfig:
    """The exact config a run trained with, from its run.json."""
    return RunConfig.model_validate(read_info(Path(folder))["config"])


def memory_comparison(diag: pd.DataFrame, memory: pd.DataFrame) -> pd.DataFrame:
    """Per task x cell x family x setting: predicted (median over runs) and measured memory length (T50, uncensored only)."""
    key = ["task", "cell", "family", "setting"]
    predicted = (
        diag.assign(setting=diag["setting"].replace("", "-"))
        .groupby(key)[["predicted_memory", "lyapunov_reach", "timescale_median"]]
        .median()
    )
    measured = memory.rename(columns={"init family": "family"}).set_index(key)
    both = predicted.join(measured[["memory length", "T50", "censored"]], how="inner").reset_index()
    both = both[both["censored"] == "-"]  # a censored T50 bounds the memory length and locates nothing
    return both.assign(measured=both["T50"])


def draw(both: pd.DataFrame, out: Path) -> Path | None:
    """Predicted against measured memory length, one colour per cell, one marker per task."""
    if both.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    data = both.assign(predicted=both["predicted_memory"].clip(lower=0.5, upper=1e4), measured=both["measured"].clip(lower=0.5))
    sns.scatterplot(data=data, x="predicted", y="measured", **figures.by_cell(data), style="task", s=70, ax=ax)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted memory length at init (steps; log)")
    ax.set_ylabel("measured memory length T50 (uncensored estimates)")
    ax.set_title("Init-time predictor against training")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return figures.save(fig, out)


def build(res: Results, out: Path) -> pd.DataFrame:
    """Write predicted-vs-measured tables and the figure under ``out``; return the summary table."""
    figures.apply()
    runs = frames.run_table(res)
    memory = tables.memory_length(runs, res)
    diag = run_diagnostics(res, runs)
    out.mkdir(parents=True, exist_ok=True)
    diag.to_csv(out / "run_diagnostics.csv", index=False)
    both = memory_comparison(diag, memory)
    both.to_csv(out / "memory_predicted_vs_measured.csv", index=False)
    draw(both, out / "predicted_vs_measured.png")
    rows = []
    for name, column in (("gradient-decay predictor", "predicted_memory"), ("Lyapunov predictor", "lyapunov_reach")):
        rho, low, high, n = spearman(both[column], both["measured"])
        rows.append(
            {
                "comparison": f"memory length: {name}",
                "tasks": "both",
                "T": "all",
                "spearman": rho,
                "95% CI": f"[{low:.2f}, {high:.2f}]",
                "pairs": n,
            }
        )
        for task, d in both.groupby("task"):
            rho, low, high, n = spearman(d[column], d["measured"])
            rows.append(
                {
                    "comparison": f"memory length: {name}",
                    "tasks": task,
                    "T": "all",
                    "spearman": rho,
                    "95% CI": f"[{low:.2f}, {high:.2f}]",
                    "pairs": n,
                }
            )
    for (task, T), d in diag.groupby(["task", "T"]):
        rho, low, high, n = spearman(d["predicted_loss"], d["final_norm_loss"])
        rows.append(
            {
                "comparison": "final normalised loss per run",
                "tasks": task,
                "T": int(T),
                "spearman": rho,
                "95% CI": f"[{low:.2f}, {high:.2f}]",
                "pairs": n,
            }
        )
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "spearman.csv", index=False)
    _write_report(out, summary, both, len(diag))
    return summary


def _write_report(out: Path, summary: pd.DataFrame, both: pd.DataFrame, runs: int) -> None:
    """report.md: what was compared, the correlations, the figure and the per-family table."""
    columns = ["task", "cell", "family", "setting", "predicted_memory", "lyapunov_reach", "timescale_median", "memory length"]
    shown = both[columns].rename(
        columns={
            "predicted_memory": "predicted memory (steps)",
            "lyapunov_reach": "Lyapunov reach (steps)",
            "timescale_median": "median gate timescale",
            "memory length": "measured",
        }
    )
    text = [
        "# Init-time predictor against training\n",
        f"Diagnostics of the exact initial network of {runs} finished runs (each run's config and seed), compared with what "
        "training measured. Predicted memory length: k* - 10 (copy) or k* (adding), k* = log10(1/eps) / -(answer-loss decay "
        "rate at init); predicted normalised loss at T: min(1, lag_T / k*). Nothing fitted (docs/diagnostics.md). Measured "
        "memory length: T50 with its interval; censored estimates (T50 beyond the T tried) locate nothing and are left out.\n",
        "## Spearman rank correlations (95% bootstrap intervals)\n",
        tables.markdown(summary, floatfmt=".3f") + "\n",
        "![predicted vs measured](predicted_vs_measured.png)\n",
        "## Per task, cell and family\n",
        tables.markdown(shown, floatfmt=".3g") + "\n",
        "Per-run numbers: `run_diagnostics.csv`; per family: `memory_predicted_vs_measured.csv`.\n",
    ]
    (out / "report.md").write_text("\n".join(text))
