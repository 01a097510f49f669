"""Lightning pieces: the training module (one run, or a pack of runs trained as if apart), the on-device data
streams, and the step progress output."""

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

from rnnstudy.model.gradflow import GradFlowProbe, Profile, profile, resolve_method
from rnnstudy.model.models import RecurrentNet, initial_net
from rnnstudy.model.sensitivity import sensitivity
from rnnstudy.model.stacked import stacked_forward
from rnnstudy.model.tasks import Batch, Task
from rnnstudy.names import COMPLETE, DIVERGED, GRAD_NORM, LOSS, LR, NORM_LOSS, SOLVED, TRAIN, VAL
from rnnstudy.run.config import RunConfig
from rnnstudy.run.device import uses_cuda

SEED_STREAM = 0x5EED  # offsets the data seed from the weight-init seed


class Sink(Protocol):
    """Where a run's numbers go (results store, W&B)."""

    def metrics(self, step: int, split: str, values: dict[str, float]) -> None: ...

    def profile(self, step: int, frame: pd.DataFrame, scalars: dict[str, float]) -> None: ...


class _Streams(IterableDataset):
    """One training batch per member and step, each from the member's own generator (None for a member that ended)."""

    def __init__(self, task: Task, batch_size: int, generators: list[torch.Generator], wanted: Callable[[], list[bool]]) -> None:
        self.task, self.batch_size, self.generators, self.wanted = task, batch_size, generators, wanted

    def __iter__(self) -> Iterator[list[Batch | None]]:
        while True:
            yield [self.task.sample(self.batch_size, g) if w else None for g, w in zip(self.generators, self.wanted())]


class _Fixed(IterableDataset):
    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def __iter__(self) -> Iterator[Batch]:
        yield self.batch


class TaskData(pl.LightningDataModule):
    """Endless streams of training batches, one per member, and one fixed validation batch, all on the device.

    Each member's training batches come from a generator seeded by its own seed, exactly as if it ran alone; the
    validation set depends only on the task, ``T``, ``val_size`` and ``val_seed``, so every run sees the same one.
    ``wanted`` says which members still train (an ended member draws no more batches).
    """

    def __init__(self, cfgs: list[RunConfig], task: Task, wanted: Callable[[], list[bool]]) -> None:
        super().__init__()
        self.cfgs, self.task, self.wanted = cfgs, task, wanted
        self.resume_states: list[torch.Tensor] | None = None

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        self.train_gens = [torch.Generator(device=device).manual_seed(c.seed + SEED_STREAM) for c in self.cfgs]
        val_gen = torch.Generator(device=device).manual_seed(self.cfgs[0].task.val_seed)
        self.val_batch = self.task.validation(self.cfgs[0].task.val_size, val_gen)

    def train_dataloader(self) -> DataLoader:
        if self.resume_states is not None:
            for gen, state in zip(self.train_gens, self.resume_states):
                gen.set_state(state)
        return DataLoader(_Streams(self.task, self.cfgs[0].train.batch_size, self.train_gens, self.wanted), batch_size=None)

    def state_dict(self) -> dict[str, Any]:
        """The training generators' states, saved in checkpoints (taken at the end of a validation period).

        Every period restarts the streams from the generators' current states (a batch prefetched past the
        period's end is dropped), so these states are exactly where the next period starts.
        """
        return {"generators": [g.get_state() for g in self.train_gens]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the training streams exactly where the checkpoint left them."""
        self.resume_states = state.get("generators")

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Fixed(self.val_batch), batch_size=None)


class Member:
    """One run of a module: its config, network, probe and sinks, and what a separate run keeps of how it stands.

    ``ended`` is (status, reason, step) once the run is over (solved with early stop, or diverged) while others of the
    same module go on; the hook :meth:`report_to` gives it writes its record at that moment.
    """

    def __init__(self, cfg: RunConfig, net: RecurrentNet) -> None:
        self.cfg, self.net = cfg, net
        p = cfg.probe
        method = resolve_method(p.method, cfg.model.cell, "cuda" if uses_cuda(cfg.train.accelerator) else "cpu")
        self.probe = GradFlowProbe(p.every, p.chunk, p.loss, method) if p.enabled else None
        self.sinks: list[Sink] = []
        self.solved_at: int | None = None
        self.validated_at: int | None = None
        self.best: dict[str, float] = {}
        self.last_val: dict[str, float] = {}
        self.ended: tuple[str, str | None, int] | None = None
        self.on_end: Callable[[Member], None] = lambda member: None
        self._probed_at: int | None = None

    def report_to(self, sinks: list[Sink], on_end: Callable[[Member], None]) -> None:
        """Where the run's numbers go (its results store, then W&B when it opens: :meth:`add_sink`), and what writes its
        record when it ends."""
        self.sinks, self.on_end = list(sinks), on_end

    def add_sink(self, sink: Sink) -> None:
        """One more place the run's numbers go from now on."""
        self.sinks.append(sink)

    def ended_before(self, status: str, reason: str | None, step: int) -> None:
        """The run ended in an earlier process (a pack resumed after it): it trains no more, its record is written."""
        self.ended = (status, reason, step)

    @property
    def active(self) -> bool:
        """Whether the run still trains."""
        return self.ended is None

    def end(self, status: str, reason: str | None, step: int) -> None:
        """The run is over at ``step``: it trains no more, and its record is written now."""
        self.ended = (status, reason, step)
        for p in self.net.parameters():
            p.grad = None  # the optimizer skips a parameter without a gradient: the run's weights stay as they ended
        self.on_end(self)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the run beyond its weights."""
        return {"best": self.best, "solved_at": self.solved_at, "last_val": self.last_val, "ended": self.ended}

    def restore(self, saved: dict[str, Any]) -> None:
        """Take back what :meth:`state` saved (a run that ended keeps the end its record says, set by the caller)."""
        self.best, self.solved_at, self.last_val = saved.get("best", {}), saved.get("solved_at"), saved.get("last_val", {})
        if self.ended is None and saved.get("ended") is not None:
            self.ended = tuple(saved["ended"])  # type: ignore[assignment]

    def emit(self, step: int, split: str, values: dict[str, float]) -> None:
        """Send scalar metrics to every sink."""
        for sink in self.sinks:
            sink.metrics(step, split, values)

    def emit_profile(self, step: int, prof: Profile | None) -> None:
        """Send one gradient-flow profile (if the probe produced one now) to every sink."""
        if prof is None:
            return
        self._probed_at = step
        frame, scalars = prof.frame(step, self.cfg.probe.percentiles), prof.summary(self.cfg.probe.eps)
        for sink in self.sinks:
            sink.profile(step, frame, scalars)

    def emit_sensitivity(self, step: int, batch: Batch, task: Task) -> None:
        """Send the parameter sensitivity of this batch (with ``probe.sensitivity``) to every sink, as a profile."""
        if not self.cfg.probe.sensitivity:
            return
        sens = sensitivity(self.net, batch, task)
        frame, scalars = sens.frame(step), sens.summary(self.cfg.probe.eps)
        for sink in self.sinks:
            sink.profile(step, frame, scalars)

    def last_probe(self, step: int, batch: Batch, task: Task) -> None:
        """A run's last profile, at its last validation (solved and stopped early, or the end of the budget): the state
        that validation measured, on a training-sized part of its batch."""
        if self.probe is None or self._probed_at == step:
            return
        size = self.cfg.train.batch_size
        part = Batch(*(v[:, :size] if v.dim() > 1 else v[:size] for v in batch))
        with torch.enable_grad():
            self.emit_profile(step, profile(self.net, part, task, self.probe.chunk, self.probe.loss, self.probe.method))
            self.emit_sensitivity(step, part, task)


class RecurrentModule(pl.LightningModule):
    """Trains K runs (members) of one config that differ only in their seed, each exactly as if it ran alone.

    A separate run is a module of one member. A packed run trains a point's seeds in one process and one loop: each
    member has its own initial weights, its own batches, its own optimizer state (the optimizers are elementwise:
    one over all members keeps per-parameter state), its own clipping norm, validation, probes, early stop and
    divergence; the members' losses are summed for one backward, whose gradient for each member is its own loss's.
    With ``stacked`` the unprobed training steps' forward is one stacked computation for all members
    (:mod:`rnnstudy.model.stacked`); otherwise each member's fused layers run in turn, in the same step.
    Numbers go to each member's sinks, not ``self.log`` (which only feeds the progress bar); callbacks read
    ``members``.
    """

    def __init__(self, cfgs: list[RunConfig], task: Task, stacked: bool = False) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.cfg, self.task, self.stacked = cfgs[0], task, stacked
        self.ladder = set(self.cfg.train.ladder())
        nets = []
        for cfg in cfgs:  # each member's weights from its own seed, as a separate run draws them
            pl.seed_everything(cfg.seed, verbose=False)
            nets.append(initial_net(cfg, task))
        self.nets = torch.nn.ModuleList(nets)
        self.members = [Member(cfg, net) for cfg, net in zip(cfgs, nets)]

    @property
    def last_val(self) -> dict[str, float]:
        """The first member's last validation (what the progress output shows)."""
        return self.members[0].last_val

    def wanted(self) -> list[bool]:
        """Which members still train."""
        return [m.active for m in self.members]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rnnstudy"] = {"members": [m.state() for m in self.members]}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for member, saved in zip(self.members, checkpoint.get("rnnstudy", {}).get("members", [])):
            member.restore(saved)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        t = self.cfg.train
        # foreach: one multi-tensor update (PyTorch's default on CUDA only); on a CPU, 15% of a small packed step
        if t.optimizer == "rmsprop":
            return torch.optim.RMSprop(self.parameters(), lr=t.lr, alpha=t.alpha, momentum=t.momentum, foreach=True)
        if t.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=t.lr, foreach=True)
        return torch.optim.SGD(self.parameters(), lr=t.lr, momentum=t.momentum, foreach=True)

    def _scalars(self, out: torch.Tensor, batch: Batch, loss: torch.Tensor) -> dict[str, float]:
        values = {k: float(v) for k, v in self.task.metrics(out, batch).items()}
        values[LOSS] = float(loss)
        values[NORM_LOSS] = values[LOSS] / self.task.baseline
        return values

    def _bar(self, values: dict[str, float], batch_size: int, names: tuple[str, ...]) -> None:
        if self.trainer.progress_bar_callback is not None:  # self.log only feeds the bar: skip its machinery without one
            self.log_dict({n: values[k] for n, k in names}, prog_bar=True, logger=False, batch_size=batch_size)

    def training_step(self, batches: list[Batch | None], batch_idx: int) -> None:
        """One step written out (Lightning's manual optimisation): the norm the clipping computes is the logged one."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        step = self.global_step
        logged = step % self.cfg.train.log_every == 0 or step == self.trainer.max_steps - 1
        losses, shown = [], False
        todo = [(m, batch) for m, batch in zip(self.members, batches) if m.active and batch is not None]
        xs = [batch.x.to(self.dtype) for _, batch in todo]
        probed = any(m.probe is not None and m.probe.due(step) for m, _ in todo)
        outs = stacked_forward([m.net for m, _ in todo], xs) if self.stacked and not probed and len(todo) > 1 else None
        for k, (m, batch) in enumerate(todo):
            x = xs[k]
            probing = m.probe is not None and m.probe.due(step)
            out = outs[k] if outs is not None else m.probe.forward(m.net, x) if probing else m.net(x)
            loss = self.task.loss(out, batch)
            if probing:
                m.emit_profile(step, m.probe.measure(m.net, out, batch, self.task))
                m.emit_sensitivity(step, batch, self.task)
            if logged:
                with torch.no_grad():
                    values = self._scalars(out, batch, loss)
                if not math.isfinite(values[LOSS]):
                    m.end(DIVERGED, f"training loss became {values[LOSS]} at step {step}", step)
                    continue
                values[LR] = optimizer.param_groups[0]["lr"]
                m.emit(step, TRAIN, values)
                if not shown:
                    self._bar(values, x.shape[1], ((LOSS, LOSS), (NORM_LOSS, NORM_LOSS)))
                    shown = True
            losses.append(loss)
        if losses:
            self.manual_backward(sum(losses))
        for m in self.members:
            if not m.active:
                continue
            norm = torch.nn.utils.clip_grad_norm_(m.net.parameters(), self.cfg.train.clip or math.inf, foreach=True)
            if step % self.cfg.train.log_every == 0:
                if not math.isfinite(grad_norm := float(norm)):
                    m.end(DIVERGED, f"gradient norm became {grad_norm} at step {step}", step)
                    continue
                m.emit(step, TRAIN, {GRAD_NORM: grad_norm})
        if any(m.active for m in self.members):
            optimizer.step()
        else:
            self.trainer.should_stop = True

    def on_after_backward(self) -> None:
        for m in self.members:
            if m.active and m.probe is not None:
                m.emit_profile(self.global_step, m.probe.collect())

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._validate(batch, self.global_step)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Validate at the steps of ``train.val_from``'s ladder too (Lightning validates every ``val_every`` steps)."""
        if self.global_step in self.ladder:
            with torch.no_grad():
                self._validate(self.trainer.datamodule.val_batch, self.global_step)

    def _validate(self, batch: Batch, step: int) -> None:
        """One validation of every member still training, after ``step`` optimiser steps."""
        shown = False
        for m in self.members:
            if not m.active:
                continue
            out = m.net(batch.x.to(self.dtype))
            values = self._scalars(out, batch, self.task.loss(out, batch))
            values[SOLVED] = float(self.task.solved(values))
            if values[SOLVED] and m.solved_at is None:
                m.solved_at = step
            m.last_val, m.validated_at = values, step
            if math.isfinite(values[NORM_LOSS]) and values[NORM_LOSS] < m.best.get(NORM_LOSS, math.inf):
                m.best = {NORM_LOSS: values[NORM_LOSS], "step": step}
            m.emit(step, VAL, values)
            if not shown:
                self._bar(values, batch.x.shape[1], ((f"{VAL}/{NORM_LOSS}", NORM_LOSS),))
                shown = True
            stops = values[SOLVED] and self.cfg.train.early_stop
            if stops or step >= self.trainer.max_steps:
                m.last_probe(step, batch, self.task)
            if stops:
                m.end(COMPLETE, None, step)
        if not any(m.active for m in self.members):
            self.trainer.should_stop = True


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
