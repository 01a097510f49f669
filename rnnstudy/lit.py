"""Lightning pieces: the training module, the on-device data stream, and a step progress bar."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from torch.utils.data import DataLoader, IterableDataset

from rnnstudy.config import RunConfig
from rnnstudy.device import uses_cuda
from rnnstudy.gradflow import GradFlowProbe, Profile, profile, resolve_method
from rnnstudy.models import initial_net
from rnnstudy.names import NORM_LOSS
from rnnstudy.tasks import Batch, Task

SEED_STREAM = 0x5EED  # offsets the data seed from the weight-init seed


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Sink(Protocol):
    """Where a run's numbers go (results store, W&B)."""

    def metrics(self, step: int, split: str, values: dict[str, float]) -> None: ...

    def profile(self, step: int, frame: pd.DataFrame, scalars: dict[str, float]) -> None: ...


class _Stream(IterableDataset):
    def __init__(self, task: Task, batch_size: int, generator: torch.Generator) -> None:
        self.task, self.batch_size, self.generator = task, batch_size, generator

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self.task.sample(self.batch_size, self.generator)


class _Fixed(IterableDataset):
    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[Batch]:
        yield self.batch


class TaskData(pl.LightningDataModule):
    """An endless stream of training batches and one fixed validation batch, both on the device.

    Training batches come from a generator seeded by the run seed; the validation set depends
    only on the task, ``T``, ``val_size`` and ``val_seed``, so every run sees the same one.
    """

    def __init__(self, cfg: RunConfig, task: Task) -> None:
        super().__init__()
        self.cfg, self.task = cfg, task
        self.resume_state: torch.Tensor | None = None

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        self.train_gen = torch.Generator(device=device).manual_seed(self.cfg.seed + SEED_STREAM)
        val_gen = torch.Generator(device=device).manual_seed(self.cfg.task.val_seed)
        self.val_batch = self.task.validation(self.cfg.task.val_size, val_gen)

    def train_dataloader(self) -> DataLoader:
        if self.resume_state is not None:
            self.train_gen.set_state(self.resume_state)
        return DataLoader(_Stream(self.task, self.cfg.train.batch_size, self.train_gen), batch_size=None)

    def state_dict(self) -> dict[str, Any]:
        """The training generator's state, saved in checkpoints (taken at the end of a validation period).

        Every period restarts the stream from the generator's current state (a batch prefetched past the
        period's end is dropped), so this state is exactly where the next period starts.
        """
        return {"generator": self.train_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the training stream exactly where the checkpoint left it."""
        self.resume_state = state.get("generator")

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Fixed(self.val_batch), batch_size=None)


class RecurrentModule(pl.LightningModule):
    """Trains a :class:`~rnnstudy.models.RecurrentNet` on a task; numbers go to ``sinks``, not ``self.log``.

    The store and W&B need every logged step at full precision, so metrics are emitted to sinks
    directly; ``self.log`` only feeds the progress bar. Callbacks (pruning) read ``last_val``.
    """

    def __init__(self, cfg: RunConfig, task: Task) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg, self.task = cfg, task
        self.net = initial_net(cfg, task)
        self.sinks: list[Sink] = []
        p = cfg.probe
        device = "cuda" if uses_cuda(cfg.train.accelerator) else "cpu"
        method = resolve_method(p.method, cfg.model.cell, device)
        self.probe = GradFlowProbe(p.every, cfg.train.steps - 1, p.chunk, p.loss, method) if p.enabled else None
        self.solved_at: int | None = None
        self.best: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        self._probed_at: int | None = None
        self._stopped: tuple[int, Batch] | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rnnstudy"] = {"best": self.best, "solved_at": self.solved_at, "last_val": self.last_val}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("rnnstudy", {})
        self.best, self.solved_at, self.last_val = saved.get("best", {}), saved.get("solved_at"), saved.get("last_val", {})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        if t.optimizer == "rmsprop":
            return torch.optim.RMSprop(self.parameters(), lr=t.lr, alpha=t.alpha, momentum=t.momentum)
        if t.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=t.lr)
        return torch.optim.SGD(self.parameters(), lr=t.lr, momentum=t.momentum)

    def emit(self, step: int, split: str, values: dict[str, float]) -> None:
        """Send scalar metrics to every sink."""
        for sink in self.sinks:
            sink.metrics(step, split, values)

    def emit_profile(self, step: int, frame: pd.DataFrame, scalars: dict[str, float]) -> None:
        """Send one gradient-flow profile to every sink."""
        for sink in self.sinks:
            sink.profile(step, frame, scalars)

    def _scalars(self, out: torch.Tensor, batch: Batch, loss: torch.Tensor) -> dict[str, float]:
        values = {k: float(v) for k, v in self.task.metrics(out, batch).items()}
        values["loss"] = float(loss)
        values[NORM_LOSS] = values["loss"] / self.task.baseline
        return values

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One step written out (Lightning's manual optimisation): the norm the clipping computes is the logged one."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        x = batch.x.to(self.dtype)
        step = self.global_step
        logged = step % self.cfg.train.log_every == 0 or step == self.trainer.max_steps - 1
        probing = self.probe is not None and self.probe.due(step)
        out = self.probe.forward(self.net, x) if probing else self.net(x)
        loss = self.task.loss(out, batch)
        if probing:
            self._emit(step, self.probe.measure(self.net, out, batch, self.task))
        if logged:
            with torch.no_grad():
                values = self._scalars(out, batch, loss)
            if not math.isfinite(values["loss"]):
                raise Diverged(f"training loss became {values['loss']} at step {step}")
            values["lr"] = optimizer.param_groups[0]["lr"]
            self.emit(step, "train", values)
            if self.trainer.progress_bar_callback is not None:  # self.log only feeds the bar: skip its machinery without one
                self.log_dict(
                    {"loss": values["loss"], NORM_LOSS: values[NORM_LOSS]}, prog_bar=True, logger=False, batch_size=x.shape[1]
                )
        self.manual_backward(loss)
        norm = torch.nn.utils.clip_grad_norm_(self.parameters(), self.cfg.train.clip or math.inf)
        if step % self.cfg.train.log_every == 0:
            if not math.isfinite(grad_norm := float(norm)):
                raise Diverged(f"gradient norm became {grad_norm} at step {step}")
            self.emit(step, "train", {"grad_norm": grad_norm})
        optimizer.step()
        return loss

    def on_after_backward(self) -> None:
        if self.probe is not None:
            self._emit(self.global_step, self.probe.collect())

    def _emit(self, step: int, prof: Profile | None) -> None:
        if prof is not None:
            self._probed_at = step
            self.emit_profile(step, prof.frame(step, self.cfg.probe.percentiles), prof.summary(self.cfg.probe.eps))

    def on_train_end(self) -> None:
        """A run stopped early (solved) gets a last probe at the step it stopped, on a training-sized validation batch."""
        if self.probe is None or self._stopped is None or self._probed_at == self._stopped[0]:
            return
        step, batch = self._stopped
        size = self.cfg.train.batch_size
        part = Batch(*(v[:, :size] if v.dim() > 1 else v[:size] for v in batch))
        with torch.enable_grad():
            self._emit(step, profile(self.net, part, self.task, self.probe.chunk, self.probe.loss, self.probe.method))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        out = self.net(batch.x.to(self.dtype))
        values = self._scalars(out, batch, self.task.loss(out, batch))
        step = self.global_step
        values["solved"] = float(self.task.solved(values))
        if values["solved"] and self.solved_at is None:
            self.solved_at = step
        self.last_val = values
        if math.isfinite(values[NORM_LOSS]) and values[NORM_LOSS] < self.best.get(NORM_LOSS, math.inf):
            self.best = {NORM_LOSS: values[NORM_LOSS], "step": step}
        self.emit(step, "val", values)
        if self.trainer.progress_bar_callback is not None:
            self.log(f"val/{NORM_LOSS}", values[NORM_LOSS], prog_bar=True, logger=False, batch_size=batch.x.shape[1])
        if values["solved"] and self.cfg.train.early_stop:
            self.trainer.should_stop = True
            self._stopped = (step, batch)


class StepLines(pl.Callback):
    """Progress for a log file (stderr not a terminal): a line at a tenth of the step budget, no carriage returns.

    At most one line per ``every_s`` seconds besides the last step's (a sweep's many short runs would otherwise print
    ten lines each), and the loss part only once a validation has run.
    """

    PARTS = 10

    def __init__(self, description: str, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.description, self.next, self.every_s, self.clock = description, 1, every_s, clock
        self.last = -math.inf

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        n, total = trainer.global_step, trainer.max_steps
        if n * self.PARTS < self.next * total:
            return
        self.next = n * self.PARTS // total + 1
        if n < total and self.clock() - self.last < self.every_s:
            return  # the last step is always said: the log shows the run reached its budget
        self.last = self.clock()
        loss = pl_module.last_val.get(NORM_LOSS)
        val = f"last val loss / baseline {loss:.4g}" if loss is not None else "no validation yet"
        print(f"{self.description}: step {n}/{total} ({n / total:.0%}), {val}", file=sys.stderr, flush=True)


class StepProgressBar(TQDMProgressBar):
    """One bar over the whole step budget (the run's 'epochs' are only validation periods)."""

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        if trainer.current_epoch == 0:
            self.train_progress_bar.reset(total=trainer.max_steps)
            self.train_progress_bar.set_description(self.description)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *_: Any) -> None:
        bar, n = self.train_progress_bar, trainer.global_step
        if (n % self.refresh_rate == 0 or n == bar.total) and not bar.disable:
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # also refreshes the bar

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    # Validation is a single fixed batch: no second bar for it, only the postfix update below.
    def on_validation_start(self, *_: Any) -> None: ...

    def on_validation_batch_start(self, *_: Any, **__: Any) -> None: ...

    def on_validation_batch_end(self, *_: Any, **__: Any) -> None: ...

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def on_train_end(self, *_: Any) -> None:
        self.train_progress_bar.close()
