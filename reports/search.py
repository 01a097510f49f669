"""Figure 5: the initialisation search, Optuna parameter importances and objective against each parameter."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd
import seaborn as sns

from reports import style

PARAM_PREFIXES = ("init.", "train.")


def param_columns(runs: pd.DataFrame) -> list[str]:
    """Searched numeric parameters present in the runs."""
    cols = [c for c in runs.columns if c.startswith(PARAM_PREFIXES)]
    return [c for c in cols if pd.to_numeric(runs[c], errors="coerce").notna().any()]


def objective_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame: one row per finished run and searched numeric parameter."""
    cols = param_columns(runs)
    done = runs[runs["status"].isin(["complete", "pruned"])]
    if not cols or done.empty:
        return pd.DataFrame()
    long = done.melt(id_vars=["cell", "task", "T", "status", "final_norm_loss"], value_vars=cols, var_name="param")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return long.dropna(subset=["value", "final_norm_loss"])


def importance_frame(storage: str | None, studies: list[str]) -> pd.DataFrame:
    """Optuna parameter importances per study (studies with too few complete trials are skipped)."""
    if not storage or not studies:
        return pd.DataFrame()
    rows = []
    for name in studies:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values = optuna.importance.get_param_importances(study)
        except (KeyError, ValueError, RuntimeError):
            continue
        cell = name.split("/")[1] if name.count("/") >= 2 else name
        rows += [{"study": name, "cell": cell, "param": p, "importance": v} for p, v in values.items()]
    return pd.DataFrame(rows)


def draw(objective: pd.DataFrame, importance: pd.DataFrame, out: Path) -> Path | None:
    """Left: importances per cell; right: final loss against each parameter."""
    params = sorted(objective["param"].unique()) if not objective.empty else []
    panels = (1 if not importance.empty else 0) + len(params)
    if panels == 0:
        return None
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.8), squeeze=False)
    axes = list(axes.flat)
    if not importance.empty:
        sns.barplot(
            data=importance,
            x="importance",
            y="param",
            **style.by_cell(importance),
            errorbar=None,
            ax=axes[0],
        )
        axes[0].set_title("parameter importance (Optuna default evaluator)")
        axes = axes[1:]
    for ax, param in zip(axes, params):
        d = objective[objective["param"] == param]
        sns.scatterplot(data=d, x="value", y="final_norm_loss", **style.by_cell(d), style="status", ax=ax, s=30)
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel(param)
        ax.set_ylabel("final val loss / baseline (log)")
        ax.set_title(f"objective against {param}")
    fig.tight_layout()
    return style.save(fig, out)
