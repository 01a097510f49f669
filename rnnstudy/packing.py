"""Which computation a packed run uses on a device, by measurement (benchmarks/RESULTS.md, "Packed runs").

``stacked``: one batched matmul per time step for all members (:mod:`rnnstudy.stacked`); ``loop``: each member's
fused layers (oneDNN, cuDNN) in turn within the one training step, which still shares the loop's overhead.
"""

from __future__ import annotations

from typing import Literal

Executor = Literal["stacked", "loop"]

#: The measured choice per (device type, cell); a pair not measured takes the loop (the separate runs' own kernels).
MEASURED: dict[tuple[str, str], Executor] = {
    ("cpu", "rnn_tanh"): "stacked",
    ("cpu", "rnn_relu"): "stacked",
    ("cpu", "lstm"): "stacked",
    ("cpu", "gru"): "stacked",
}


def resolve_executor(executor: str, cell: str, device: str = "cpu") -> Executor:
    """The executor to use; ``auto`` follows the measured rule."""
    if executor == "auto":
        return MEASURED.get((device, cell), "loop")
    return executor  # type: ignore[return-value]
