"""Tidy frames behind the figures: one row per run, per profile point, per validation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnstudy.model import inits
from rnnstudy.model.gradflow import metric_key
from rnnstudy.names import COMPLETE, NORM_LOSS
from rnnstudy.run.store import Results
from rnnstudy.study.experiment import CALIBRATION

#: The probe metrics the report reads: the answer-loss profile of the first layer's hidden state.
PROBE_LOSS = "answer"


def probe_metric(name: str, layer: int = 1, state: str = "h") -> str:
    """The store's metric name of a derived gradient number of the answer-loss profile."""
    return metric_key(name, PROBE_LOSS, layer, state)


def _col(runs: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
    return runs[name] if name in runs else pd.Series(default, index=runs.index)


def init_family(row: pd.Series) -> str:
    """The run's initialisation family: the experiment's family name, or its schemes without numbers."""
    named = row.get("meta.family")
    if isinstance(named, str) and named:
        return named
    family = inits.schemes_name(row["config.init.recurrent"], row["config.init.bias"])
    if row.get("config.init.input", "default") != "default":
        family += f" (input {row['config.init.input']})"
    return family


def init_label(row: pd.Series) -> str:
    """The scheme with the numbers that matter to it, e.g. ``orthogonal(gain=1.14)``."""
    parts = []
    for kind, registry in inits.KINDS.items():
        for param in registry[row[f"config.init.{kind}"]].params:
            value = row.get(f"config.init.{param}")
            if pd.notna(value):
                parts.append(f"{param}={value:.3g}")
    return init_family(row) + (f"({', '.join(parts)})" if parts else "")


def run_table(res: Results) -> pd.DataFrame:
    """One row per run with the columns the figures use."""
    r = res.runs
    if r.empty:
        return pd.DataFrame()
    out = pd.DataFrame(
        {
            "run_id": r["run_id"],
            "path": r["path"],
            "experiment": _col(r, "experiment", ""),
            "status": r["status"],
            "reason": _col(r, "reason", None),
            "cell": r["config.model.cell"],
            "hidden": r["config.model.hidden_size"],
            "task": r["config.task.name"],
            "T": r["config.task.T"].astype(int),
            "seed": r["config.seed"],
            "study": _col(r, "meta.study", None),
            "line": _col(r, "meta.line", None),
            "stage": _col(r, "meta.stage", "").fillna(""),
            "axis": _col(r, "meta.axis", "").fillna(""),
            "value": pd.to_numeric(_col(r, "meta.value"), errors="coerce"),
            "row": _col(r, "meta.row", ""),
            "base": _col(r, "meta.base", "").fillna(""),
            "trial": _col(r, "meta.trial"),
            "final_norm_loss": pd.to_numeric(_col(r, "final.norm_loss"), errors="coerce"),
            "best_norm_loss": pd.to_numeric(_col(r, "best.norm_loss"), errors="coerce"),
            "steps": _col(r, "steps"),
            "steps_to_solve": _col(r, "steps_to_solve"),
            "wall_s": pd.to_numeric(_col(r, "wall_s"), errors="coerce"),
            "members": pd.to_numeric(_col(r, "packed.members"), errors="coerce").fillna(1),
            "device": _col(r, "device", ""),
            "seq_len": _col(r, "seq_len"),
            "baseline": _col(r, "baseline"),
            "threshold": pd.to_numeric(_col(r, "config.task.solved_threshold"), errors="coerce"),
            "optimizer": r["config.train.optimizer"],
            "lr": r["config.train.lr"],
            "budget": r["config.train.steps"],
            "val_every": r["config.train.val_every"],
        }
    )
    out["family"] = r.apply(init_family, axis=1)
    out["init"] = r.apply(init_label, axis=1)
    held = [f"{a.removeprefix('init.')}={v:g}" if a else "" for a, v in zip(out["axis"], out["value"])]
    rows = [r if isinstance(r, str) else "" for r in out["row"]]
    out["setting"] = [" ".join(p for p in (h, r) if p) for h, r in zip(held, rows)]  # a row of the experiment is a line
    out["solved"] = out["steps_to_solve"].notna()
    # One configuration = a study's searched values (its seeds; a retried trial has the same ones); a fixed point of an
    # experiment, whichever of its stages ran it (a T search's seeds and the bracket seeds at the same T pool); or one
    # init label outside sweeps.
    searched = [c for c in r.columns if c.startswith("meta.params.")]
    given = r[searched].notna().any(axis=1) if searched else pd.Series(False, index=r.index)
    values = r[searched].astype(object).map(str).agg(",".join, axis=1) if searched else pd.Series("", index=r.index)
    point = np.where(given, out["study"].astype(str) + "#" + values, out["experiment"].astype(str) + "#fixed point")
    out["config"] = np.where(out["study"].notna(), point, out["init"])
    for key in searched:
        out[key.removeprefix("meta.params.")] = r[key]
    decay = res.metrics[(res.metrics["split"] == "probe") & (res.metrics["metric"] == probe_metric("decay_rate"))]
    if not decay.empty:
        first = decay.loc[decay.groupby("run_id")["step"].idxmin(), ["run_id", "value"]].rename(columns={"value": "decay_init"})
        last = decay.loc[decay.groupby("run_id")["step"].idxmax(), ["run_id", "value"]].rename(columns={"value": "decay_end"})
        out = out.merge(first, on="run_id", how="left").merge(last, on="run_id", how="left")
    else:
        out = out.assign(decay_init=np.nan, decay_end=np.nan)
    return out


def studied(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the study proper: everything but the learning-rate calibration stage."""
    return runs[runs["stage"] != CALIBRATION] if not runs.empty else runs


def complete(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of status ``complete`` (trained to their budget or solved bar): those a comparison of final losses may use."""
    return runs[runs["status"] == COMPLETE] if not runs.empty else runs


def best_configs(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """For each group in ``by``, the runs (seeds) of the study proper's configuration with the lowest mean final loss
    (a calibration run, at another lr, is never a "best initialisation")."""
    done = complete(studied(runs)).dropna(subset=["final_norm_loss"])
    if done.empty:
        return done
    means = done.groupby([*by, "config"], dropna=False)["final_norm_loss"].mean().reset_index()
    best = means.loc[means.groupby(by, dropna=False)["final_norm_loss"].idxmin(), [*by, "config"]]
    return done.merge(best, on=[*by, "config"])


def profiles(res: Results, runs: pd.DataFrame, layer: int = 1, state: str = "h") -> pd.DataFrame:
    """Answer-loss gradient profile points with lag, phase (init / end) and the run's labels."""
    g = res.gradflow
    if g.empty or runs.empty or "loss" not in g:
        return pd.DataFrame()
    g = g[(g["layer"] == layer) & (g["state"] == state) & (g["loss"] == PROBE_LOSS)]
    g = g.merge(runs[["run_id", "cell", "task", "T", "seed", "family", "init", "seq_len"]], on="run_id")
    last = g.groupby("run_id")["step"].transform("max")
    g = g.assign(phase=np.where(g["step"] == 0, "at init", np.where(g["step"] == last, "end", "")))
    g = g.assign(log10_g=np.log10(g["norm"].where(g["norm"] > 0)))
    return g


def validation_curves(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Validation normalised loss against step with the run's labels."""
    val = res.metrics[(res.metrics["split"] == "val") & (res.metrics["metric"] == NORM_LOSS)]
    return val.merge(runs[["run_id", "cell", "task", "T", "seed", "family", "init"]], on="run_id").rename(
        columns={"value": NORM_LOSS}
    )
