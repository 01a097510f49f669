"""The scanned cells' training step against the plain sequential loop a researcher would write, in the same run.

For minGRU and the LRU at each T: forward + backward of one batch through the harness's layer (minGRU: the
log-space scan; LRU: log2(T) doublings) and through a plain PyTorch loop over time of the same recursion with the
same weights (minGRU: its own step-by-step path, h = keep * h + (1 - keep) * g(c); LRU: the complex
recursion). The ratio is loop time over
scan time (above 1: the scan wins). Needs only torch, so it runs on a bare GPU box:

    python benchmarks/bench_scan.py                      # T = 64 256 1024, hidden 128, batch 64
    python benchmarks/bench_scan.py --T 16 --repeats 2   # a quick path check
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnstudy.model.scans import LRU, MinGRU  # noqa: E402


def lru_loop(layer: LRU, x: torch.Tensor) -> torch.Tensor:
    """The LRU's recursion, one step at a time, in complex arithmetic."""
    lam, u = layer.eigen(), layer.drive(x)
    h, out = torch.zeros_like(u[0]), []
    for t in range(len(x)):
        h = lam * h + u[t]
        out.append(torch.cat([h.real, h.imag], dim=-1))
    return torch.stack(out)


def seconds(fn, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of forward + backward."""
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        fn(x).square().mean().backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    """Print one row per cell and T: the scan's and the loop's milliseconds per step and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.machine()}, 1 thread)"
    print(f"scan against a plain loop, forward + backward, hidden {args.hidden}, batch {args.batch}, {name}")
    print("| cell | T | scan ms | loop ms | loop / scan |\n|---|---|---|---|---|")
    mingru_loop = lambda layer, x: layer.sequential(x)[0]  # noqa: E731 - the module's own step-by-step recursion
    for cell, make, loop in (("mingru", MinGRU, mingru_loop), ("lru", LRU, lru_loop)):
        torch.manual_seed(0)
        layer = make(2, args.hidden).to(device)
        for T in args.T:
            x = torch.randn(T, args.batch, 2, device=device)
            scan = seconds(lambda v, layer=layer: layer(v)[0], x, args.repeats)
            plain = seconds(lambda v, layer=layer, loop=loop: loop(layer, v), x, args.repeats)
            print(f"| {cell} | {T} | {1e3 * scan:.2f} | {1e3 * plain:.2f} | {plain / scan:.2f} |")


if __name__ == "__main__":
    main()
