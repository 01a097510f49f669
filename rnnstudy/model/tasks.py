"""Synthetic long-memory tasks (copy, adding), generated on the device from a seeded generator.

Tensors are time-major: inputs ``(L, B, input_size)``; a task's targets keep the shape its
loss needs. A new task is one subclass of :class:`Task` decorated with :func:`register_task`.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from rnnstudy.lazy import LazyModule

if TYPE_CHECKING:
    from rnnstudy.run.config import RunConfig

torch = LazyModule("torch")  # the config path reads the task registry without paying for torch's import
F = LazyModule("torch.nn.functional")

TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Add a task class to the registry under its ``name``, once it declares every fact a task must (checked here, when
    the class is defined, so a task that lacks one fails at import and not in the middle of a sweep)."""
    missing = [attr for attr in REQUIRED if not hasattr(cls, attr)]
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing or abstract:
        raise TypeError(f"task {cls.__name__} must set {', '.join(missing + abstract)} (see rnnstudy.model.tasks.Task)")
    TASKS[cls.name] = cls
    return cls


def fixed_T(section: dict[str, Any]) -> int | None:
    """The T a task section takes on its own: it names a task of fixed length and gives no T (None otherwise)."""
    task = TASKS.get(section.get("name")) if "T" not in section else None
    return task.fixed_T if task is not None else None


def make_task(name: str, T: int, solved_threshold: float | None = None) -> Task:
    """Build a registered task for delay/length ``T``."""
    return TASKS[name](T, solved_threshold)


def build_task(cfg: RunConfig) -> Task:
    """The task a run's configuration names (name, T, solved bar)."""
    return make_task(cfg.task.name, cfg.task.T, cfg.task.solved_threshold)


class Batch(NamedTuple):
    """One batch: inputs ``x`` (L, B, C), targets ``y``, and the steps that carry the information ``(L, B)``."""

    x: torch.Tensor
    y: torch.Tensor
    informative: torch.Tensor


class Task(ABC):
    """A sequence task: how to sample it, score it, and what a memoryless model achieves."""

    name: ClassVar[str]
    input_size: ClassVar[int]
    output_size: ClassVar[int]
    min_T: ClassVar[int] = 1
    #: The one T a task allows (None: any T >= min_T).
    fixed_T: ClassVar[int | None] = None
    default_threshold: ClassVar[float]
    #: How many steps beyond T an informative input lies before the step that answers from it
    #: (copy: each symbol is recalled T + 10 steps after it is shown; adding: the first marker up to T - 1 steps, 0).
    recall_offset: ClassVar[int]
    #: Runs sit on the memoryless plateau for thousands of steps before they learn (no pruner may judge them early).
    plateau: ClassVar[bool] = False
    #: The memoryless baseline in words, as the report writes it (``baseline`` is the number).
    baseline_text: ClassVar[str]
    #: What T is for this task, in words.
    T_means: ClassVar[str]
    #: Whether the answer loss is the whole training loss (the probe then needs no backward of its own).
    answer_is_loss: ClassVar[bool] = False
    #: Name of the metric ``solved`` compares with the threshold and whether higher is better.
    solved_metric: ClassVar[str]
    solved_higher_is_better: ClassVar[bool]

    @classmethod
    def check_T(cls, T: int) -> None:
        """Raise ValueError (naming task.T and what is allowed) unless the task can run at this T."""
        if cls.fixed_T is not None and T != cls.fixed_T:
            raise ValueError(f"task.T = {T}: the {cls.name} task has a fixed length; allowed: {cls.fixed_T}")
        if T < cls.min_T:
            raise ValueError(f"task.T = {T}: the {cls.name} task needs T >= {cls.min_T}")

    def __init__(self, T: int, solved_threshold: float | None = None) -> None:
        self.check_T(T)
        self.T = T
        self.threshold = self.default_threshold if solved_threshold is None else solved_threshold

    @property
    @abstractmethod
    def seq_len(self) -> int:
        """Number of time steps in one input sequence."""

    @property
    @abstractmethod
    def baseline(self) -> float:
        """Loss of the best memoryless predictor (normalised loss 1.0)."""

    @abstractmethod
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Draw a batch on the generator's device."""

    def validation(self, size: int, generator: torch.Generator) -> Batch:
        """The fixed validation set (synthetic tasks: a batch from the validation seed's generator)."""
        return self.sample(size, generator)

    @property
    @abstractmethod
    def answer_steps(self) -> slice:
        """The time steps that carry the answer; the answer loss is taken there."""

    @abstractmethod
    def per_sample_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Loss of each sample ``(B,)``; the training loss is its mean."""

    @abstractmethod
    def per_sample_answer_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Loss of each sample on the answer steps only ``(B,)``: the loss whose gradient measures memory."""

    @abstractmethod
    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        """Scalar metrics beyond the loss (accuracies); tensors so nothing syncs."""

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Batch-mean loss."""
        return self.per_sample_loss(out, batch).mean()

    def solved(self, metrics: dict[str, float]) -> bool:
        """Whether validation metrics meet the task's success criterion."""
        value = metrics.get(self.solved_metric, math.nan)
        if self.solved_higher_is_better:
            return value >= self.threshold
        return value <= self.threshold


#: The class attributes a task has no default for: register_task checks them when the class is defined.
REQUIRED = tuple(name for name in Task.__annotations__ if not hasattr(Task, name) and not name.startswith("_"))


@register_task
class CopyTask(Task):
    """Copying memory (Arjovsky, Shah & Bengio 2016): recall 10 symbols after a delay T.

    Symbols 0-7 are data, 8 is blank, 9 is the delimiter. Input length T+20: 10 data
    symbols, T-1 blanks, the delimiter, 10 blanks. Target: T+10 blanks, then the symbols.
    """

    name = "copy"
    n_data = 8
    n_recall = 10
    blank = 8
    delimiter = 9
    input_size = 10
    output_size = 9
    default_threshold = 0.99
    recall_offset = n_recall
    plateau = True
    baseline_text = "10 ln 8 / (T+20), the cross-entropy of guessing each recalled symbol"
    T_means = "the delay between the last data symbol and the delimiter"
    solved_metric = "recall_accuracy"
    solved_higher_is_better = True

    @property
    def seq_len(self) -> int:
        return self.T + 2 * self.n_recall

    @property
    def baseline(self) -> float:
        return self.n_recall * math.log(self.n_data) / self.seq_len

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        device = generator.device
        L, n = self.seq_len, self.n_recall
        data = torch.randint(0, self.n_data, (n, batch_size), generator=generator, device=device)
        symbols = torch.full((L, batch_size), self.blank, dtype=torch.long, device=device)
        symbols[:n] = data
        symbols[self.T + n - 1] = self.delimiter
        y = torch.full((L, batch_size), self.blank, dtype=torch.long, device=device)
        y[L - n :] = data
        informative = torch.zeros(L, batch_size, dtype=torch.bool, device=device)
        informative[:n] = True
        x = F.one_hot(symbols, self.input_size).float()
        return Batch(x, y, informative)

    @property
    def answer_steps(self) -> slice:
        return slice(self.seq_len - self.n_recall, self.seq_len)

    def per_sample_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        ce = F.cross_entropy(out.permute(1, 2, 0), batch.y.T, reduction="none")
        return ce.mean(dim=1)

    def per_sample_answer_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        recall = self.answer_steps
        return self.per_sample_loss(out[recall], batch._replace(y=batch.y[recall]))

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        correct = (out.argmax(-1) == batch.y).float()
        return {
            "accuracy": correct.mean(),
            "recall_accuracy": correct[-self.n_recall :].mean(),
        }


@register_task
class AddingTask(Task):
    """Adding problem (Le et al. 2015; Arjovsky et al. 2016): sum the two marked values.

    Channel 0 holds U[0,1] values, channel 1 two markers, one in [0, T/2) and one in
    [T/2, T). The loss is the MSE of the last output against the marked sum.
    """

    name = "adding"
    recall_offset = 0
    answer_is_loss = True
    input_size = 2
    output_size = 1
    min_T = 2
    default_threshold = 0.01
    baseline_text = "1/6, the MSE of always answering the mean sum 1"
    T_means = "the sequence length; the first marker lies in its first half"
    solved_metric = "mse"
    solved_higher_is_better = False

    @property
    def seq_len(self) -> int:
        return self.T

    @property
    def baseline(self) -> float:
        return 1.0 / 6.0

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        device = generator.device
        T, half = self.T, self.T // 2
        values = torch.rand(T, batch_size, generator=generator, device=device)
        first = torch.randint(0, half, (batch_size,), generator=generator, device=device)
        second = torch.randint(half, T, (batch_size,), generator=generator, device=device)
        markers = torch.zeros(T, batch_size, device=device)
        cols = torch.arange(batch_size, device=device)
        markers[first, cols] = 1.0
        markers[second, cols] = 1.0
        y = values[first, cols] + values[second, cols]
        x = torch.stack([values, markers], dim=-1)
        return Batch(x, y, markers.bool())

    @property
    def answer_steps(self) -> slice:
        return slice(self.T - 1, self.T)

    def per_sample_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return (out[-1, :, 0] - batch.y) ** 2

    def per_sample_answer_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.per_sample_loss(out, batch)

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"mse": self.per_sample_loss(out, batch).mean()}


@functools.cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits (1797 images, pixels 0..16), read from the installed package."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.data, dtype=torch.float32) / 16.0, torch.tensor(data.target, dtype=torch.long)


@register_task
class DigitsTask(Task):
    """Pixel-by-pixel digits: an 8x8 digit read one pixel per step (T = 64), its class predicted at the last step.

    Images come from scikit-learn's bundled copy (no download). The train/validation split (80/20)
    is fixed by ``SPLIT_SEED``; training batches are drawn from the training images with the run's
    generator, the validation set is the validation images. Memoryless baseline: ln 10.
    """

    name = "digits"
    recall_offset = 0
    input_size = 1
    output_size = 10
    min_T = 64
    fixed_T: ClassVar[int | None] = 64
    default_threshold = 0.9
    baseline_text = "ln 10, the cross-entropy of guessing among 10 classes"
    T_means = "the 64 pixels, read one per step"
    solved_metric = "accuracy"
    solved_higher_is_better = True
    answer_is_loss = True
    SPLIT_SEED = 0
    VAL_FRACTION = 0.2

    @property
    def seq_len(self) -> int:
        return 64

    @property
    def baseline(self) -> float:
        return math.log(self.output_size)

    @property
    def answer_steps(self) -> slice:
        return slice(63, 64)

    def order(self) -> torch.Tensor:
        """The order in which pixels are read (row by row)."""
        return torch.arange(64)

    def split(self, validation: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed train or validation part of the bundled digits (a seeded split, the same for every run)."""
        images, labels = _digits()
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.SPLIT_SEED))
        cut = int(len(labels) * self.VAL_FRACTION)
        rows = perm[:cut] if validation else perm[cut:]
        return images[rows][:, self.order()], labels[rows]

    def _batch(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        x = images.T.unsqueeze(-1)  # (64, B, 1): one pixel per step
        return Batch(x, labels, torch.ones(64, len(labels), dtype=torch.bool, device=x.device))

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        images, labels = self.split(validation=False)
        device = generator.device
        rows = torch.randint(0, len(labels), (batch_size,), generator=generator, device=device)
        return self._batch(images.to(device)[rows], labels.to(device)[rows])

    def validation(self, size: int, generator: torch.Generator) -> Batch:
        images, labels = self.split(validation=True)
        return self._batch(images[:size].to(generator.device), labels[:size].to(generator.device))

    def per_sample_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(out[-1], batch.y, reduction="none")

    def per_sample_answer_loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.per_sample_loss(out, batch)

    def metrics(self, out: torch.Tensor, batch: Batch) -> dict[str, torch.Tensor]:
        return {"accuracy": (out[-1].argmax(-1) == batch.y).float().mean()}


@register_task
class PermutedDigitsTask(DigitsTask):
    """Pixel-by-pixel digits read in a fixed random order (``PERMUTATION_SEED``): local structure is spread over all 64 steps."""

    name = "digits_permuted"
    PERMUTATION_SEED = 0

    def order(self) -> torch.Tensor:
        return torch.randperm(64, generator=torch.Generator().manual_seed(self.PERMUTATION_SEED))
