"""Sweep throughput: finished trials per hour with 1 worker and with K workers, same machine.

A fixed tiny experiment (2 studies x 8 trials, adding T=20, 600 steps) runs through
`rnnstudy sweep` into a fresh folder for each worker count.

    python benchmarks/bench_sweep.py [--workers 2] [--gpus 0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENT = """name: bench
model: {hidden_size: 32}
task: {name: adding, T: 20, val_size: 256}
train: {steps: 600, batch_size: 64, val_every: 200, optimizer: adam, lr: 0.01, progress: false}
probe: {every: 200}
wandb: {mode: disabled}
grid: {model.cell: [rnn_tanh, gru]}
search: {init.gain: {type: float, low: 0.5, high: 1.5}, init.recurrent: {type: categorical, choices: [orthogonal]}}
study: {trials: 8, pruner: none}
"""
TRIALS = 16


def trials_per_hour(workers: int, gpus: str, root: Path) -> float:
    """Run the experiment with ``workers`` workers and return its throughput."""
    exp = root / f"bench_{workers}.yaml"
    exp.write_text(EXPERIMENT + f"out: {root / f'runs_{workers}'}\n")
    cmd = [sys.executable, "-m", "rnnstudy.cli", "sweep", str(exp), "--workers", str(workers)] + (
        ["--gpus", gpus] if gpus else []
    )
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return TRIALS / (time.perf_counter() - start) * 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="K, the worker count compared with 1")
    p.add_argument("--gpus", default="", help="GPU indices for the workers (K per GPU)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = trials_per_hour(1, args.gpus, Path(tmp))
        many = trials_per_hour(args.workers, args.gpus, Path(tmp))
    print(f"# sweep throughput ({TRIALS} trials, {'GPUs ' + args.gpus if args.gpus else 'CPU'})")
    print("| workers | trials / hour | vs 1 worker |")
    print("|---|---|---|")
    print(f"| 1 | {one:.0f} | 1.00 |")
    print(f"| {args.workers} | {many:.0f} | {many / one:.2f} |")


if __name__ == "__main__":
    main()
