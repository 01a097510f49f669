"""What the parameter-sensitivity profile costs, against a plain PyTorch training step of the same net, in the same run.

Per cell and T: the plain step (the harness's fused forward + backward of the answer loss, as a researcher's own loop
does it) and one sensitivity profile (rnnstudy.model.sensitivity: one step at a time, each with its own zero
perturbation of the layer's parameters). Reported as the profile's time in plain steps:

    python benchmarks/bench_sensitivity.py                       # T = 40 160, hidden 32, batch 64, every cell
    python benchmarks/bench_sensitivity.py --T 10 --repeats 1    # a quick path check
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnstudy.model.cells import CELLS  # noqa: E402
from rnnstudy.model.models import RecurrentNet  # noqa: E402
from rnnstudy.model.sensitivity import sensitivity  # noqa: E402
from rnnstudy.model.tasks import make_task  # noqa: E402
from rnnstudy.run.config import ModelConfig  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    """One row per cell and T: a plain step's and a profile's milliseconds and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[40, 160])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"parameter-sensitivity profile against a plain step, adding, hidden {args.hidden}, batch {args.batch}, "
          f"cpu ({platform.machine()}, 1 thread)")  # fmt: skip
    print("| cell | T | plain step ms | profile ms | profile / step |\n|---|---|---|---|---|")
    for cell in CELLS:
        for T in args.T:
            task = make_task("adding", T)
            torch.manual_seed(0)
            net = RecurrentNet(ModelConfig(cell=cell, hidden_size=args.hidden), task.input_size, task.output_size)
            batch = task.sample(args.batch, torch.Generator().manual_seed(0))

            def plain(net=net, batch=batch, task=task) -> None:
                net.zero_grad()
                task.per_sample_answer_loss(net(batch.x), batch).mean().backward()

            step = median_seconds(plain, args.repeats)
            profile = median_seconds(lambda net=net, batch=batch, task=task: sensitivity(net, batch, task), args.repeats)
            print(f"| {cell} | {T} | {1e3 * step:.2f} | {1e3 * profile:.2f} | {profile / step:.1f} |")


if __name__ == "__main__":
    main()
