"""Typed, validated configuration of one training run (`RunConfig`) and its sections.

Every section forbids unknown keys and non-finite numbers; a bad value is a :class:`~rnnstudy.errors.ConfigError`
whose message names the key, the value and what is allowed. The experiment file
(`rnnstudy.study.experiment`) holds the same sections as run defaults; dotted overrides and YAML
loading live in `rnnstudy.run.overrides`.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rnnstudy.model import inits
from rnnstudy.model.cells import CELLS, INJECTABLE, Cell
from rnnstudy.model.tasks import TASKS, fixed_T

#: Validations per doubling of the step count on ``train.val_from``'s ladder.
LADDER_PER_DOUBLING = 4
#: Config fields added after runs were recorded: left out of a run's key while at their default, so those runs keep
#: their keys.
LATER_FIELDS: dict[str, tuple[str, ...]] = {
    "train": ("val_from",), "init": ("r_min", "r_max", "max_phase"), "model": ("block",),
    "probe": ("sensitivity",), "wandb": ("group", "job_type", "checkpoint")}  # fmt: skip

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
    """The recurrent cell (tanh or ReLU vanilla RNN, LSTM, GRU, minGRU, LRU)."""
    hidden_size: PositiveInt = 128
    """Units per layer."""
    num_layers: PositiveInt = 1
    """Stacked recurrent layers (each probed separately)."""
    block: Literal["none", "glu"] = "none"
    """After each recurrent layer: nothing, or the LRU paper's position-wise residual block s + GLU(GELU(W s)), which a
    stack of linear recurrences (the LRU) needs to compute a product such as adding's (the probe still reads s)."""


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

    @model_validator(mode="before")
    @classmethod
    def _fixed_length(cls, data: Any) -> Any:
        """A task with a fixed length takes it when T is not given."""
        fixed = fixed_T(data) if isinstance(data, dict) else None
        return {**data, "T": fixed} if fixed is not None else data

    @model_validator(mode="after")
    def _long_enough(self) -> TaskConfig:
        TASKS[self.name].check_T(self.T)
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
    r_min: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Smallest |lambda| of the LRU's ring scheme."""
    r_max: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Largest |lambda| of the LRU's ring scheme."""
    max_phase: PositiveFloat = 2 * math.pi
    """Largest phase of the LRU's ring scheme (radians)."""

    @field_validator("recurrent", "input", "bias")
    @classmethod
    def _registered(cls, v: str, info: ValidationInfo) -> str:
        return _choice(v, inits.KINDS[info.field_name], f"{info.field_name} init")


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
    val_from: PositiveInt | None = None
    """Also validate on a geometric ladder from this step, 4 per doubling, until its spacing reaches val_every (null: none)."""
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

    def ladder(self) -> list[int]:
        """The extra validation steps of ``val_from``'s geometric ladder, until its spacing reaches ``val_every`` (those
        that fall on a multiple of ``val_every`` are validated anyway): a solve in that stretch is seen within a
        factor 2^(1/4) of its step instead of within one validation interval."""
        if self.val_from is None:
            return []
        ratio = 2 ** (1 / LADDER_PER_DOUBLING)
        steps, k = set(), 0
        while (step := round(self.val_from * ratio**k)) < self.steps and step * (ratio - 1) < self.val_every:
            steps.add(step)
            k += 1
        return sorted(s for s in steps if s % self.val_every)


class ProbeConfig(Strict):
    """Gradient-flow probe: cadence, horizon threshold, time resolution."""

    enabled: bool = True
    """Measure gradient-flow profiles during training."""
    every: PositiveInt = 100
    """Probe at step 0, every this many steps, and at the run's last validation (the state it reports)."""
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
    sensitivity: bool = False
    """At every probe also measure the parameter sensitivity s_t = |dL/dtheta at step t| (rows of state theta beside
    g_t; each costs about 2 to 11 plain training steps, benchmarks/RESULTS.md)."""


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
    group: str | None = None
    """W&B group of every run (null: the run's study)."""
    job_type: str | None = None
    """W&B job type of every run (null: its stage, train, calibration or bracket, so stages filter apart)."""
    checkpoint: bool = False
    """Also put the last checkpoint in the run's W&B record artifact (a packed run's is its pack's, all members in one file)."""


class RunDefaults(Strict):
    """The sections of one training run, shared by a run config and an experiment file (its run defaults)."""

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


class RunConfig(RunDefaults):
    """Everything one training run needs."""

    experiment: Name = "default"
    """The experiment's name: W&B project and results folder."""

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        for kind, registry in inits.KINDS.items():
            name = getattr(self.init, kind)
            cells = registry[name].cells
            if cells and self.model.cell not in cells:
                raise ValueError(f"init.{kind} = {name!r} needs model.cell in {', '.join(cells)}, got {self.model.cell!r}")
        multiple = CELLS[self.model.cell].hidden_multiple
        if self.model.hidden_size % multiple:
            raise ValueError(f"model.hidden_size = {self.model.hidden_size}: the {self.model.cell} needs a multiple of "
                             f"{multiple}; allowed: {multiple}, {2 * multiple}, ...")  # fmt: skip
        if self.init.r_min >= self.init.r_max:
            raise ValueError(f"init.r_min = {self.init.r_min}: the ring needs r_min < r_max = {self.init.r_max}")
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
