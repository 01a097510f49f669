"""An experiment file: run defaults, the grid of studies (grid, families, rows), seeds, search space and budget.

Each grid point is one study (:class:`GridPoint`): its facts (experiment, cell, task, T, family,
row) are fields, stored with the Optuna study and every run of it, so nothing parses names.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from rnnstudy.errors import ConfigError
from rnnstudy.model.cells import CELLS
from rnnstudy.model.tasks import TASKS
from rnnstudy.run.config import Name, RunConfig, RunDefaults, Seed, Strict
from rnnstudy.run.overrides import (
    apply_overrides,
    check_path,
    format_validation_error,
    merge,
    nest,
    parse_overrides,
    read_yaml,
    try_override,
)
from rnnstudy.run.records import study_name
from rnnstudy.study.space import ANY, CategoricalParam, Param, check_when, current, param_applies, param_path
from rnnstudy.study.tsearch import TSearch


class StudyConfig(Strict):
    """Optuna settings shared by every study of an experiment."""

    trials: PositiveInt = 20
    """Finished trials per study (a rerun tops up to exactly this many); without a search, always 1."""
    sampler: Literal["tpe", "random"] = "tpe"
    """Optuna sampler."""
    pruner: Literal["median", "hyperband", "none"] | None = None
    """Optuna pruner (reports at each validation, at the training step); null: median, except none on a task whose runs
    sit on a plateau before they learn (copy)."""
    startup_trials: int = Field(default=5, ge=0)
    """Trials before the sampler models and the median pruner prunes."""
    warmup_validations: int = Field(default=1, ge=0)
    """Validations of a trial before the median pruner may prune it."""
    prescreen: PositiveFloat | None = None
    """Prune at step 0 when the predicted memory length is below prescreen x T (null: off, the default).

    What each threshold saves and loses, measured per run on the phase-diagram runs: the pre-screen section of
    docs/results/prediction/report.md (generated from its per-run table).
    """
    heartbeat_s: PositiveInt = 30
    """Heartbeat of running trials; a trial silent for twice this is failed and retried."""
    pack: bool = True
    """Train a fixed point's seeds as one packed run (exactly the runs they would be apart; the cell's measured rule picks
    the computation per cell and device). A searched study prunes seed by seed, and the pre-screen reads the first
    seed alone, so their seeds always run one after the other."""


class Calibration(Strict):
    """The learning-rate calibration stage: each cell x task with the experiment's own initialisation (no family), at a
    reference T, over a log grid of lr, trained to the end of its budget (no early stop)."""

    lr: list[PositiveFloat] = Field(min_length=5)
    """The learning rates tried (at least 5, spanning at least two decades)."""
    T: int | dict[str, int]
    """The reference T the calibration runs at: one for every cell, or one per cell (``{lstm: 160, rnn_tanh: 20}``), so
    that each cell is calibrated near its own transition rather than at a T every lr solves."""
    steps: PositiveInt | None = None
    """Training steps of a calibration run (null: the experiment's train.steps)."""
    seeds: list[Seed] = Field(default=[0, 1, 2], min_length=3)
    """Seeds of each lr (at least 3)."""
    rule: Literal["median"] = "median"
    """How the lr is chosen: median = the lowest median final normalised validation loss over the seeds (ties: the smaller lr)."""
    extend: int = Field(default=2, ge=0)
    """Learning rates added beyond an edge of the grid, one at a time, while the choice sits at that edge (each one
    the grid's outer ratio further out): a choice at the edge is not a choice until the grid brackets it."""

    def beyond(self) -> list[float]:
        """The lrs the stage may add: ``extend`` below the smallest and above the largest, at the grid's outer ratios."""
        lr = sorted(self.lr)
        return [lr[0] * (lr[0] / lr[1]) ** k for k in range(1, self.extend + 1)] + [
            lr[-1] * (lr[-1] / lr[-2]) ** k for k in range(1, self.extend + 1)
        ]

    @model_validator(mode="after")
    def _wide(self) -> Calibration:
        per_cell = self.T if isinstance(self.T, dict) else {}
        if unknown := [c for c in per_cell if c not in CELLS]:
            raise ValueError(f"T: unknown cell {', '.join(map(repr, unknown))}; allowed: {', '.join(CELLS)}")
        if any(t < 1 for t in (per_cell.values() if per_cell else [self.T])):
            raise ValueError(f"T = {self.T}: allowed: a positive integer, or a mapping cell -> positive integer")
        if max(self.lr) < 100 * min(self.lr):
            raise ValueError(f"lr = {self.lr}: spans less than two decades; allowed: max(lr) >= 100 x min(lr)")
        return self


@dataclass(frozen=True)
class GridPoint:
    """One study of an experiment: its place on the grid (the facts) and its run config before the trial's parameters.

    ``axis``/``value``: a continuous initialisation parameter the grid holds at a value (the phase diagram), or the
    learning rate of a calibration study (``stage`` = calibration). ``base``: the row and grid values before the family,
    shared by a line and the calibration that sets its learning rate.
    """

    experiment: str
    cfg: RunConfig
    family: str = ""
    row: str = ""
    axis: str = ""
    value: Any = None
    stage: str = ""
    base: str = ""

    @property
    def line(self) -> str:
        """The study's name without its T: every point of one T search shares it."""
        c = self.cfg
        setting = f"{self.axis}={self.value:g}" if self.axis else ""
        parts = [self.experiment, self.stage, c.model.cell, c.task.name, self.family, setting, self.row]
        return "/".join(p for p in parts if p)

    @property
    def study(self) -> str:
        """The study's name, for people (programs read :meth:`facts`)."""
        setting = f"{self.axis}={self.value:g}" if self.axis else ""
        return study_name(self.experiment, self.cfg, self.stage, self.family, setting, self.row)

    def at(self, **overrides: Any) -> GridPoint:
        """The same point with dotted config overrides (a T of its search, the calibrated lr)."""
        return replace(self, cfg=apply_overrides(self.cfg, overrides))

    def facts(self) -> dict[str, Any]:
        """What identifies the study, stored with the study and with every run of it."""
        c = self.cfg
        return {
            "experiment": self.experiment,
            "study": self.study,
            "line": self.line,
            "stage": self.stage,
            "cell": c.model.cell,
            "task": c.task.name,
            "T": c.task.T,
            "family": self.family,
            "row": self.row,
            "axis": self.axis,
            "value": self.value,
            "base": self.base,
        }


class Experiment(RunDefaults):
    """An experiment file: run defaults, the grid of studies, the search space, the budget."""

    name: Name
    description: str = ""
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    families: dict[Name, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    seeds: list[Seed] = Field(default=[0], min_length=1)
    search: dict[str, Param] = {}
    study: StudyConfig = StudyConfig()
    T_search: TSearch | None = None
    calibrate: Calibration | None = None

    @property
    def searching(self) -> bool:
        """Whether Optuna searches parameters; without a search every study is one trial of fixed runs."""
        return bool(self.search)

    def pruner_for(self, cfg: RunConfig) -> str:
        """The pruner of a study: ``study.pruner``, or by default median, except none on a plateau task (copy)."""
        if not self.searching:
            return "none"  # a fixed point is a result, never pruned
        return self.study.pruner or ("none" if TASKS[cfg.task.name].plateau else "median")

    def packs(self, seeds: list[int], cell: str, device: str) -> list[list[int]]:
        """How a point's seeds are trained: all in one packed run, or one run each (searched, pre-screened, not packing,
        or a cell and device where packing measured slower: CellSpec.packed)."""
        if self.study.pack and not self.searching and not self.study.prescreen and CELLS[cell].packs(device):
            return [list(seeds)]
        return [[seed] for seed in seeds]

    @property
    def target(self) -> int:
        """Finished trials per study: ``study.trials`` when searching, else one (a second would repeat the same runs)."""
        return self.study.trials if self.searching else 1

    def base(self) -> RunConfig:
        """The run defaults of this experiment."""
        fields = {k: getattr(self, k) for k in RunDefaults.model_fields}
        return RunConfig(experiment=self.name, **fields)

    def bases(self) -> list[tuple[str, str, RunConfig]]:
        """Each row x grid point before the families: (its label, its row, its config)."""
        base = self.base()
        keys = list(self.grid)
        out = []
        for row in self.rows or [{}]:
            row = dict(row)
            label = row.pop("name", "")
            for values in itertools.product(*(self.grid[k] for k in keys)):
                setting = ",".join(f"{k}={v}" for k, v in zip(keys, values))
                out.append(
                    ("/".join(p for p in (label, setting) if p), label, apply_overrides(base, {**row, **dict(zip(keys, values))}))
                )
        return out

    def points(self) -> list[GridPoint]:
        """Every line of the grid at the experiment's T: row x grid point x family x axis value (the stages place
        each at its own T and lr: ``rnnstudy.study.stages``).

        A family applies only on the cells it names; a family key given a list of values is the family's axis,
        one point per value.
        """
        families = self.families or {"": {}}
        out = []
        for key, label, cfg in self.bases():
            for family, spec in families.items():
                spec = dict(spec)
                cells = spec.pop("cells", None)
                if cells is not None and cfg.model.cell not in cells:
                    continue
                axis = next((k for k, v in spec.items() if isinstance(v, list)), "")
                for value in spec[axis] if axis else [None]:
                    fixed = {**spec, axis: value} if axis else spec
                    out.append(GridPoint(self.name, apply_overrides(cfg, fixed), family, label, axis, value, base=key))
        return out

    @model_validator(mode="after")
    def _points_valid(self) -> Experiment:
        for key in itertools.chain(self.grid, map(param_path, self.search)):
            check_path(key)
        for row in self.rows:
            for key in row:
                if key != "name":
                    check_path(key)
        for name, spec in self.families.items():
            for key in spec:
                if key != "cells" and not key.startswith("init."):
                    raise ValueError(f"families.{name}.{key}: a family sets init.* keys (and `cells`), nothing else")
                if key != "cells":
                    check_path(key)
        searched = {param_path(k): spec for k, spec in self.search.items()}
        for key, spec in self.search.items():
            for cond, wanted in spec.when.items():
                check_when(f"search.{key}.when.{cond}", cond, wanted, searched.get(cond))
        for name, spec in self.families.items():
            lists = [k for k, v in spec.items() if isinstance(v, list) and k != "cells"]
            if len(lists) > 1:
                raise ValueError(
                    f"families.{name}: {', '.join(lists)} are all lists; allowed: one axis (list of values) per family"
                )
        if not self.searching and "trials" in self.study.model_fields_set and self.study.trials != 1:
            raise ValueError(
                f"study.trials = {self.study.trials}: nothing is searched, a second trial would repeat the same runs; allowed: 1"
            )
        if self.T_search and "task.T" in self.grid:
            raise ValueError("grid.task.T: T_search chooses T; allowed: either grid.task.T or T_search, not both")
        if self.T_search and (shared := sorted(set(self.T_search.bracket_seeds) & set(self.seeds))):
            raise ValueError(
                f"T_search.bracket_seeds: {shared} are also in seeds; allowed: seeds the search does not run (new ones)"
            )
        if self.T_search and self.searching:
            raise ValueError("search: a T search compares fixed points; allowed: no search (put init values on the families)")
        if self.calibrate and ("train.lr" in self.grid or "train.lr" in map(param_path, self.search)):
            raise ValueError("calibrate: the lr is calibrated; allowed: no train.lr in grid or search")
        points = self.points()
        if self.calibrate and isinstance(self.calibrate.T, dict):
            cells = sorted({p.cfg.model.cell for p in points})
            if missing := [c for c in cells if c not in self.calibrate.T]:
                raise ValueError(
                    f"calibrate.T has no T for {', '.join(missing)}; allowed: one T per cell of the grid ({', '.join(cells)})"
                )
        if not points:
            raise ValueError("grid, families and rows select no study at all (check the families' `cells`)")
        if len({p.study for p in points}) != len(points):
            raise ValueError("two grid points map to the same study; give rows distinct `name`s")
        warmup = self.study.warmup_validations * self.train.val_every
        plateaus = sorted({p.cfg.task.name for p in points if TASKS[p.cfg.task.name].plateau})
        if self.searching and self.study.pruner not in (None, "none") and plateaus:
            if self.study.pruner == "hyperband" or warmup < self.train.steps / 2:
                raise ValueError(
                    f"study.pruner = {self.study.pruner!r}: {', '.join(plateaus)} runs sit on the memoryless plateau for "
                    f"thousands of steps, and this pruner could stop them at step {warmup}; allowed: pruner none (the "
                    f"default there), or median with warmup_validations x train.val_every >= train.steps / 2 = "
                    f"{self.train.steps // 2}"
                )
        for point in points:
            for key, spec in self.search.items():
                if not param_applies(key, spec, lambda k, cfg=point.cfg: ANY if k in searched else current(cfg, k)):
                    continue
                values = spec.choices if isinstance(spec, CategoricalParam) else [spec.low, spec.high]
                for value in values:
                    try_override(point.cfg, {param_path(key): value}, f"search.{key}")
        return self


def load_experiment(path: str | Path, overrides: list[str] = ()) -> Experiment:
    """Read and validate an experiment YAML, with dotted overrides (``study.trials=50``)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"experiment file {str(path)!r} is a directory; give a .yaml file")
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} not found")
    try:
        data = read_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment file is a mapping of keys")
    data.setdefault("name", path.stem)
    data = merge(data, nest(parse_overrides(list(overrides), Experiment)))
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: " + format_validation_error(err, Experiment)) from None


def run_config(exp: Experiment | None, overrides: list[str] | None = None) -> RunConfig:
    """The run config of a loaded experiment (or the defaults) with command-line overrides."""
    base = exp.base() if exp is not None else RunConfig()
    return apply_overrides(base, parse_overrides(overrides or []))


def load_run_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """The run config of an experiment file (or the defaults) with command-line overrides."""
    return run_config(load_experiment(path) if path is not None else None, overrides)
