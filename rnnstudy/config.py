"""Typed, validated configuration: one training run (`RunConfig`) and an experiment file.

An experiment YAML holds the run defaults (``model``, ``task``, ``init``, ``train``, ``probe``,
``wandb``, ``seed``, ``out``) plus what the sweep needs (``grid``, ``rows``, ``seeds``,
``search``, ``study``). Command-line overrides are dotted keys: ``model.hidden_size=64``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
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
from rnnstudy.models import INJECTABLE
from rnnstudy.tasks import TASKS

Cell = Literal["rnn_tanh", "rnn_relu", "lstm", "gru"]


class ConfigError(ValueError):
    """A bad configuration; the message names the key, the value and what is allowed."""


class Strict(BaseModel):
    """Base for config sections: unknown keys and non-finite numbers are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, use_attribute_docstrings=True)


#: Seeds Lightning and torch accept: Lightning's seed_everything takes 0 .. 2**32-1.
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(
            "names a folder under the results root; allowed: up to 100 letters, digits, '_', '.', '-', not starting with '.'"
        )
    return value


#: Experiment and family names become folder and study names: no path separators, no leading dot.
Name = Annotated[str, AfterValidator(_name)]
#: The largest activation memory one batch may need; beyond it a run could only end in an allocator error.
MAX_BATCH_BYTES = 64 * 2**30


def _results_root(path: Path) -> Path:
    """A results root the harness can write into: not a file, and its nearest existing folder writable (nothing is created)."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file; give a folder for the results")
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{str(path)!r}: cannot write under {str(existing)!r}")
    return path


ResultsRoot = Annotated[Path, AfterValidator(_results_root)]


def _choice(value: str, allowed: dict | tuple, what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(sorted(allowed))}")
    return value


class ModelConfig(Strict):
    """The network: cell type and size."""

    cell: Cell = "lstm"
    """The recurrent cell (tanh or ReLU vanilla RNN, LSTM, GRU)."""
    hidden_size: PositiveInt = 128
    """Units per layer."""
    num_layers: PositiveInt = 1
    """Stacked recurrent layers (each probed separately)."""


class TaskConfig(Strict):
    """Which task, its delay/length ``T`` and the fixed validation set."""

    name: str = "copy"
    """The task (a registered task name)."""
    T: PositiveInt = 100
    """Copy: the delay; adding: the sequence length (the digits tasks: fixed at 64)."""
    val_size: PositiveInt = 1024
    """Sequences in the fixed validation set."""
    val_seed: Annotated[int, Field(ge=0, le=2**64 - 1)] = 2_718_281
    """Seed of the validation set (the same for every run of a task and T)."""
    solved_threshold: float | None = None
    """The task's solved bar (copy: recall accuracy, 0.99; adding: MSE, 0.01; null: the task's own)."""

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _choice(v, TASKS, "task")

    @model_validator(mode="after")
    def _long_enough(self) -> TaskConfig:
        task = TASKS[self.name]
        if task.fixed_T is not None and self.T != task.fixed_T:
            raise ValueError(f"task.T = {self.T}: the {self.name} task has a fixed length; allowed: {task.fixed_T}")
        if self.T < task.min_T:
            raise ValueError(f"task.T = {self.T}: the {self.name} task needs T >= {task.min_T}")
        return self


class InitConfig(Strict):
    """Initialisation: input, recurrent and bias schemes and their parameters."""

    recurrent: str = "default"
    """Scheme for the recurrent weights W_hh, per gate block."""
    input: str = "default"
    """Scheme for the input weights W_ih, per gate block."""
    bias: str = "default"
    """Scheme for the biases (written to bias_ih; bias_hh zeroed unless default)."""
    gain: PositiveFloat = 1.0
    """Gain of orthogonal, xavier and kaiming recurrent weights."""
    scale: PositiveFloat = 1.0
    """Scale of the identity (IRNN) recurrent weights."""
    rho: PositiveFloat = 1.0
    """Spectral radius of the spectral recurrent weights."""
    input_gain: PositiveFloat = 1.0
    """Gain (std for normal) of the xavier, orthogonal and normal input weights."""
    forget_bias: float = 1.0
    """LSTM forget-gate bias of the forget scheme."""
    chrono_tmax: PositiveFloat | None = None
    """T_max of the chrono scheme (null: the sequence length)."""

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
    """The optimiser."""
    lr: PositiveFloat = 1e-3
    """Learning rate."""
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.9
    """RMSprop smoothing constant."""
    momentum: NonNegativeFloat = 0.0
    """Momentum (RMSprop, SGD)."""
    clip: PositiveFloat | None = 1.0
    """Gradient-norm clipping (null: none)."""
    steps: PositiveInt = 1000
    """The step budget."""
    batch_size: PositiveInt = 128
    """Training sequences per step."""
    val_every: PositiveInt = 100
    """Steps between validations (and pruning reports)."""
    log_every: PositiveInt = 10
    """Steps between logged training metrics."""
    early_stop: bool = False
    """Stop at the first validation that meets the solved bar."""
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    """Where to train (auto: the GPU when there is one)."""
    devices: Annotated[int, Field(ge=0)] | None = None
    """Which GPU index a single run uses (null: the first visible; sweeps pin GPUs with --gpus)."""
    precision: Literal[32, 64] = 32
    """Floating-point bits (64: float64, for the far tail of gradient profiles)."""
    tf32: bool = False
    """Let cuBLAS and cuDNN use TF32 tensor cores (10-bit mantissa); off: full float32 in both."""
    deterministic: bool = False
    """Deterministic cuDNN/CUDA algorithms (bit-reproducible GPU runs, usually slower)."""
    checkpoint: bool = True
    """Keep the last checkpoint (after each validation) so a killed run resumes when rerun or retried."""
    progress: bool = True
    """Show a progress bar over the step budget."""


class ProbeConfig(Strict):
    """Gradient-flow probe: cadence, horizon threshold, time resolution."""

    enabled: bool = True
    """Measure gradient-flow profiles during training."""
    every: PositiveInt = 100
    """Probe at step 0, every this many steps, and the last step."""
    loss: Literal["answer", "training"] = "answer"
    """Whose gradient: the loss on the answer steps, or the whole training loss."""
    method: Literal["auto", "chunked", "fused"] = "auto"
    """How: fused (one call per layer, zero perturbation injected; not the GRU), chunked, or auto (CPU: chunked; CUDA: fused)."""
    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    """Horizon threshold: the largest lag whose g_t is at least eps x max g."""
    chunk: PositiveInt = 1
    """Chunked method: time steps per chunk (exact at chunk ends; 1: every step)."""
    percentiles: list[Annotated[float, Field(ge=0, le=100)]] = []
    """Also store these percentiles of the per-sample norms."""


class WandbConfig(Strict):
    """Weights & Biases: offline unless ``online`` is chosen; ``disabled`` writes nothing."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    """offline (default: files under each run), online (needs a key), disabled (nothing written)."""
    project: str | None = None
    """W&B project (null: the experiment name)."""
    entity: str | None = None
    """W&B entity (null: the key's default)."""
    tags: list[str] = []
    """Extra tags on every run."""


class RunConfig(Strict):
    """Everything one training run needs."""

    experiment: Name = "default"
    """The experiment's name: W&B project and results folder."""
    seed: Seed = 0
    """Seed of the weights and the training data stream."""
    out: ResultsRoot = Path("runs")
    """The results root."""
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    init: InitConfig = InitConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
    wandb: WandbConfig = WandbConfig()

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        for kind, registry in inits.KINDS.items():
            name = getattr(self.init, kind)
            cells = registry[name].cells
            if cells and self.model.cell not in cells:
                raise ValueError(f"init.{kind} = {name!r} needs model.cell in {', '.join(cells)}, got {self.model.cell!r}")
        if self.init.bias == "chrono" and self.chrono_tmax <= 2:
            raise ValueError(f"init.chrono_tmax = {self.chrono_tmax}: chrono needs T_max > 2")
        if self.probe.method == "fused" and self.model.cell not in INJECTABLE:
            raise ValueError(
                f"probe.method = 'fused': exact only for {', '.join(INJECTABLE)}, not {self.model.cell}; allowed: auto, chunked"
            )
        seq_len = TASKS[self.task.name](self.task.T).seq_len
        if self.probe.chunk > seq_len:
            raise ValueError(
                f"probe.chunk = {self.probe.chunk}: larger than the sequence ({seq_len} steps); allowed: 1 .. {seq_len}"
            )
        batch = max(self.train.batch_size, self.task.val_size)
        need = seq_len * batch * self.model.hidden_size * self.model.num_layers * 4 * (self.train.precision // 8) * 2
        if need > MAX_BATCH_BYTES:
            raise ValueError(
                f"task.T = {self.task.T}: one batch would need about {need / 2**30:.3g} GiB of activations "
                f"(sequence x batch x hidden x layers); allowed: up to {MAX_BATCH_BYTES // 2**30} GiB"
            )
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


class Experiment(Strict):
    """An experiment file: run defaults, the grid of studies, the search space, the budget."""

    name: Name
    seed: Seed = 0
    out: ResultsRoot = Path("runs")
    model: ModelConfig = ModelConfig()
    task: TaskConfig = TaskConfig()
    init: InitConfig = InitConfig()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
    wandb: WandbConfig = WandbConfig()
    description: str = ""
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    families: dict[Name, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    seeds: list[Seed] = Field(default=[0], min_length=1)
    search: dict[str, Param] = {}
    study: StudyConfig = StudyConfig()

    def base(self) -> RunConfig:
        """The run defaults of this experiment."""
        fields = {k: getattr(self, k) for k in RunConfig.model_fields if k != "experiment"}
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
            _check_path(key)
        for row in self.rows:
            for key in row:
                if key != "name":
                    _check_path(key)
        for name, spec in self.families.items():
            for key in spec:
                if key != "cells" and not key.startswith("init."):
                    raise ValueError(f"families.{name}.{key}: a family sets init.* keys (and `cells`), nothing else")
                if key != "cells":
                    _check_path(key)
        searched = {param_path(k): spec for k, spec in self.search.items()}
        for key, spec in self.search.items():
            for cond, wanted in spec.when.items():
                _check_when(f"search.{key}.when.{cond}", cond, wanted, searched.get(cond))
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
                    _try_override(point.cfg, {param_path(key): value}, f"search.{key}")
        return self


def param_path(key: str) -> str:
    """The config path of a search key: ``init.bias@lstm`` -> ``init.bias``.

    A suffix lets one experiment give a parameter different choices per cell (with ``when``).
    """
    return key.split("@", 1)[0]


#: Stands for a value the search has not chosen yet: it may match anything.
ANY = object()


def current(cfg: RunConfig, dotted: str) -> Any:
    """The value at a dotted key of a run config."""
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _matches(value: Any, wanted: Any) -> bool:
    return value is ANY or (value in wanted if isinstance(wanted, list) else value == wanted)


def param_applies(key: str, spec: FloatParam | CategoricalParam, value_of: Callable[[str], Any]) -> bool:
    """Whether a search parameter is sampled: its ``when`` holds and, for an ``init.*`` parameter, a chosen scheme reads it.

    ``value_of(dotted)`` gives the value so far (the trial's choice or the study's config, or ``ANY``).
    """
    if not all(_matches(value_of(k), wanted) for k, wanted in spec.when.items()):
        return False
    name = param_path(key).removeprefix("init.")
    if not param_path(key).startswith("init.") or name not in inits.tunable_params():
        return True
    schemes = {kind: value_of(f"init.{kind}") for kind in inits.KINDS}
    return any(s is ANY or name in registry[s].params for s, registry in zip(schemes.values(), inits.KINDS.values()))


def _check_when(where: str, key: str, wanted: Any, searched: FloatParam | CategoricalParam | None) -> None:
    try:
        _check_path(key)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    values = wanted if isinstance(wanted, list) else [wanted]
    if isinstance(searched, CategoricalParam):
        unknown = [v for v in values if v not in searched.choices]
        if unknown:
            allowed = ", ".join(map(str, searched.choices))
            raise ValueError(f"{where} = {unknown[0]!r}: never sampled; allowed: {allowed}")
        return
    for value in values:
        _try_override(RunConfig(), {key: value}, where)


def _check_path(dotted: str, root: type[BaseModel] | None = None, leaf: bool = True) -> None:
    model: type[BaseModel] = root or RunConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if part not in model.model_fields:
            allowed = ", ".join(model.model_fields)
            raise ValueError(f"unknown key {dotted!r}; allowed at this level: {allowed}")
        annotation = model.model_fields[part].annotation
        section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if i < len(parts) - 1:
            if not section:
                raise ValueError(f"unknown key {dotted!r}: {'.'.join(parts[: i + 1])} has no sub-keys")
            model = annotation
        elif section and leaf:
            raise ValueError(
                f"{dotted!r} is a section, not a key; allowed: {', '.join(f'{dotted}.{k}' for k in annotation.model_fields)}"
            )


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
        lines.append(f"{key}{shown}: {msg}" if loc else msg)
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


class YamlLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2's numbers: ``1e-3`` is a float, a quoted ``"2024"`` stays a string."""


YamlLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """Parse YAML text with :class:`YamlLoader`."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(items: list[str], root: type[BaseModel] | None = None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are read as YAML scalars (``1e-3``, ``true``, ``[1,2]``)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r}: overrides are key=value, e.g. model.hidden_size=64")
        try:
            _check_path(key, root, leaf=False)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        out[key] = _yaml_scalar(raw)
    return out


def _yaml_scalar(raw: str) -> Any:
    try:
        return read_yaml(raw) if raw else ""
    except yaml.YAMLError:
        return raw


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
    data = _merge(data, _nest(parse_overrides(list(overrides), Experiment)))
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: " + format_validation_error(err, Experiment)) from None


def load_run_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """The run config of an experiment file (or the defaults) with command-line overrides."""
    base = load_experiment(path).base() if path is not None else RunConfig()
    return apply_overrides(base, parse_overrides(overrides or []))
