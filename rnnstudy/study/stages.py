"""An experiment's plan of stages, each one object: its points and seeds, its rule on finished trials, its label.

The worker, the sweep's progress and the report iterate :func:`plan`; nothing here is remembered by a
process: every worker (and a rerun after a kill, and the parent's progress lines) derives the same next
point from the finished studies, so points are never run twice and one worker or several visit the same points.

- :class:`CalibrationStage`: each row x grid point with the experiment's own init at a reference T, per lr;
  its choice (:meth:`CalibrationStage.choose`) is the lr of the stages after it. A choice at an edge of the grid
  adds lrs beyond that edge, one at a time, until it is bracketed or ``calibrate.extend`` is reached.
- :class:`TSearchStage`: each line's T chosen from the verdicts of the T already finished.
- :class:`BracketStage`: once a line's search is done, ``T_search.bracket_seeds`` more seeds at the two T that
  bracket its crossing, moved on up or down while their own verdicts put the crossing outside it
  (:func:`rnnstudy.study.tsearch.confirm`); they sharpen T50's interval, and the search's verdicts never read them.
- :class:`GridStage`: every point once.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from rnnstudy.names import SOLVED_FRACTION, TrialAttr
from rnnstudy.run.config import RunConfig
from rnnstudy.run.overrides import apply_overrides
from rnnstudy.study.experiment import Experiment, GridPoint
from rnnstudy.study.tsearch import confirm, next_T, visited


@dataclass(frozen=True)
class Next:
    """A line's next point to run (``point``), or why there is none: ``done``, or waiting on another stage."""

    point: GridPoint | None = None
    done: bool = False
    waiting_for: str = ""
    visited: tuple[int, ...] = ()


def finished(storage: BaseStorage, name: str, target: int) -> list[FrozenTrial] | None:
    """The complete trials of a study that holds its target of finished trials; None while it does not (or does not exist)."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if len(trials) < target:
        return None
    return [t for t in trials if t.state == TrialState.COMPLETE]


def solved(flags: Iterable[bool]) -> bool:
    """Whether a point's seeds make it solved: at least the solved fraction of them (a diverged seed did not solve)."""
    flags = list(flags)
    return bool(flags) and sum(flags) / len(flags) >= SOLVED_FRACTION


def verdict(trials: list[FrozenTrial]) -> bool:
    """Whether a finished fixed point is solved, from the per-seed flags its trial recorded."""
    return solved(s for t in trials for s in t.user_attrs.get(TrialAttr.SOLVED, []))


class Stage:
    """One stage of an experiment: its points (lines), the seeds each runs, and what to run next for a line."""

    #: The stage's label: a fact of its studies and runs (``stage``) and part of their names; "" for the study proper.
    label = ""
    #: Whether its points wait on finished trials (an lr or a T chosen as it goes), so its study count is not known ahead.
    adaptive = True

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp

    def points(self) -> list[GridPoint]:
        """The stage's lines (a T search: each line at its first T)."""
        raise NotImplementedError

    @property
    def seeds(self) -> list[int]:
        """The seeds each trial of this stage trains."""
        return self.exp.seeds

    def upfront(self, point: GridPoint) -> bool:
        """Whether the point's study is created before any trial runs (not one the stage may never need)."""
        return True

    def next(self, storage: BaseStorage, point: GridPoint) -> Next:
        """What to run next for one of :meth:`points`."""
        return Next(done=True) if finished(storage, point.study, self.exp.target) is not None else Next(point)


class CalibrationStage(Stage):
    """The learning-rate calibration: per row x grid point and lr, its seeds trained to the end of the budget."""

    label = "calibration"

    def points(self) -> list[GridPoint]:
        """Each row x grid point (the experiment's own init, no family) at the reference T, per lr of the grid and per
        lr the stage may add beyond its edges (run only where the choice sits at that edge)."""
        c = self.exp.calibrate
        fixed = {"train.early_stop": False, **({"train.steps": c.steps} if c.steps else {})}
        return [
            GridPoint(
                self.exp.name,
                apply_overrides(cfg, {**fixed, "task.T": self.T(cfg.model.cell), "train.lr": lr}),
                "default", label, "train.lr", lr, self.label, key,
            )  # fmt: skip
            for key, label, cfg in self.exp.bases()
            for lr in sorted([*c.lr, *c.beyond()])
        ]

    def T(self, cell: str) -> int:
        """A cell's reference T."""
        T = self.exp.calibrate.T
        return T if isinstance(T, int) else T[cell]

    @property
    def seeds(self) -> list[int]:
        return self.exp.calibrate.seeds

    @staticmethod
    def score(finals: list[float]) -> float:
        """One lr's score: the median final normalised loss over its seeds (a diverged seed is inf; none run: inf)."""
        finals = [math.inf if math.isnan(v) else v for v in finals]
        return statistics.median(finals) if finals else math.inf

    @classmethod
    def choose(cls, finals_by_lr: Mapping[float, list[float]]) -> float:
        """The lr chosen: the lowest score (ties: the smaller lr)."""
        return min((cls.score(finals), lr) for lr, finals in finals_by_lr.items())[1]

    def upfront(self, point: GridPoint) -> bool:
        return point.value in self.exp.calibrate.lr

    def next(self, storage: BaseStorage, point: GridPoint) -> Next:
        if self.upfront(point):
            return super().next(storage, point)
        finals, wanted = self._tried(storage, point.base)
        if finals is None:
            return Next(waiting_for="the learning-rate grid")
        if wanted is None or wanted.study == point.study:
            return Next(done=True) if wanted is None else Next(point)
        return Next(waiting_for=f"the calibration at lr {wanted.value:g}")

    def _tried(self, storage: BaseStorage, base: str) -> tuple[dict[float, list[float]] | None, GridPoint | None]:
        """For one row x grid point: the seeds' final losses of every lr tried so far (None while the grid is
        unfinished), and the lr beyond an edge still to run (None: the choice is bracketed, or the bound reached)."""
        points = sorted((p for p in self.points() if p.base == base), key=lambda p: p.value)
        grid = self.exp.calibrate.lr
        finals: dict[float, list[float]] = {}
        for point in (p for p in points if p.value in grid):
            trials = finished(storage, point.study, self.exp.target)
            if not trials:
                return None, None
            finals[point.value] = list(trials[0].user_attrs.get(TrialAttr.FINAL, []))
        above = [p for p in points if p.value > max(grid)]
        below = [p for p in reversed(points) if p.value < min(grid)]
        while True:
            best = self.choose(finals)
            side = above if best == max(finals) else below if best == min(finals) else []
            if not side:
                return finals, None
            point = side.pop(0)
            trials = finished(storage, point.study, self.exp.target)
            if not trials:
                return finals, point
            finals[point.value] = list(trials[0].user_attrs.get(TrialAttr.FINAL, []))

    def chosen_lr(self, storage: BaseStorage, base: str) -> float | None:
        """The lr chosen for one row x grid point (``base``), or None while any lr it needs is unfinished."""
        finals, wanted = self._tried(storage, base)
        return None if finals is None or wanted is not None else self.choose(finals)


class GridStage(Stage):
    """Every point of the grid once, at the calibrated lr where the experiment calibrates."""

    adaptive = False

    def __init__(self, exp: Experiment, calibration: CalibrationStage | None) -> None:
        super().__init__(exp)
        self.calibration = calibration

    def points(self) -> list[GridPoint]:
        return self.exp.points()

    def next(self, storage: BaseStorage, point: GridPoint) -> Next:
        if self.calibration is not None:
            lr = self.calibration.chosen_lr(storage, point.base)
            if lr is None:
                return Next(waiting_for="the learning-rate calibration")
            point = point.at(**{"train.lr": lr})
        return self.next_at_lr(storage, point)

    def next_at_lr(self, storage: BaseStorage, point: GridPoint) -> Next:
        """What to run next for a line whose lr is set."""
        return super().next(storage, point)


class TSearchStage(GridStage):
    """Each line's T search: the next T is a function of the verdicts of the T already finished (rnnstudy.study.tsearch)."""

    adaptive = True

    def points(self) -> list[GridPoint]:
        return [p.at(**{"task.T": self.exp.T_search.start}) for p in self.exp.points()]

    def next_at_lr(self, storage: BaseStorage, point: GridPoint) -> Next:
        nxt, _ = self.search(storage, point)
        return nxt

    def search(self, storage: BaseStorage, point: GridPoint) -> tuple[Next, dict[int, bool]]:
        """The line's next point in its search, and the verdicts of the T finished so far."""
        search, verdicts = self.exp.T_search, {}
        while (T := next_T(search, verdicts)) is not None:
            at = point.at(**{"task.T": T})
            trials = finished(storage, at.study, self.exp.target)
            if trials is None:
                return Next(at, visited=tuple(visited(search, verdicts))), verdicts
            verdicts[T] = verdict(trials)
        return Next(done=True, visited=tuple(visited(search, verdicts))), verdicts


class BracketStage(TSearchStage):
    """More seeds at the two T that bracket each line's crossing, once its T search is done, and beyond them while
    their own verdicts place the crossing outside (:func:`rnnstudy.study.tsearch.confirm`)."""

    label = "bracket"

    @property
    def seeds(self) -> list[int]:
        return self.exp.T_search.bracket_seeds

    def upfront(self, point: GridPoint) -> bool:
        return False  # its T are known only once the line's search is done

    def next_at_lr(self, storage: BaseStorage, point: GridPoint) -> Next:
        searched, verdicts = self.search(storage, point)
        if not searched.done:
            return Next(waiting_for="the line's T search")
        fresh: dict[int, bool] = {}
        while (T := confirm(self.exp.T_search, verdicts, fresh)) is not None:
            at = replace(point.at(**{"task.T": T}), stage=self.label)
            trials = finished(storage, at.study, self.exp.target)
            if trials is None:
                return Next(at)
            fresh[T] = verdict(trials)
        return Next(done=True)


def plan(exp: Experiment) -> list[Stage]:
    """The experiment's stages in the order they run: the calibration (if any), the grid or its T searches, and the
    bracketing seeds (if any)."""
    calibration = CalibrationStage(exp) if exp.calibrate is not None else None
    main = (TSearchStage if exp.T_search else GridStage)(exp, calibration)
    more = BracketStage(exp, calibration) if exp.T_search and exp.T_search.bracket_seeds else None
    return [s for s in (calibration, main, more) if s is not None]


def adaptive(exp: Experiment) -> bool:
    """Whether the experiment's plan chooses points as it goes (an lr calibration, a T search): its studies are counted
    as they come, and a worker with nothing to run waits instead of ending."""
    return any(stage.adaptive for stage in plan(exp))


def lines(exp: Experiment) -> list[tuple[Stage, GridPoint]]:
    """Every line of every stage, in plan order."""
    return [(stage, point) for stage in plan(exp) for point in stage.points()]


def study_of(exp: Experiment, cfg: RunConfig) -> str | None:
    """The study a hand-run config of ``exp`` belongs to: the one line of the study proper with its model, task and
    initialisation (a T search's line at the run's T); None where no line or several match."""
    found = set()
    for stage, point in lines(exp):
        if stage.label:
            continue  # a calibration run is the calibration's, not a hand-run family
        at = point.at(**{"task.T": cfg.task.T}) if isinstance(stage, TSearchStage) else point
        if (at.cfg.model, at.cfg.task, at.cfg.init) == (cfg.model, cfg.task, cfg.init):
            found.add(at.study)
    return found.pop() if len(found) == 1 else None
