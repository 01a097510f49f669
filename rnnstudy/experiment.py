"""An experiment file: run defaults, the grid of studies (grid, families, rows), seeds, search space and budget.

Each grid point is one study (:class:`GridPoint`): its facts (experiment, cell, task, T, family,
row) are fields, stored with the Optuna study and every run of it, so nothing parses names.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from rnnstudy.config import ConfigError, Name, RunConfig, RunDefaults, Seed, Strict
from rnnstudy.overrides import (
    apply_overrides,
    check_path,
    format_validation_error,
    merge,
    nest,
    parse_overrides,
    read_yaml,
    try_override,
)
from rnnstudy.space import ANY, CategoricalParam, Param, check_when, current, param_applies, param_path


class StudyConfig(Strict):
    """Optuna settings shared by every study of an experiment."""

    trials: PositiveInt = 20
    """Finished trials per study (a rerun tops up to exactly this many)."""
    sampler: Literal["tpe", "random"] = "tpe"
    """Optuna sampler."""
    pruner: Literal["median", "hyperband", "none"] = "median"
    """Optuna pruner (reports at each validation, at the training step)."""
    startup_trials: int = Field(default=5, ge=0)
    """Trials before the sampler models and the median pruner prunes."""
    warmup_validations: int = Field(default=1, ge=0)
    """Validations of a trial before the median pruner may prune it."""
    prescreen: PositiveFloat | None = None
    """Prune at step 0 when the predicted memory length is below prescreen x T (null: off)."""
    heartbeat_s: PositiveInt = 30
    """Heartbeat of running trials; a trial silent for twice this is failed and retried."""


@dataclass(frozen=True)
class GridPoint:
    """One study of an experiment: its place on the grid (the facts) and its run config before the trial's parameters."""

    experiment: str
    cfg: RunConfig
    family: str = ""
    row: str = ""

    @property
    def study(self) -> str:
        """The study's name, for people (programs read :meth:`facts`)."""
        parts = [self.experiment, self.cfg.model.cell, self.cfg.task.name, f"T={self.cfg.task.T}", self.family, self.row]
        return "/".join(p for p in parts if p)

    def facts(self) -> dict[str, Any]:
        """What identifies the study, stored with the study and with every run of it."""
        c = self.cfg
        return {
            "experiment": self.experiment,
            "study": self.study,
            "cell": c.model.cell,
            "task": c.task.name,
            "T": c.task.T,
            "family": self.family,
            "row": self.row,
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

    def base(self) -> RunConfig:
        """The run defaults of this experiment."""
        fields = {k: getattr(self, k) for k in RunDefaults.model_fields}
        return RunConfig(experiment=self.name, **fields)

    def points(self) -> list[GridPoint]:
        """Every study: each row x grid point x initialisation family (a family only on the cells it names)."""
        base = self.base()
        keys = list(self.grid)
        families = self.families or {"": {}}
        out = []
        for row in self.rows or [{}]:
            row = dict(row)
            label = row.pop("name", "")
            for values in itertools.product(*(self.grid[k] for k in keys)):
                cfg = apply_overrides(base, {**row, **dict(zip(keys, values))})
                for family, spec in families.items():
                    spec = dict(spec)
                    cells = spec.pop("cells", None)
                    if cells is None or cfg.model.cell in cells:
                        out.append(GridPoint(self.name, apply_overrides(cfg, spec), family, label))
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
        points = self.points()
        if not points:
            raise ValueError("grid, families and rows select no study at all (check the families' `cells`)")
        if len({p.study for p in points}) != len(points):
            raise ValueError("two grid points map to the same study; give rows distinct `name`s")
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


def load_run_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """The run config of an experiment file (or the defaults) with command-line overrides."""
    base = load_experiment(path).base() if path is not None else RunConfig()
    return apply_overrides(base, parse_overrides(overrides or []))
