"""Harness training step (Lightning, sinks, clipping, logging) against a plain PyTorch loop.

Both train the same fused module on the same task with RMSprop and gradient clipping; the
harness's per-step time is the difference between two budgets, so set-up and the final
validation cancel out. Probes and W&B are off here (bench_probe.py measures the probe).

    python benchmarks/bench_train.py [--quick] [--deterministic]   # --deterministic: both sides on deterministic kernels
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import matmul_rate, step_flops  # noqa: E402

from rnnstudy.model.models import RecurrentNet  # noqa: E402
from rnnstudy.model.tasks import make_task  # noqa: E402
from rnnstudy.run.config import RunConfig  # noqa: E402
from rnnstudy.run.device import set_tf32
from rnnstudy.run.overrides import apply_overrides  # noqa: E402
from rnnstudy.run.train import train  # noqa: E402

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def harness_step(cfg: RunConfig, steps: int) -> float:
    """Seconds per step of ``train()``: (wall(10 + steps) - wall(10)) / steps."""
    short = train(apply_overrides(cfg, {"train.steps": 10, "train.val_every": 10})).wall_s
    long = train(apply_overrides(cfg, {"train.steps": 10 + steps, "train.val_every": 10 + steps})).wall_s
    return (long - short) / steps


def plain_step(cfg: RunConfig, steps: int) -> float:
    """Seconds per step of the loop a researcher would write."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = make_task(cfg.task.name, cfg.task.T)
    net = RecurrentNet(cfg.model, task.input_size, task.output_size).to(device)
    opt = torch.optim.RMSprop(net.parameters(), lr=cfg.train.lr, alpha=cfg.train.alpha)
    gen = torch.Generator(device=device).manual_seed(0)

    def one(i: int) -> None:
        batch = task.sample(cfg.train.batch_size, gen)
        opt.zero_grad()
        loss = task.loss(net(batch.x), batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.clip)
        opt.step()
        if i % cfg.train.log_every == 0:
            loss.item()

    for i in range(3):
        one(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        one(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=[100, 500])
    p.add_argument("--cells", nargs="+", default=list(CELLS))
    p.add_argument("--quick", action="store_true", help="T=100 only")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels on both sides (train.deterministic)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per side (default: 8000 / T, at least 30)")
    args = p.parse_args()
    set_tf32(False)  # both sides in full FP32 from the first cell on (train() would switch it off only once it runs)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
    if args.quick:
        args.T = [100]
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    )
    kernels = "deterministic" if args.deterministic else "default"
    print(f"# harness vs plain PyTorch training step on {device}; torch {torch.__version__}; batch 128, hidden 128, adding")
    where = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = 4096 if where.type == "cuda" else 1024
    peak = matmul_rate(torch.randn(n, n, device=where), torch.randn(n, n, device=where))
    print(f"# {kernels} kernels; TF32 off on both sides; a float32 matmul reaches {peak / 1e9:.0f} GFLOP/s here "
          "(% of it: the gate matmuls' FLOPs per harness step, forward and backward)")
    print("| cell | T | plain step (ms) | harness step (ms) | harness / plain | harness GFLOP/s | % of matmul |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        train(apply_overrides(RunConfig(), {"train.steps": 3, "train.val_every": 3, "out": out, "wandb.mode": "disabled",
                                            "train.progress": False}))  # the process's one-off costs, before any timing
        for T in args.T:
            steps = args.steps or max(30, 8000 // T)
            for cell in args.cells:
                cfg = apply_overrides(
                    RunConfig(),
                    {
                        "model.cell": cell,
                        "model.hidden_size": 128,
                        "task.name": "adding",
                        "task.T": T,
                        "task.val_size": 128,
                        "train.batch_size": 128,
                        "probe.enabled": False,
                        "wandb.mode": "disabled",
                        "train.progress": False,
                        "train.deterministic": args.deterministic,
                        "out": out,
                    },
                )
                plain, harness = plain_step(cfg, steps), harness_step(cfg, steps)
                rate = step_flops(cell, 128, make_task("adding", T).input_size, 128, T) / harness
                print(f"| {cell} | {T} | {1e3 * plain:.1f} | {1e3 * harness:.1f} | {harness / plain:.2f} | {rate / 1e9:.1f} "
                      f"| {100 * rate / peak:.1f} |", flush=True)


if __name__ == "__main__":
    main()
