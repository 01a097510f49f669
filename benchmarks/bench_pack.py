"""A study point's seeds trained packed (one process, one loop: ``train_pack``) against apart (one ``train`` per seed,
one after the other in one process, as a sweep worker runs them): whole processes, wall time, sides alternated.

Packed runs are timed with both executors (CellSpec.executor): ``stacked`` (one batched matmul per time step for all
members) and ``loop`` (each member's fused layers in turn, in one training step).

Each side is its own process (``--side packed|apart``), so start-up, imports and every run's set-up and records are in
the figure, as they are in a sweep. Default: phase_cpu's sizes (hidden 32, batch 64, adam, clip 1, validation every 100,
probes every 500, 5 seeds, no early stop so every seed trains the whole budget), T = 40 and 160, 1500 steps, every cell.

    python benchmarks/bench_pack.py                                   # the RESULTS.md table (about 40 min on 2 cores)
    python benchmarks/bench_pack.py --cells gru --T 10 --steps 50 --pairs 1  # a quick path check
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def configs(cell: str, T: int, steps: int, seeds: int, out: str) -> list:
    """The point's runs: phase_cpu's sizes at one cell and T."""
    from rnnstudy.run.config import RunConfig
    from rnnstudy.run.overrides import apply_overrides

    base = {
        "experiment": "bench", "out": out, "model.cell": cell, "model.hidden_size": 32, "task.name": "adding",
        "task.T": T, "task.val_size": 256, "train.optimizer": "adam", "train.lr": 1e-3, "train.clip": 1.0,
        "train.steps": steps, "train.batch_size": 64, "train.val_every": 100, "train.progress": False,
        "probe.every": 500, "wandb.mode": "disabled", "train.accelerator": "cpu",
    }  # fmt: skip
    return [apply_overrides(RunConfig(), {**base, "seed": s}) for s in range(seeds)]


def side(name: str, cell: str, T: int, steps: int, seeds: int) -> None:
    """One side of a pair, in this process."""
    import torch

    from rnnstudy.run.train import train, train_pack

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        cfgs = configs(cell, T, steps, seeds, out)
        metas = [{"bench": cell, "seed": c.seed} for c in cfgs]
        if name != "apart":
            train_pack(cfgs, metas=metas, executor=name)
        else:
            for cfg, meta in zip(cfgs, metas):
                train(cfg, meta=meta)


def wall(argv: list[str]) -> float:
    """Seconds one whole process takes."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=["stacked", "loop", "apart"])
    p.add_argument("--cells", nargs="+", default=list(CELLS))
    p.add_argument("--T", nargs="+", type=int, default=[40, 160])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--pairs", type=int, default=2)
    args = p.parse_args()
    if args.side:
        side(args.side, args.cells[0], args.T[0], args.steps, args.seeds)
        return
    print(f"{platform.processor() or platform.machine()}, 1 thread a process; {args.seeds} seeds x {args.steps} steps, "
          f"hidden 32, batch 64; wall s per point (median of {args.pairs} alternated pairs)")  # fmt: skip
    print("| cell | T | apart | loop | stacked | speed-up, loop (each pair) | speed-up, stacked (each pair) |")
    print("|---|---|---|---|---|---|---|")
    for cell in args.cells:
        for T in args.T:
            walls: dict[str, list[float]] = {"apart": [], "loop": [], "stacked": []}
            for _ in range(args.pairs):
                one = [sys.executable, __file__, "--cells", cell, "--T", str(T), "--steps", str(args.steps),
                       "--seeds", str(args.seeds), "--side"]  # fmt: skip
                for name, times in walls.items():
                    times.append(wall([*one, name]))
            cols = [f"{statistics.median(walls[n]):.1f}" for n in walls]
            for name in ("loop", "stacked"):
                ratios = [a / b for a, b in zip(walls["apart"], walls[name])]
                cols.append(f"{statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})")
            print(f"| {cell} | {T} | {' | '.join(cols)} |", flush=True)


if __name__ == "__main__":
    main()
