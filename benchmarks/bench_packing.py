"""Packing K independent small RNN runs into one computation: is a packed executor worth building on this device?

Small recurrent steps are launch-bound on a GPU (T sequential small kernels per run), so many runs of a sweep
might go faster as one batched computation. For K = 1, 4, 16, 64 independent training steps (forward, backward,
SGD update; each run its own weights and its own batch) this times, per run-step:

- ``separate``: K fused ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` calls (cuDNN on a GPU, oneDNN on a CPU), one after the other;
- ``bmm``: one cell over time whose K weight sets are stacked, every step one batched matmul (``torch.bmm``);
- ``bmm graph``: the same step captured once as a CUDA graph and replayed (CUDA only);
- ``block-diag``: one fused call of width K x hidden whose weights are block-diagonal per gate, off-diagonal
  gradients masked (K <= 8: the dense call does K times the useful work).

    python benchmarks/bench_packing.py                       # hidden 128, batch 128, T = 100, K = 1 4 16 64
    python benchmarks/bench_packing.py --K 1 4 --T 10 --hidden 16 --batch 16 --repeats 1   # a quick path check
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_probe import timed  # noqa: E402
from flops import matmul_rate, step_flops  # noqa: E402

from rnnstudy.model.cells import CELLS  # noqa: E402

BENCHED = ("lstm", "gru", "rnn_tanh")


def fused(cell: str, inp: int, hidden: int) -> nn.RNNBase:
    """The library's fused layer for a cell."""
    if cell == "lstm":
        return nn.LSTM(inp, hidden)
    if cell == "gru":
        return nn.GRU(inp, hidden)
    return nn.RNN(inp, hidden, nonlinearity="tanh")


def separate(cell: str, K: int, x: torch.Tensor, y: torch.Tensor, hidden: int) -> Callable[[], None]:
    """K fused layers and heads, stepped one after the other."""
    layers = [fused(cell, x.shape[-1], hidden).to(x.device) for _ in range(K)]
    heads = [nn.Linear(hidden, y.shape[-1]).to(x.device) for _ in range(K)]
    opt = torch.optim.SGD([p for m in layers + heads for p in m.parameters()], lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        for k in range(K):
            out, _ = layers[k](x[k])
            nn.functional.mse_loss(heads[k](out[-1]), y[k]).backward()
        opt.step()

    return step


class StackedCell(nn.Module):
    """K independent cells over time with stacked weights: every step one ``bmm`` for all K runs."""

    def __init__(self, cell: str, K: int, inp: int, hidden: int, out: int) -> None:
        super().__init__()
        g, scale = CELLS[cell].gates, hidden**-0.5
        self.cell, self.hidden = cell, hidden
        self.w_ih = nn.Parameter(torch.empty(K, inp, g * hidden).uniform_(-scale, scale))
        self.w_hh = nn.Parameter(torch.empty(K, hidden, g * hidden).uniform_(-scale, scale))
        self.b_ih = nn.Parameter(torch.zeros(K, 1, g * hidden))
        self.b_hh = nn.Parameter(torch.zeros(K, 1, g * hidden))
        self.w_out = nn.Parameter(torch.empty(K, hidden, out).uniform_(-scale, scale))
        self.b_out = nn.Parameter(torch.zeros(K, 1, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (K, T, B, in) -> the readout of the last state (K, B, out)."""
        K, T, B, _ = x.shape
        projected = torch.bmm(x.reshape(K, T * B, -1), self.w_ih).view(K, T, B, -1) + self.b_ih.unsqueeze(1)
        inputs = projected.unbind(1)  # one backward for all steps (indexing per step would scatter a full-size gradient T times)
        h = x.new_zeros(K, B, self.hidden)
        c = torch.zeros_like(h)
        for gi in inputs:
            gh = torch.baddbmm(self.b_hh, h, self.w_hh)
            if self.cell == "lstm":
                i, f, g, o = (gi + gh).chunk(4, dim=-1)
                c = f.sigmoid() * c + i.sigmoid() * g.tanh()
                h = o.sigmoid() * c.tanh()
            elif self.cell == "gru":
                ir, iz, inn = gi.chunk(3, dim=-1)
                hr, hz, hn = gh.chunk(3, dim=-1)
                r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
                h = (1 - z) * (inn + r * hn).tanh() + z * h
            else:
                h = (gi + gh).tanh()
        return torch.baddbmm(self.b_out, h, self.w_out)


def stacked(cell: str, K: int, x: torch.Tensor, y: torch.Tensor, hidden: int, graph: bool) -> Callable[[], None]:
    """The stacked-weights step, eager or captured as one CUDA graph."""
    net = StackedCell(cell, K, x.shape[-1], hidden, y.shape[-1]).to(x.device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=False)
        (nn.functional.mse_loss(net(x), y, reduction="sum") / y[0].numel()).backward()
        opt.step()

    if not graph:
        return step
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up on a side stream, as CUDA graph capture requires
            step()
    torch.cuda.current_stream().wait_stream(side)
    captured = torch.cuda.CUDAGraph()
    with torch.cuda.graph(captured):
        step()
    return captured.replay


def block_diagonal(cell: str, K: int, x: torch.Tensor, y: torch.Tensor, hidden: int) -> Callable[[], None]:
    """One fused layer of width K x hidden whose per-gate weight blocks couple no two runs (their gradients masked)."""
    inp, out, g = x.shape[-1], y.shape[-1], CELLS[cell].gates
    layer = fused(cell, K * inp, K * hidden).to(x.device)
    masks = {}
    for name, width in (("weight_ih_l0", inp), ("weight_hh_l0", hidden)):
        block = torch.block_diag(*[torch.ones(hidden, width, device=x.device)] * K)
        masks[name] = block.repeat(g, 1)
        with torch.no_grad():
            getattr(layer, name).mul_(masks[name])
    head_w = nn.Parameter(torch.empty(K, hidden, out, device=x.device).uniform_(-(hidden**-0.5), hidden**-0.5))
    opt = torch.optim.SGD([*layer.parameters(), head_w], lr=1e-3)
    joined = x.permute(1, 2, 0, 3).reshape(x.shape[1], x.shape[2], K * inp)  # (T, B, K x in): run k's features in block k

    def step() -> None:
        opt.zero_grad()
        states, _ = layer(joined)
        last = states[-1].view(-1, K, hidden).transpose(0, 1)  # (K, B, hidden)
        (nn.functional.mse_loss(torch.bmm(last, head_w), y, reduction="sum") / y[0].numel()).backward()
        for name, mask in masks.items():
            getattr(layer, name).grad.mul_(mask)
        opt.step()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--cells", nargs="+", default=list(BENCHED), choices=BENCHED)
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # the harness's default
    name = f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name() if device.type == "cuda" else name
    print(f"# packing K independent training steps on {name}; torch {torch.__version__}; hidden {args.hidden}, "
          f"batch {args.batch}, T = {args.T}; ms per run-step (lower is better), x = speed-up over separate calls; "
          "GFLOP/s: the bmm step's gate matmuls (forward and backward) against one recurrent bmm's own rate at "
          "the same shapes, (K, batch, hidden) x (K, hidden, gates x hidden)")  # fmt: skip
    print("| cell | K | separate | bmm | bmm graph | block-diag | bmm GFLOP/s | recurrent bmm alone GFLOP/s | share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell in args.cells:
        for K in args.K:
            gen = torch.Generator(device=device).manual_seed(K)
            x = torch.randn(K, args.T, args.batch, 8, device=device, generator=gen)
            y = torch.randn(K, args.batch, 1, device=device, generator=gen)
            base = timed({"separate": separate(cell, K, x, y, args.hidden)}, device, args.repeats)["separate"] / K
            cols = [f"{1e3 * base:.2f}"]
            steps = [
                stacked(cell, K, x, y, args.hidden, graph=False),
                stacked(cell, K, x, y, args.hidden, graph=True) if device.type == "cuda" else None,
                block_diagonal(cell, K, x, y, args.hidden) if K <= 8 else None,
            ]
            times = []
            for step in steps:
                per_run = timed({"packed": step}, device, args.repeats)["packed"] / K if step else None
                cols.append(f"{1e3 * per_run:.2f} ({base / per_run:.2f}x)" if per_run else "-")
                times.append(per_run)
            rate = step_flops(cell, args.hidden, x.shape[-1], args.batch, args.T) / times[0]
            h = torch.randn(K, args.batch, args.hidden, device=device, generator=gen)
            peak = matmul_rate(h, torch.randn(K, args.hidden, CELLS[cell].gates * args.hidden, device=device, generator=gen))
            cols += [f"{rate / 1e9:.1f}", f"{peak / 1e9:.1f}", f"{100 * rate / peak:.0f}%"]
            print(f"| {cell} | {K} | " + " | ".join(cols) + " |", flush=True)


if __name__ == "__main__":
    main()
