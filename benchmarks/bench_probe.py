"""Cost of the exact gradient-flow probe against a plain PyTorch training step, in the same run.

For each cell and T: a plain step (nn.LSTM/GRU/RNN + Linear + loss + backward + RMSprop, written
directly in PyTorch), the harness's fused step (RecurrentNet), and the harness's probed step (chunked
or fused-with-injection forward, then, as in training, either one extra backward of the answer loss
over the traced states (copy) or the training backward's own gradients (adding, whose answer loss is
the training loss)). Reported as ratios to the plain step, and the probe's amortised
cost at a cadence of one probe every ``--every`` steps.
Needs only torch, Lightning and pandas, so it runs on a bare GPU box:

    python benchmarks/bench_probe.py                 # CPU or the default CUDA device
    python benchmarks/bench_probe.py --quick         # T=100 only
    python benchmarks/bench_probe.py --task adding   # the copy task is the default
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rnnstudy.model.cells import INJECTABLE  # noqa: E402
from rnnstudy.model.gradflow import GradFlowProbe  # noqa: E402
from rnnstudy.model.models import RecurrentNet  # noqa: E402
from rnnstudy.model.tasks import make_task  # noqa: E402
from rnnstudy.run.config import ModelConfig  # noqa: E402
from rnnstudy.run.device import set_tf32  # noqa: E402

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def plain_model(cell: str, inp: int, hidden: int, out: int) -> nn.Module:
    """The baseline a researcher would write by hand."""
    kind = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell)
    rnn = kind(inp, hidden) if kind else nn.RNN(inp, hidden, nonlinearity=cell.removeprefix("rnn_"))
    return nn.ModuleDict({"rnn": rnn, "head": nn.Linear(hidden, out)})


def timed(steps: dict, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds per call of each variant, interleaved so load changes hit all alike."""
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def bench(cell: str, task_name: str, T: int, batch: int, hidden: int, device: torch.device, repeats: int) -> dict[str, float]:
    """Seconds per step of the three variants on the same batch."""
    task = make_task(task_name, T)
    data = task.sample(batch, torch.Generator(device=device).manual_seed(0))
    plain = plain_model(cell, task.input_size, hidden, task.output_size).to(device)
    net = RecurrentNet(ModelConfig(cell=cell, hidden_size=hidden, num_layers=1), task.input_size, task.output_size).to(device)
    opt_plain = torch.optim.RMSprop(plain.parameters(), lr=1e-5)
    opt_net = torch.optim.RMSprop(net.parameters(), lr=1e-5)

    def plain_step() -> None:
        opt_plain.zero_grad()
        out, _ = plain["rnn"](data.x)
        task.loss(plain["head"](out), data).backward()
        opt_plain.step()

    def fused_step() -> None:
        opt_net.zero_grad()
        task.loss(net(data.x), data).backward()
        opt_net.step()

    def probed(method: str) -> Callable[[], None]:
        probe = GradFlowProbe(1, loss="answer", method=method)

        def step() -> None:  # exactly the training step's use of the probe (lit.RecurrentModule)
            opt_net.zero_grad()
            out = probe.forward(net, data.x)
            loss = task.loss(out, data)
            during = probe.measure(net, out, data, task)  # copy: its own backward now; adding: None
            loss.backward()
            (during or probe.collect()).mean((1, "h"))
            opt_net.step()

        return step

    steps = {"plain": plain_step, "fused": fused_step, "chunked probe": probed("chunked")}
    if cell in INJECTABLE:
        steps["fused probe"] = probed("fused")
    return timed(steps, device, repeats)


#: A probed-step ratio this many times above or below the recorded one is flagged: the probe's cost moved.
MOVED = 2.0


def recorded_ratios(path: Path, task: str) -> dict[tuple[str, int], float]:
    """The recorded faster-method probe ratio per (cell, T): the table after the line that starts with the task's name."""
    rows: dict[tuple[str, int], float] = {}
    inside = False
    for line in path.read_text().splitlines():
        if line.startswith(f"{task.capitalize()} ("):
            inside = True
        elif inside and line.startswith("| ") and not line.startswith("| cell"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            ratios = [float(c) for c in cells[4:6] if c.replace(".", "", 1).isdigit()]
            rows[(cells[0], int(cells[1]))] = min(ratios)
        elif inside and rows and not line.startswith("|"):
            break
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=[100, 500, 1000])
    p.add_argument("--cells", nargs="+", default=list(CELLS))
    p.add_argument("--task", default="copy", choices=["copy", "adding"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--every", type=int, default=100, help="probe cadence for the amortised cost (probe.every)")
    p.add_argument("--quick", action="store_true", help="T=100 only, 3 repeats")
    p.add_argument("--recorded", type=Path, help=f"flag a probe ratio {MOVED:g}x away from this file's (benchmarks/RESULTS.md)")
    args = p.parse_args()
    set_tf32(False)  # cuDNN RNNs follow torch.backends.cudnn.allow_tf32, which PyTorch leaves on: full FP32 here
    recorded = recorded_ratios(args.recorded, args.task) if args.recorded else {}
    if args.quick:
        args.T, args.repeats = [100], 3
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"# probe benchmark on {name}; torch {torch.__version__}; batch {args.batch}, hidden {args.hidden}, 1 layer, "
        f"{args.task} task, answer-loss probe"
    )
    print(
        "| cell | T | plain step (ms) | fused / plain | chunked probe / fused | fused probe / fused | faster method "
        f"| amortised cost at every {args.every} |" + (" recorded probe / fused |" if recorded else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|" if recorded else ""))
    moved = []
    for T in args.T:
        for cell in args.cells:
            t = bench(cell, args.task, T, args.batch, args.hidden, device, args.repeats)
            methods = {m: t[f"{m} probe"] for m in ("chunked", "fused") if f"{m} probe" in t}
            best = min(methods, key=methods.get)
            amortised = (methods[best] - t["fused"]) / (args.every * t["fused"])
            fused = f"{methods['fused'] / t['fused']:.2f}" if "fused" in methods else "- (not exact)"
            then = recorded.get((cell, T))
            now = methods[best] / t["fused"]
            flag = ""
            if then is not None:
                flag = f" {then:.2f}{' **moved**' if max(now / then, then / now) > MOVED else ''} |"
                if "moved" in flag:
                    moved.append(f"{cell} T={T}: {now:.2f} now, {then:.2f} recorded")
            print(
                f"| {cell} | {T} | {1e3 * t['plain']:.1f} | {t['fused'] / t['plain']:.2f} | "
                f"{methods['chunked'] / t['fused']:.2f} | {fused} | {best} | {100 * amortised:.2f}% |{flag}",
                flush=True,
            )
    if moved:
        print(f"bench_probe: the probed step's cost moved more than {MOVED:g}x from {args.recorded}: " + "; ".join(moved),
              file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
