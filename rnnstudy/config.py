"""Typed, validated configuration: one training run (`RunConfig`) and an experiment file.

An experiment YAML holds the run defaults (``model``, ``task``, ``init``, ``train``, ``probe``,
``wandb``, ``seed``, ``out``) plus what the sweep needs (``grid``, ``rows``, ``seeds``,
``search``, ``study``). Command-line overrides are dotted keys: ``model.hidden_size=64``.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from rnnstudy import inits
from rnnstudy.tasks import TASKS

Cell = Literal["rnn_tanh", "rnn_relu", "lstm", "gru"]


class ConfigError(ValueError):
    """A bad configuration; the message names the key, the value and what is allowed."""


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _choice(value: str, allowed: dict | tuple, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(allowed))}")
    return value


class ModelConfig(Strict):
    """The network: cell type and size."""

    cell: Cell = "lstm"
    hidden_size: PositiveInt = 128
    num_layers: PositiveInt = 1


class TaskConfig(Strict):
    """Which task, its delay/length ``T`` and the fixed validation set."""

    name: str = "copy"
    T: PositiveInt = 100
    val_size: PositiveInt = 1024
    val_seed: int = 2_718_281
    solved_threshold: float | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _choice(v, TASKS, "task")

    @model_validator(mode="after")
    def _long_enough(self) -> TaskConfig:
        need = TASKS[self.name].min_T
        if self.T < need:
            raise ValueError(f"T = {self.T}: the {self.name} task needs T >= {need}")
        return self


class InitConfig(Strict):
    """Initialisation: input, recurrent and bias schemes and their parameters."""

    recurrent: str = "default"
    input: str = "default"
    bias: str = "default"
    gain: PositiveFloat = 1.0
    scale: PositiveFloat = 1.0
    rho: PositiveFloat = 1.0
    input_gain: PositiveFloat = 1.0
    forget_bias: float = 1.0
    chrono_tmax: PositiveFloat | None = None

    @field_validator("recurrent")
    @classmethod
    def _recurrent(cls, v: str) -> str:
        return _choice(v, inits.RECURRENT, "recurrent init")

    @field_validator("input")
    @classmethod
    def _input(cls, v: str) -> str:
        return _choice(v, inits.INPUT, "input init")

    @field_validator("bias")
    @classmethod
    def _bias(cls, v: str) -> str:
        return _choice(v, inits.BIAS, "bias init")


class TrainConfig(Strict):
    """Optimiser, budget and validation cadence."""

    optimizer: Literal["rmsprop", "adam", "sgd"] = "rmsprop"
    lr: PositiveFloat = 1e-3
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.9
    momentum: NonNegativeFloat = 0.0
    clip: PositiveFloat | None = 1.0
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 128
    val_every: PositiveInt = 100
    log_every: PositiveInt = 10
    early_stop: bool = False
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    precision: Literal["32", "64"] = "32"
    progress: bool = True


class ProbeConfig(Strict):
    """Gradient-flow probe: cadence, horizon threshold, time resolution."""

    enabled: bool = True
    every: PositiveInt = 100
    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    chunk: PositiveInt = 1
    percentiles: list[Annotated[float, Field(ge=0, le=100)]] = []


class WandbConfig(Strict):
    """Weights & Biases: offline unless ``online`` is chosen; ``disabled`` writes nothing."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str | None = None
    entity: str | None = None
    tags: list[str] = []


class RunConfig(Strict):
    """Everything one training run needs."""

    experiment: str = "default"
    seed: int = 0
    out: Path = Path("runs")
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    init: InitConfig = InitConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
    wandb: WandbConfig = WandbConfig()

    @model_validator(mode="after")
    def _bias_fits_cell(self) -> RunConfig:
        cells = inits.BIAS_CELLS.get(self.init.bias)
        if cells and self.model.cell not in cells:
            raise ValueError(f"init.bias = {self.init.bias!r} needs model.cell in {', '.join(cells)}, got {self.model.cell!r}")
        if self.init.bias == "chrono" and self.chrono_tmax <= 2:
            raise ValueError(f"init.chrono_tmax = {self.chrono_tmax}: chrono needs T_max > 2")
        return self

    @property
    def chrono_tmax(self) -> float:
        """T_max for chrono: ``init.chrono_tmax`` or the task's sequence length."""
        if self.init.chrono_tmax is not None:
            return self.init.chrono_tmax
        task = TASKS[self.task.name](self.task.T)
        return float(task.seq_len)


class FloatParam(Strict):
    """A float search dimension; ``log`` samples on a log scale."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    when: dict[str, Any] = {}

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low = {self.low} must be below high = {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got low = {self.low}")
        return self


class IntParam(FloatParam):
    """An integer search dimension."""

    type: Literal["int"]  # type: ignore[assignment]
    low: int
    high: int


class CategoricalParam(Strict):
    """A categorical search dimension."""

    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1)
    when: dict[str, Any] = {}


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class StudyConfig(Strict):
    """Optuna settings shared by every study of an experiment."""

    trials: PositiveInt = 20
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(default=5, ge=0)
    warmup_steps: int = Field(default=1, ge=0)
    heartbeat_s: PositiveInt = 30


class Experiment(Strict):
    """An experiment file: run defaults, the grid of studies, the search space, the budget."""

    name: str
    seed: int = 0
    out: Path = Path("runs")
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    init: InitConfig = InitConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
    wandb: WandbConfig = WandbConfig()
    description: str = ""
    grid: dict[str, list[Any]] = {}
    rows: list[dict[str, Any]] = []
    seeds: list[int] = Field(default=[0], min_length=1)
    search: dict[str, Param] = {}
    study: StudyConfig = StudyConfig()

    def base(self) -> RunConfig:
        """The run defaults of this experiment."""
        fields = {k: getattr(self, k) for k in RunConfig.model_fields if k != "experiment"}
        return RunConfig(experiment=self.name, **fields)

    def cells(self) -> list[tuple[str, dict[str, Any]]]:
        """The grid cells: (row label, dotted overrides) for every row x grid point."""
        rows = self.rows or [{}]
        keys = list(self.grid)
        out = []
        for row in rows:
            row = dict(row)
            label = row.pop("name", "")
            for values in itertools.product(*(self.grid[k] for k in keys)):
                out.append((label, {**row, **dict(zip(keys, values))}))
        return out

    @model_validator(mode="after")
    def _cells_valid(self) -> Experiment:
        for key in itertools.chain(self.grid, map(param_path, self.search)):
            _check_path(key)
        for row in self.rows:
            for key in row:
                if key != "name":
                    _check_path(key)
        searched = {param_path(k) for k in self.search}
        base = self.base()
        for _, overrides in self.cells():
            cell = apply_overrides(base, overrides)
            for key, spec in self.search.items():
                if not _may_apply(spec.when, cell, searched):
                    continue
                values = spec.choices if isinstance(spec, CategoricalParam) else [spec.low, spec.high]
                for value in values:
                    _try_override(cell, {param_path(key): value}, f"search.{key}")
        return self


def param_path(key: str) -> str:
    """The config path of a search key: ``init.bias@lstm`` -> ``init.bias``.

    A suffix lets one experiment give a parameter different choices per cell (with ``when``).
    """
    return key.split("@", 1)[0]


def _may_apply(when: dict[str, Any], cfg: RunConfig, searched: set[str]) -> bool:
    """Whether a conditional parameter can apply to a grid cell (conditions on searched keys may)."""
    for key, wanted in when.items():
        if key in searched:
            continue
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if not (value in wanted if isinstance(wanted, list) else value == wanted):
            return False
    return True


def _check_path(dotted: str, root: type[BaseModel] | None = None) -> None:
    model: type[BaseModel] = root or RunConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part not in model.model_fields:
            allowed = ", ".join(model.model_fields)
            raise ValueError(f"unknown key {dotted!r}; allowed at this level: {allowed}")
        annotation = model.model_fields[part].annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise ValueError(f"unknown key {dotted!r}: {'.'.join(parts[: i + 1])} has no sub-keys")
            model = annotation


def _try_override(cfg: RunConfig, overrides: dict[str, Any], where: str) -> RunConfig:
    try:
        return apply_overrides(cfg, overrides)
    except ConfigError as err:
        raise ValueError(f"{where}: {err}") from None


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: {part} is not a section")
        node[leaf] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def format_validation_error(err: ValidationError, root: type[BaseModel]) -> str:
    """One line per problem: dotted key, the bad value, and what is allowed."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc) or "(config)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = _section(root, loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "?"
            msg = f"unknown key; allowed: {allowed}"
        value = e.get("input")
        shown = "" if isinstance(value, dict) or e["type"] == "missing" else f" = {value!r}"
        lines.append(f"{key}{shown}: {msg}")
    return "\n".join(lines)


def _section(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    model = root
    for part in loc:
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """A new validated config with dotted overrides applied."""
    data = _merge(cfg.model_dump(), _nest(overrides))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, RunConfig)) from None


def parse_overrides(items: list[str], root: type[BaseModel] | None = None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r}: overrides are key=value, e.g. model.hidden_size=64")
        try:
            _check_path(key, root)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        out[key] = _yaml_scalar(raw)
    return out


def _yaml_scalar(raw: str) -> Any:
    return _as_number(yaml.safe_load(raw)) if raw else ""


def _as_number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; take such strings as the numbers they are."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def load_experiment(path: str | Path, overrides: list[str] = ()) -> Experiment:
    """Read and validate an experiment YAML, with dotted overrides (``study.trials=50``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment file is a mapping of keys")
    data.setdefault("name", path.stem)
    _fix_yaml_floats(data)
    data = _merge(data, _nest(parse_overrides(list(overrides), Experiment)))
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}:\n" + format_validation_error(err, Experiment)) from None


def _fix_yaml_floats(node: Any) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            node[k] = v if k in ("name", "description") else _as_number(v)
            _fix_yaml_floats(node[k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            node[i] = _as_number(v)
            _fix_yaml_floats(node[i])


def load_run_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """The run config of an experiment file (or the defaults) with command-line overrides."""
    base = load_experiment(path).base() if path is not None else RunConfig()
    return apply_overrides(base, parse_overrides(overrides or []))
