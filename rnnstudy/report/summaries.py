"""The W&B side of a sweep's studies: one summary run per study and an experiment's memory-length run.

Written by the sweep's parent once its workers end; reads the studies and the results store, trains nothing.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from rnnstudy.names import Censored
from rnnstudy.run.config import RunConfig
from rnnstudy.run.records import source_revision, versions
from rnnstudy.study.experiment import Experiment
from rnnstudy.study.stages import adaptive
from rnnstudy.study.studies import METRIC, study_importances


def summary_run_id(project: str, study: str) -> str:
    """A stable W&B run id for a study's summary run, so a rerun of the sweep updates it."""
    return "study-" + hashlib.sha1(f"{project}\0{study}".encode()).hexdigest()[:16]


def summarise_to_wandb(exp: Experiment, base: RunConfig, studies: list[optuna.Study]) -> None:
    """One W&B run per searched study (stable id): best parameters and the best trial's W&B runs, best value, the
    search space, importances where they mean something, the study's facts, commit and versions; and, for a
    memory-length experiment, one run with its T50 table (fixed points get no run of their own: it covers them)."""
    if base.wandb.mode == "disabled":
        return
    import wandb

    from rnnstudy.run.tracking import SETTINGS, share_staged, stage_under

    folder = base.out / exp.name / "studies"
    folder.mkdir(parents=True, exist_ok=True)
    stage_under(folder)  # the memory-length table's staged copy travels with the results folder
    project = base.wandb.project or exp.name
    common = {"project": project, "entity": base.wandb.entity, "dir": str(folder), "mode": base.wandb.mode}
    common |= {"settings": wandb.Settings(**SETTINGS), "reinit": "create_new", "resume": "allow"}
    commit, dirty = source_revision()
    made_by = {"provenance": {"commit": commit, "dirty": dirty}, "versions": versions()}
    for study in studies if exp.search else []:  # a fixed point has no search to summarise: the T50 run covers it
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not finished:
            continue
        a = study.user_attrs
        tags = [str(v) for v in (a.get("cell"), a.get("task"), f"T={a.get('T')}", a.get("family")) if v] + ["study-summary"]
        run = wandb.init(
            id=summary_run_id(project, study.study_name),
            group=study.study_name,
            job_type="study-summary",
            name=f"summary {study.study_name}",
            tags=tags,
            config={
                "best_params": study.best_params,
                "best_runs": study.best_trial.user_attrs.get("run_ids", []),  # the W&B run ids of the best trial's seeds
                "search_space": {key: spec.model_dump() for key, spec in exp.search.items()},
                "study": dict(a),  # the study's facts under one key: a training run's `task` is its whole section
                **made_by,
            },
            **common,
        )
        try:
            run.log({"trials": wandb.Table(dataframe=trials_table(study)), **search_charts(study, exp.search)})
            run.summary.update(
                {
                    f"best_{METRIC}": study.best_value,  # the objective's own name, as the trials' runs log it
                    "complete_trials": len(finished),
                    **{f"importance/{k}": v for k, v in study_importances(study).items()},
                }
            )
        finally:
            run.finish()
            _keep_latest_offline(run)
    if adaptive(exp):
        _memory_length_to_wandb(exp, base, common | {"config": {"experiment": exp.name, **made_by}})
    share_staged(folder)


def trials_table(study: optuna.Study) -> Any:
    """Every trial of a study, pruned and failed ones included: number, state, objective value, searched values,
    and what its worker recorded (run ids, finals, solved flags, reason), lists and mappings as JSON text."""
    import json

    trials = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    return trials.map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)


def search_charts(study: optuna.Study, space: dict[str, Any]) -> dict[str, Any]:
    """Optuna's views of a study as W&B charts: the optimisation history (each complete trial's objective and the best
    so far), the importances where they mean something, and the objective against each searched number, on log10 of
    it where it was searched on a log scale (W&B's charts have no log axis)."""
    import numpy as np
    import pandas as pd
    import wandb

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = pd.Series([t.value for t in done], dtype=float)
    best = values.cummin() if study.direction == optuna.study.StudyDirection.MINIMIZE else values.cummax()
    charts: dict[str, Any] = {"optimisation_history": wandb.plot.line_series(
        xs=[t.number for t in done], ys=[values.tolist(), best.tolist()], keys=[METRIC, f"best {METRIC}"],
        title=f"{METRIC} of each complete trial, and the best so far", xname="trial")}  # fmt: skip
    if importances := study_importances(study):
        table = wandb.Table(dataframe=pd.DataFrame({"parameter": list(importances), "importance": list(importances.values())}))
        charts["importances"] = wandb.plot.bar(table, "parameter", "importance", title="parameter importances (Optuna)")
    for key, spec in space.items():
        chosen = [(t.params[key], t.value) for t in done if key in t.params]
        if spec.type == "categorical" or not chosen:
            continue
        x = f"log10 {key}" if spec.log else key
        frame = pd.DataFrame(chosen, columns=[x, METRIC]).astype(float)
        if spec.log:
            frame[x] = np.log10(frame[x])
        charts[f"objective_vs/{key}"] = wandb.plot.scatter(wandb.Table(dataframe=frame), x, METRIC, title=f"{METRIC} against {x}")
    return charts


def _memory_length_to_wandb(exp: Experiment, base: RunConfig, common: dict[str, Any]) -> None:
    """The experiment's memory-length table (T50 and its interval per line, from the results store) as one W&B run."""
    import wandb

    from rnnstudy.report import frames, tables
    from rnnstudy.run.store import load

    res = load(base.out / exp.name)
    memory = tables.memory_length(frames.run_table(res), res) if not res.runs.empty else None
    if memory is None or memory.empty:
        return
    run = wandb.init(
        id=summary_run_id(common["project"], f"{exp.name}/memory-length"),
        group=exp.name,  # the experiment's own group, whatever run this process wrote before
        job_type="memory-length",
        name=f"memory length {exp.name}",
        tags=["memory-length"],
        **common,
    )
    try:
        # Numbers stay numbers W&B can chart (NaN where there is none: a censored T50 has its bound column instead);
        # the lists per T visited become text.
        lists = ["T_visited", "solved_fraction", "lr"]
        table = memory.assign(**{k: memory[k].map(lambda v: ", ".join(f"{x:g}" for x in v)) for k in lists},
                              counts=memory["counts"].map(lambda v: ", ".join(f"{T}: {w}/{n}" for T, w, n in v)))  # fmt: skip
        run.log({"memory_length": wandb.Table(dataframe=table)})
        run.summary.update({"lines": len(memory), "censored": int((memory["censored"] != Censored.NONE).sum())})
    finally:
        run.finish()
        _keep_latest_offline(run)


def _keep_latest_offline(run: Any) -> None:
    """Remove the older offline folders of this run's stable id: a rerun rewrites the whole summary, and sync would
    upload every folder of the id."""
    if run.settings.mode != "offline":
        return
    current = Path(run.dir).parent
    for folder in current.parent.glob(f"offline-run-*-{run.id}"):
        if folder != current:
            shutil.rmtree(folder, ignore_errors=True)
