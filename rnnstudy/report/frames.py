"""Tidy frames behind the figures: one row per run, per profile point, per validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from rnnstudy.model import inits
from rnnstudy.names import COMPLETE, DIVERGED, NORM_LOSS, PROBE, VAL, metric_key
from rnnstudy.run.record import RunInfo
from rnnstudy.run.store import Results
from rnnstudy.study.stages import CalibrationStage

#: The probe metrics the report reads: the answer-loss profile of the first layer's hidden state.
PROBE_LOSS = "answer"


def probe_metric(name: str, layer: int = 1, state: str = "h") -> str:
    """The store's metric name of a derived gradient number of the answer-loss profile."""
    return metric_key(name, PROBE_LOSS, layer, state)


def init_family(info: RunInfo) -> str:
    """The run's initialisation family: the experiment's family name, or its schemes without numbers."""
    if info.meta.family:
        return info.meta.family
    init = info.config.init
    family = inits.schemes_name(init.recurrent, init.bias)
    return family + (f" (input {init.input})" if init.input != "default" else "")


def init_label(info: RunInfo) -> str:
    """The scheme with the numbers that matter to it, e.g. ``orthogonal(gain=1.14)``."""
    init = info.config.init
    parts = [f"{param}={getattr(init, param):.3g}" for kind, registry in inits.KINDS.items()
             for param in registry[getattr(init, kind)].params if getattr(init, param) is not None]  # fmt: skip
    return init_family(info) + (f"({', '.join(parts)})" if parts else "")


def _row(path: str, info: RunInfo) -> dict[str, Any]:
    """A run's record as the run table's row (searched values under their dotted keys)."""
    c, m = info.config, info.meta
    return {
        "run_id": info.run_id,
        "path": path,
        "experiment": info.experiment,
        "status": info.status,
        "reason": info.reason,
        "cell": c.model.cell,
        "hidden": c.model.hidden_size,
        "layers": c.model.num_layers,
        "block": c.model.block,
        "task": c.task.name,
        "T": c.task.T,
        "seed": c.seed,
        "study": m.study or None,
        "line": m.line or None,
        "stage": m.stage,
        "axis": m.axis,
        "value": np.nan if m.value is None else m.value,
        "row": m.row,
        "base": m.base,
        "trial": np.nan if m.trial is None else m.trial,
        "final_norm_loss": info.final.get(NORM_LOSS, np.nan),
        "best_norm_loss": info.best.get(NORM_LOSS, np.nan),
        "steps": info.steps,
        "steps_to_solve": info.steps_to_solve,
        "wall_s": np.nan if info.wall_s is None else info.wall_s,
        "resumed": info.resumed_from_step is not None,
        "members": info.packed.members if info.packed else 1,
        "device": info.device,
        "seq_len": info.seq_len,
        "baseline": info.baseline,
        "threshold": np.nan if c.task.solved_threshold is None else c.task.solved_threshold,
        "optimizer": c.train.optimizer,
        "lr": c.train.lr,
        "budget": c.train.steps,
        "val_every": c.train.val_every,
        "family": init_family(info),
        "init": init_label(info),
        **m.params,
    }


def run_table(res: Results) -> pd.DataFrame:
    """One row per run with the columns the figures use, mapped from the runs' typed records."""
    if not res.records:
        return pd.DataFrame()
    out = pd.DataFrame([_row(str(path), info) for path, info in res.records])
    held = [f"{a.removeprefix('init.')}={v:g}" if a else "" for a, v in zip(out["axis"], out["value"])]
    out["setting"] = [" ".join(p for p in (h, r) if p) for h, r in zip(held, out["row"])]  # a row of the experiment is a line
    out["solved"] = out["steps_to_solve"].notna()
    # One configuration = a study's searched values (its seeds; a retried trial has the same ones); a fixed point of an
    # experiment, whichever of its stages ran it (a T search's seeds and the bracket seeds at the same T pool); or one
    # init label outside sweeps.
    searched = sorted({k for _, info in res.records for k in info.meta.params})
    values = out[searched].astype(object).map(str).agg(",".join, axis=1) if searched else pd.Series("", index=out.index)
    given = out[searched].notna().any(axis=1) if searched else pd.Series(False, index=out.index)
    point = np.where(given, out["study"].astype(str) + "#" + values, out["experiment"].astype(str) + "#fixed point")
    out["config"] = np.where(out["study"].notna(), point, out["init"])
    out["solved_after"] = solved_after(out, res)
    decay = res.metrics[(res.metrics["split"] == PROBE) & (res.metrics["metric"] == probe_metric("decay_rate"))]
    if not decay.empty:
        first = decay.loc[decay.groupby("run_id")["step"].idxmin(), ["run_id", "value"]].rename(columns={"value": "decay_init"})
        last = decay.loc[decay.groupby("run_id")["step"].idxmax(), ["run_id", "value"]].rename(columns={"value": "decay_end"})
        out = out.merge(first, on="run_id", how="left").merge(last, on="run_id", how="left")
    else:
        out = out.assign(decay_init=np.nan, decay_end=np.nan)
    return out


def solved_after(runs: pd.DataFrame, res: Results) -> pd.Series:
    """Per run, the validation step before the one that first met the bar (0 for a solve at the first validation; NaN
    unsolved): the solve lies in (``solved_after``, ``steps_to_solve``], however the validations were spaced."""
    val = res.metrics.loc[res.metrics["split"] == VAL, ["run_id", "step"]].drop_duplicates()
    solves = runs.loc[runs["solved"], ["run_id", "steps_to_solve"]].merge(val, on="run_id")
    before = solves[solves["step"] < solves["steps_to_solve"]].groupby("run_id")["step"].max()
    after = runs["run_id"].map(before).where(runs["solved"])
    return after.where(~runs["solved"] | after.notna(), 0)


def studied(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of the study proper: everything but the learning-rate calibration stage."""
    return runs[runs["stage"] != CalibrationStage.label] if not runs.empty else runs


def complete(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs of status ``complete`` (trained to their budget or solved bar): those a comparison of final losses may use."""
    return runs[runs["status"] == COMPLETE] if not runs.empty else runs


def best_configs(runs: pd.DataFrame, by: list[str], diverged: bool = False) -> pd.DataFrame:
    """For each group in ``by``, the runs (seeds) of the study proper's configuration with the lowest mean final loss
    (a calibration run, at another lr, is never a "best initialisation"); with ``diverged`` a diverged seed stays in,
    as unsolved with an infinite loss (a memory-length line counts every seed it ran)."""
    ended = studied(runs)
    ended = ended[ended["status"].isin([COMPLETE, DIVERGED] if diverged else [COMPLETE])] if not ended.empty else ended
    if ended.empty:
        return ended
    ended = ended.assign(score=ended["final_norm_loss"].where(ended["status"] == COMPLETE, np.inf).fillna(np.inf))
    means = ended.groupby([*by, "config"], dropna=False)["score"].mean().reset_index()
    best = means.loc[means.groupby(by, dropna=False)["score"].idxmin(), [*by, "config"]]
    return ended.merge(best, on=[*by, "config"])


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
    val = res.metrics[(res.metrics["split"] == VAL) & (res.metrics["metric"] == NORM_LOSS)]
    return val.merge(runs[["run_id", "cell", "task", "T", "seed", "family", "init"]], on="run_id").rename(
        columns={"value": NORM_LOSS}
    )
