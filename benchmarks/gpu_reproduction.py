"""The GPU rows of experiments/paper_reproduction.yaml that fit in about 10 minutes, tracking off.

Runs each selected row for its seeds with W&B disabled, writes the runs under
runs/paper_reproduction_gpu/, and prints the reference comparison table (the same one
`rnnstudy report` writes). Needs the package installed (`make setup` with a CUDA torch).

    python benchmarks/gpu_reproduction.py                    # the default rows, 3 seeds
    python benchmarks/gpu_reproduction.py --rows lstm128-adding-T200 --seeds 0
"""

from __future__ import annotations

import argparse
import time

import torch

from rnnstudy.report import tables
from rnnstudy.report.frames import run_table
from rnnstudy.report.reproduction import frame
from rnnstudy.run.overrides import apply_overrides
from rnnstudy.run.store import load
from rnnstudy.run.train import train
from rnnstudy.study.experiment import load_experiment

DEFAULT_ROWS = ["lstm128-adding-T200", "tanh128-adding-T400", "chrono-lstm128-copy-T500", "default-lstm128-copy-T500"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=DEFAULT_ROWS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="override every row's step budget")
    p.add_argument("--out", default="runs")
    args = p.parse_args()
    exp = load_experiment("experiments/paper_reproduction.yaml", [f"out={args.out}"])
    by_row = {p.row: p for p in exp.points()}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"# paper reproduction on {device}")
    started = time.time()
    for row in args.rows:
        point = by_row[row]
        overrides = {"experiment": "paper_reproduction_gpu", "wandb.mode": "disabled", "train.progress": False}
        if args.steps:
            overrides["train.steps"] = args.steps
        cfg = apply_overrides(point.cfg, overrides)
        for seed in args.seeds:
            meta = {**point.facts(), "trial": 0, "params": {}, "seed": seed}
            result = train(cfg.model_copy(update={"seed": seed}), meta=meta)
            print(
                f"{row} seed {seed}: {result.status}, {result.final.get('norm_loss', float('nan')):.3f} x baseline, "
                f"solved {result.solved}, {result.wall_s:.0f}s (total {time.time() - started:.0f}s)",
                flush=True,
            )
    runs = run_table(load(f"{args.out}/paper_reproduction_gpu"))
    print(tables.markdown(frame(runs)))


if __name__ == "__main__":
    main()
