"""The loop a researcher would write by hand, as its own process: the baseline of benchmarks/bench_overhead.py.

One fused nn.LSTM / nn.GRU / nn.RNN and a linear readout, RMSprop, gradient clipping at 1, the task's own batches,
a validation on 1024 sequences every 100 steps; nothing logged, nothing written.

    python benchmarks/plain_loop.py --cell lstm --hidden 64 --batch 64 --T 40 --steps 2000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnstudy.model.tasks import make_task  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", default="lstm", choices=["rnn_tanh", "rnn_relu", "lstm", "gru"])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=40)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--task", default="adding")
    args = p.parse_args()
    torch.manual_seed(0)
    task = make_task(args.task, args.T)
    kind = {"lstm": nn.LSTM, "gru": nn.GRU}.get(args.cell)
    rnn = kind(task.input_size, args.hidden) if kind else nn.RNN(task.input_size, args.hidden, nonlinearity=args.cell[4:])
    head = nn.Linear(args.hidden, task.output_size)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.RMSprop(params, lr=1e-3, alpha=0.9)
    gen = torch.Generator().manual_seed(1)
    val = task.validation(1024, torch.Generator().manual_seed(2))
    for step in range(args.steps):
        batch = task.sample(args.batch, gen)
        opt.zero_grad()
        loss = task.loss(head(rnn(batch.x)[0]), batch)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            with torch.no_grad():
                float(task.loss(head(rnn(val.x)[0]), val))


if __name__ == "__main__":
    main()
