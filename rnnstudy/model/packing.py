"""Which computation a packed run uses on a device, by measurement (benchmarks/RESULTS.md, "Packed runs").

``stacked``: one batched matmul per time step for all members (:mod:`rnnstudy.model.stacked`); ``loop``: each member's
fused layers (oneDNN, cuDNN) in turn within the one training step, which still shares the loop's overhead;
``apart``: packing loses there, so a sweep trains the point's seeds one run each.
"""

from __future__ import annotations

from typing import Literal

Executor = Literal["stacked", "loop", "apart"]

#: The measured choice per (device type, cell): whole processes, a 5-seed point at hidden 32, batch 64, T = 40 and
#: 160, 1500 steps, on this project's 2-core CPU (benchmarks/RESULTS.md). The LSTM's fused oneDNN kernel beats both
#: packed forms there (loop 0.68x, stacked 0.45x at T = 160). A pair not measured (every GPU) takes the loop.
MEASURED: dict[tuple[str, str], Executor] = {
    ("cpu", "rnn_tanh"): "stacked",
    ("cpu", "rnn_relu"): "stacked",
    ("cpu", "lstm"): "apart",
    ("cpu", "gru"): "stacked",
}


def resolve_executor(executor: str, cell: str, device: str = "cpu") -> Executor:
    """The executor to use; ``auto`` follows the measured rule."""
    if executor == "auto":
        return MEASURED.get((device, cell), "loop")
    return executor  # type: ignore[return-value]


def packing_wins(cell: str, device: str) -> bool:
    """Whether a point's seeds of this cell train faster packed than apart on this device (the measured rule)."""
    return resolve_executor("auto", cell, device) != "apart"
