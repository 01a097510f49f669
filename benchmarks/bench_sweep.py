"""Sweep throughput: finished trials per hour with 1 worker and with K workers, same machine.

A fixed tiny experiment (2 studies x 8 trials, adding T=20, 600 steps; --trials and --steps make it smaller) runs through
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
model: {{hidden_size: 32}}
task: {{name: adding, T: 20, val_size: 256}}
train: {{steps: {steps}, batch_size: 64, val_every: {val_every}, optimizer: adam, lr: 0.01, progress: false}}
probe: {{every: {val_every}}}
wandb: {{mode: disabled}}
grid: {{model.cell: [rnn_tanh, gru]}}
search: {{init.gain: {{type: float, low: 0.5, high: 1.5}}, init.recurrent: {{type: categorical, choices: [orthogonal]}}}}
study: {{trials: {trials}, pruner: none}}
"""


def trials_per_hour(workers: int, gpus: str, root: Path, trials: int, steps: int) -> float:
    """Run the experiment (2 studies x ``trials``) with ``workers`` workers and return its throughput."""
    exp = root / f"bench_{workers}.yaml"
    text = EXPERIMENT.format(steps=steps, val_every=max(1, steps // 3), trials=trials)
    exp.write_text(text + f"out: {root / f'runs_{workers}'}\n")
    cmd = [sys.executable, "-m", "rnnstudy.cli", "sweep", str(exp), "--workers", str(workers)] + (
        ["--gpus", gpus] if gpus else []
    )
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return 2 * trials / (time.perf_counter() - start) * 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="K, the worker count compared with 1")
    p.add_argument("--gpus", default="", help="GPU indices for the workers (K per GPU)")
    p.add_argument("--trials", type=int, default=8, help="trials per study (2 studies)")
    p.add_argument("--steps", type=int, default=600, help="training steps per trial")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = trials_per_hour(1, args.gpus, Path(tmp), args.trials, args.steps)
        many = trials_per_hour(args.workers, args.gpus, Path(tmp), args.trials, args.steps)
    where = "GPUs " + args.gpus if args.gpus else "CPU"
    print(f"# sweep throughput ({2 * args.trials} trials of {args.steps} steps, {where})")
    print("| workers | trials / hour | vs 1 worker |")
    print("|---|---|---|")
    print(f"| 1 | {one:.0f} | 1.00 |")
    print(f"| {args.workers} | {many:.0f} | {many / one:.2f} |")


if __name__ == "__main__":
    main()
