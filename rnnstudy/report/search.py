"""Figure 5 and a table: the initialisation search, per study (parameter importances, objective against each parameter)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd
import seaborn as sns
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from rnnstudy.names import COMPLETE, PRUNED
from rnnstudy.report import figures
from rnnstudy.study.studies import study_importances

PARAM_PREFIXES = ("init.", "train.")


def param_columns(runs: pd.DataFrame) -> list[str]:
    """Searched numeric parameters present in the runs."""
    cols = [c for c in runs.columns if c.startswith(PARAM_PREFIXES)]
    return [c for c in cols if pd.to_numeric(runs[c], errors="coerce").notna().any()]


def log_searched(storage: BaseStorage | None, studies: list[str]) -> set[str]:
    """The parameters a study sampled on a log scale, as its trials' Optuna distributions say (none without a storage)."""
    found: set[str] = set()
    for name in studies if storage is not None else []:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        found |= {p for t in study.get_trials(deepcopy=False) for p, d in t.distributions.items() if getattr(d, "log", False)}
    return found


def objective_frame(runs: pd.DataFrame, storage: BaseStorage | None = None) -> pd.DataFrame:
    """Long frame: one row per finished run and searched numeric parameter, with its task and T, and whether the
    parameter was searched on a log scale (``log``)."""
    cols = param_columns(runs)
    done = runs[runs["status"].isin([COMPLETE, PRUNED])]
    if not cols or done.empty:
        return pd.DataFrame()
    ids = ["cell", "task", "T", "status", "final_norm_loss"]
    long = done[ids + cols].melt(id_vars=ids, value_vars=cols, var_name="param")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    long = long.dropna(subset=["value", "final_norm_loss"])
    logs = log_searched(storage, sorted(done["study"].dropna().unique())) if "study" in done else set()
    return long.assign(panel=long["task"] + ", T=" + long["T"].astype(int).astype(str), log=long["param"].isin(logs))


def importance_table(storage: BaseStorage | None, studies: list[str]) -> pd.DataFrame:
    """Per searched study: how its trials were drawn, how many completed, and Optuna's importances where they mean something."""
    if storage is None or not studies:
        return pd.DataFrame()
    rows = []
    for name in studies:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            continue
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not any(t.params for t in complete):
            continue  # fixed runs: nothing was searched
        values = study_importances(study)
        rows.append(
            {
                "study": name,
                "sampling": study.user_attrs.get("sampling", "-"),
                "complete trials": len(complete),
                "importances (Optuna default evaluator)": ", ".join(f"{p} {v:.2f}" for p, v in values.items()) or "-",
            }
        )
    return pd.DataFrame(rows)


def draw(objective: pd.DataFrame, out: Path) -> Path | None:
    """Final loss against each searched parameter: one row of panels per task and T, so only like is compared."""
    if objective.empty:
        return None
    grid = sns.relplot(
        data=objective,
        kind="scatter",
        x="value",
        y="final_norm_loss",
        row="panel",
        col="param",
        **figures.by_cell(objective),
        style="status",
        s=30,
        height=2.6,
        aspect=1.2,
        facet_kws={"sharex": "col", "sharey": False},
    )
    for (_, param), ax in grid.axes_dict.items():
        ax.axhline(1.0, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        if objective.loc[objective["param"] == param, "log"].any():  # searched on a log scale: drawn on one
            ax.set_xscale("log")
    grid.set_titles("{row_name} | {col_name}")
    grid.set_axis_labels("parameter value", "final val loss / baseline (log)")
    grid.figure.suptitle("Objective against each searched parameter (one row per task and T)", y=1.01)
    return figures.save(grid.figure, out)
