"""What an experiment runs next, read from its Optuna storage: the calibrated learning rate, the T search, each point's verdict.

Nothing here is remembered by a process: every worker (and a rerun after a kill, and the parent's
progress lines) derives the same next point from the finished studies, so points are never run twice
and one worker or several visit the same points.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from rnnstudy.experiment import CALIBRATION, Experiment, GridPoint
from rnnstudy.tsearch import next_T, visited

#: At least this fraction of a point's seeds solved: the T search goes on past it.
SOLVED_FRACTION = 0.5


@dataclass(frozen=True)
class Next:
    """A line's next point to run (``point``), or why there is none: ``done``, or waiting on another stage."""

    point: GridPoint | None = None
    done: bool = False
    waiting_for: str = ""
    visited: tuple[int, ...] = ()


def _finished(storage: BaseStorage, name: str, target: int) -> list[optuna.trial.FrozenTrial] | None:
    """The complete trials of a study that holds its target of finished trials; None while it does not (or does not exist)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if len(trials) < target:
        return None
    return [t for t in trials if t.state == TrialState.COMPLETE]


def verdict(trials: list[optuna.trial.FrozenTrial]) -> bool:
    """Whether at least half the seeds of a finished fixed point solved (a diverged seed did not)."""
    solved = [s for t in trials for s in t.user_attrs.get("solved", [])]
    return bool(solved) and sum(solved) / len(solved) >= SOLVED_FRACTION


def calibrated_lr(exp: Experiment, storage: BaseStorage, base: str) -> float | None:
    """The learning rate the calibration chose for one row x grid point: the lowest median final loss (ties: smaller lr)."""
    scores = []
    for point in (p for p in exp.calibration_points() if p.base == base):
        trials = _finished(storage, point.study, exp.target)
        if not trials:
            return None
        finals = trials[0].user_attrs.get("final", [])
        scores.append((statistics.median(finals) if finals else float("inf"), point.value))
    return min(scores)[1]


def next_point(exp: Experiment, storage: BaseStorage, point: GridPoint) -> Next:
    """What to run next for one point of ``exp.calibration_points()`` or one line of ``exp.points()``."""
    if point.stage != CALIBRATION and exp.calibrate is not None:
        lr = calibrated_lr(exp, storage, point.base)
        if lr is None:
            return Next(waiting_for="the learning-rate calibration")
        point = point.at(**{"train.lr": lr})
    if point.stage == CALIBRATION or exp.T_search is None:
        return Next(done=True) if _finished(storage, point.study, exp.target) is not None else Next(point)
    verdicts: dict[int, bool] = {}
    while (T := next_T(exp.T_search, verdicts)) is not None:
        at = point.at(**{"task.T": T})
        trials = _finished(storage, at.study, exp.target)
        if trials is None:
            return Next(at, visited=tuple(visited(exp.T_search, verdicts)))
        verdicts[T] = verdict(trials)
    return Next(done=True, visited=tuple(visited(exp.T_search, verdicts)))
