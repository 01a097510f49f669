"""Parameter sensitivity against lag: how much each step's use of a layer's parameters moves the answer loss.

A layer uses its parameters theta at every step, so the answer loss's gradient is a sum over steps,
dL/dtheta = sum_t dL/dtheta|_t, where dL/dtheta|_t is the derivative through step t's use alone (theta held at every
other step). s_t = ||dL/dtheta|_t|| (all of the layer's parameters, L the batch's mean answer loss) against the lag of t
is the profile the curse of memory (Zucchet & Orvieto 2024) is about: where memory is long, far-back steps still carry
large parameter derivatives even when dL/dh_t does not explode. Exact: each step runs with its own zero perturbation
delta_t of theta (theta + delta_t at step t, the same function) and s_t is read from dL/d(delta_t), for every cell
(the layer is called through ``torch.func.functional_call``, one step at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call

from rnnstudy.model.gradflow import decay_rate, horizon, lag
from rnnstudy.model.models import RecurrentNet
from rnnstudy.model.tasks import Batch, Task
from rnnstudy.names import metric_key

#: The ``state`` of s_t's rows among the gradient profiles (gradflow.parquet, W&B's grad/ charts): the parameters.
THETA = "theta"


@dataclass
class Sensitivity:
    """s_t per layer (from 1): ``norms[layer]`` has one value per time step t = 0 .. length - 1."""

    length: int
    norms: dict[int, np.ndarray]

    def lags(self) -> np.ndarray:
        """Steps back from the end of the sequence of each t."""
        return np.array([lag(t, self.length) for t in range(self.length)], dtype=float)

    def frame(self, step: int) -> pd.DataFrame:
        """Tidy rows in the gradient profiles' layout (step, loss, layer, state, t, lag, norm), state :data:`THETA`."""
        t = np.arange(self.length)
        return pd.concat([pd.DataFrame({"step": step, "loss": "answer", "layer": layer, "state": THETA, "t": t,
                                        "lag": self.lags().astype(int), "norm": norms})
                          for layer, norms in self.norms.items()], ignore_index=True)  # fmt: skip

    def summary(self, eps: float) -> dict[str, float]:
        """The decay rate and horizon of s_t per layer, named as the gradient profile's (state :data:`THETA`)."""
        out = {}
        for layer, norms in self.norms.items():
            out[metric_key("decay_rate", "answer", layer, THETA)] = decay_rate(self.lags(), norms)
            out[metric_key("horizon", "answer", layer, THETA)] = horizon(self.lags(), norms, eps)
        return out


def per_step_gradients(net: RecurrentNet, batch: Batch, task: Task) -> list[dict[str, torch.Tensor]]:
    """Per layer, dL/dtheta|_t of each of its parameters, stacked over t (``(length, *shape)``); summed over t they are
    the parameter gradient of the batch's mean answer loss."""
    x = batch.x.to(next(net.parameters()).dtype)
    length = x.shape[0]
    deltas: list[dict[str, torch.Tensor]] = []
    for index, layer in enumerate(net.layers):
        params = dict(layer.named_parameters())
        delta = {n: torch.zeros(length, *p.shape, dtype=p.dtype, device=p.device, requires_grad=True) for n, p in params.items()}
        outputs, state = [], None
        for t in range(length):
            out, state = functional_call(layer, {n: p + delta[n][t] for n, p in params.items()}, (x[t : t + 1], state))
            outputs.append(out)
        x = net.after(index, torch.cat(outputs))
        deltas.append(delta)
    loss = task.per_sample_answer_loss(net.readout(x), batch).mean()
    grads = iter(torch.autograd.grad(loss, [d for delta in deltas for d in delta.values()]))
    return [{n: next(grads) for n in delta} for delta in deltas]


def sensitivity(net: RecurrentNet, batch: Batch, task: Task) -> Sensitivity:
    """Every layer's s_t on one batch, outside training (parameter gradients untouched)."""
    per_layer = per_step_gradients(net, batch, task)
    norms = {number: sum(g.flatten(1).double().square().sum(dim=1) for g in grads.values()).sqrt().cpu().numpy()
             for number, grads in enumerate(per_layer, start=1)}  # fmt: skip
    return Sensitivity(length=batch.x.shape[0], norms=norms)
