"""How accurate a float32 probe is: the answer-loss profile of a trained float32 network against float64.

Trains each cell briefly in float32 on copy (T=100, hidden 64), then measures the profile on one
batch in float32 and again with the same weights and batch in float64, and prints the largest
relative error of g_t per band of g_t / max g.

    python benchmarks/probe_precision.py [--steps 300]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnstudy.model.gradflow import profile  # noqa: E402
from rnnstudy.model.models import initial_net  # noqa: E402
from rnnstudy.model.tasks import build_task  # noqa: E402
from rnnstudy.study.experiment import load_run_config  # noqa: E402

BANDS = [(1e-3, 1.0), (1e-5, 1e-3), (1e-7, 1e-5), (1e-9, 1e-7), (0.0, 1e-9)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--cells", nargs="+", default=["rnn_tanh", "rnn_relu", "lstm", "gru"])
    args = p.parse_args()
    torch.manual_seed(0)
    print("| cell | g_t / max g | time steps | largest relative error, float32 vs float64 |")
    print("|---|---|---|---|")
    for cell in args.cells:
        cfg = load_run_config(None, [f"model.cell={cell}", "model.hidden_size=64", "task.name=copy", "task.T=100"])
        task = build_task(cfg)
        net = initial_net(cfg, task)
        opt = torch.optim.Adam(net.parameters(), 3e-3)
        gen = torch.Generator().manual_seed(0)
        for _ in range(args.steps):
            batch = task.sample(64, gen)
            loss = task.loss(net(batch.x), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        batch = task.sample(64, gen)
        g32 = profile(net, batch, task).mean((1, "h"))
        g64 = profile(copy.deepcopy(net).double(), batch._replace(x=batch.x.double()), task).mean((1, "h"))
        error, ratio = np.abs(g32 - g64) / g64, g64 / g64.max()
        for low, high in BANDS:
            band = (ratio >= low) & (ratio < high)
            if band.any():
                print(f"| {cell} | [{low:g}, {high:g}) | {band.sum()} | {error[band].max():.1e} |", flush=True)


if __name__ == "__main__":
    main()
