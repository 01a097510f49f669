"""What a sweep's studies hold: trial counts, best values, the status table, parameter importances.

Read by the sweep's parent, ``rnnstudy status`` and the report; nothing here trains.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from rnnstudy.errors import INTERRUPTED
from rnnstudy.names import TrialAttr
from rnnstudy.run.config import RunConfig
from rnnstudy.study.experiment import Experiment, GridPoint

#: Trials that hold or will hold one of a study's places (a failed trial holds none).
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)

OBJECTIVE = "final validation loss / memoryless baseline (mean over seeds)"
#: The objective's short name in Optuna (``trials_dataframe()`` column ``value_final_norm_loss``); the sentence is an attribute.
METRIC = "final_norm_loss"
SURPLUS = "surplus: other workers already hold every place of the study; nothing was trained"


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state; ``fail`` leaves out the surplus trials a race ended before they trained, counted as ``surplus``;
    ``interrupted`` counts the failed trials a stop signal ended (among ``fail``: they failed, but not by themselves)."""
    counts = {s.name.lower(): 0 for s in TrialState} | {"surplus": 0, "interrupted": 0}
    for t in study.get_trials(deepcopy=False):
        reason = str(t.user_attrs.get(TrialAttr.REASON, ""))
        counts["surplus" if reason == SURPLUS else t.state.name.lower()] += 1
        counts["interrupted"] += t.state == TrialState.FAIL and reason.startswith(INTERRUPTED)
    return counts


def sampler(exp: Experiment) -> optuna.samplers.BaseSampler:
    """The experiment's sampler (TPE with a constant liar, so parallel workers spread out, or random)."""
    s = exp.study
    if s.sampler == "random":
        return optuna.samplers.RandomSampler()
    return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, n_startup_trials=s.startup_trials)


def pruner(exp: Experiment, cfg: RunConfig) -> optuna.pruners.BasePruner:
    """The pruner; its steps are training steps (intermediate values are reported at the training step)."""
    s, every, kind = exp.study, cfg.train.val_every, exp.pruner_for(cfg)
    if kind == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=s.startup_trials, n_warmup_steps=s.warmup_validations * every, interval_steps=every
        )
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=max(every, cfg.train.steps))
    return optuna.pruners.NopPruner()


def sampling(exp: Experiment) -> str:
    """What a study's trials are, in words: fixed runs, random sampling, or a model-based search after its start-up."""
    s = exp.study
    if not exp.searching:
        return "none: one trial of fixed runs"
    if s.sampler == "random" or exp.target <= s.startup_trials:
        return f"random sampling ({exp.target} trials, start-up {s.startup_trials}: TPE never modelled anything)"
    return f"TPE after {s.startup_trials} random start-up trials, {exp.target} trials"


def load_study(point: GridPoint, storage: BaseStorage, exp: Experiment) -> optuna.Study:
    """Create or open one study with the experiment's sampler and pruner, its facts as user attributes."""
    study = optuna.create_study(
        study_name=point.study,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=sampler(exp),
        pruner=pruner(exp, point.cfg),
    )
    if study.user_attrs.get("study") != point.study:
        attrs = {**point.facts(), "description": exp.description, "objective": OBJECTIVE, "sampling": sampling(exp)}
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        study.set_metric_names([METRIC])
    return study


def experiment_studies(storage: BaseStorage, experiment: str) -> list[optuna.Study]:
    """Every study of an experiment in the storage (by the ``experiment`` fact each study carries), by name."""
    names = sorted(s.study_name for s in storage.get_all_studies() if s.user_attrs.get("experiment") == experiment)
    return [optuna.load_study(study_name=n, storage=storage) for n in names]


def summary(studies: list[optuna.Study], target: int) -> dict[str, Any]:
    """Trial counts over all studies and the best value per study."""
    totals = {"complete": 0, "pruned": 0, "fail": 0, "running": 0}
    best = {}
    for study in studies:
        c = counts(study)
        for k in totals:
            totals[k] += c[k]
        try:
            best[study.study_name] = (study.best_value, study.best_params)
        except ValueError:
            pass
    totals["target"] = target * len(studies)
    return {"totals": totals, "best": best}


def print_table(studies: list[optuna.Study], target: int) -> None:
    """One line per study: finished/target, pruned, failed, running, the best value and its parameters."""
    width = max([len("study"), *(len(s.study_name) for s in studies)])
    print(f"{'study':<{width}} {'done':>5} {'pruned':>6} {'failed':>6} {'run':>4} {'best':>9}  best parameters")
    for study in studies:
        c = counts(study)
        try:
            best, params = f"{study.best_value:.4f}", json.dumps(study.best_params)
        except ValueError:
            best, params = "-", ""
        done = f"{c['complete'] + c['pruned']}/{target}"
        print(f"{study.study_name:<{width}} {done:>5} {c['pruned']:>6} {c['fail']:>6} {c['running']:>4} {best:>9}  {params}")


#: Fewer finished trials than this give importances that mean nothing; they are not computed.
MIN_TRIALS_FOR_IMPORTANCE = 4


def study_importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances of one study, or nothing where they cannot mean anything.

    Needs ``MIN_TRIALS_FOR_IMPORTANCE`` complete trials; a parameter with a single value is left out.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [p for p in {k for t in complete for k in t.params} if len({t.params.get(p) for t in complete}) > 1]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE or not varied:
        return {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.importance.get_param_importances(study, params=sorted(varied))
        except (ValueError, RuntimeError):
            return {}
