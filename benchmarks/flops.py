"""Floating-point work of a recurrent training step, and the rate a plain matmul reaches on the same device: what the
benchmarks print beside their times, so a step's speed reads as a share of what the hardware does at those shapes."""

from __future__ import annotations

import time

import torch

from rnnstudy.model.cells import CELLS


def step_flops(cell: str, hidden: int, inputs: int, batch: int, T: int, runs: int = 1) -> float:
    """The gate matmuls' floating-point operations of one training step of ``runs`` networks: 2 B T G H (in + H)
    forward, twice that backward (elementwise gate arithmetic and the readout not counted)."""
    return 3 * 2 * runs * batch * T * CELLS[cell].gates * hidden * (inputs + hidden)


def matmul_rate(a: torch.Tensor, b: torch.Tensor, reps: int = 20) -> float:
    """FLOP/s of ``a @ b`` (batched where ``a`` is 3-d) on their device, TF32 as the caller set it."""
    for _ in range(3):
        a @ b
    if a.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if a.is_cuda:
        torch.cuda.synchronize()
    return 2 * a.shape[:-1].numel() * a.shape[-1] * b.shape[-1] * reps / (time.perf_counter() - start)
