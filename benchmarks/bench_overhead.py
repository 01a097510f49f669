"""The harness's own cost at the sizes studies use: whole processes of `rnnstudy train` against a hand-written loop.

For each size and cell, paired runs (harness, plain, harness, plain, ...), median of ``--pairs``:

- the whole run of ``--steps`` steps (start-up included), harness / plain;
- per step: (wall(steps) - wall(10)) / (steps - 10) on each side, harness / plain;
- start-up: the wall time of a 10-step run on each side.

The harness runs as a user runs it (`rnnstudy train`, probe every 100 steps, validation every 100 on 1024
sequences, W&B offline, checkpoints), the plain loop is benchmarks/plain_loop.py (the same task batches,
fused layer, RMSprop, clipping and validation; nothing logged or written). Then the per-trial cost a sweep
worker adds beyond training (median of ``--pairs`` sweep pairs), and how long a configuration error and
``--version`` take to come back.

    python benchmarks/bench_overhead.py                       # small and medium, LSTM; about 10 minutes here
    python benchmarks/bench_overhead.py --sizes small --cells lstm rnn_tanh --pairs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "small": {"hidden": 64, "batch": 64, "T": 40, "steps": 2000},
    "medium": {"hidden": 128, "batch": 128, "T": 100, "steps": 500},
}


def wall(cmd: list[str]) -> float:
    """Seconds one process takes, start to exit (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def commands(cell: str, size: dict, steps: int, out: Path) -> tuple[list[str], list[str]]:
    """The harness and the plain command for one run of ``steps`` steps."""
    harness = [
        sys.executable, "-m", "rnnstudy.cli", "train", f"out={out}", f"model.cell={cell}", "task.name=adding",
        f"task.T={size['T']}", f"model.hidden_size={size['hidden']}", f"train.batch_size={size['batch']}",
        f"train.steps={steps}", "train.optimizer=rmsprop", "train.val_every=100", "task.val_size=1024",
        "train.progress=false", "train.accelerator=cpu", "wandb.mode=offline",
    ]  # fmt: skip
    plain = [sys.executable, "benchmarks/plain_loop.py", "--cell", cell, "--hidden", str(size["hidden"]),
             "--batch", str(size["batch"]), "--T", str(size["T"]), "--steps", str(steps)]  # fmt: skip
    return harness, plain


def run_rows(sizes: list[str], cells: list[str], pairs: int, out: Path) -> None:
    """Print the whole-run, per-step and start-up rows."""
    print("| size | cell | plain run (s) | harness run (s) | run: harness / plain | plain step (ms) | harness step (ms) "
          "| step: harness / plain | start-up: plain, harness (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sizes:
        size = SIZES[name]
        for cell in cells:
            long_h, long_p = commands(cell, size, size["steps"], out)
            short_h, short_p = commands(cell, size, 10, out)
            runs: dict[str, list[float]] = {"h": [], "p": [], "hs": [], "ps": []}
            for _ in range(pairs):
                runs["h"].append(wall(long_h))
                runs["p"].append(wall(long_p))
                runs["hs"].append(wall(short_h))
                runs["ps"].append(wall(short_p))
            ratio = statistics.median(h / p for h, p in zip(runs["h"], runs["p"]))
            step = {k: [(a - b) / (size["steps"] - 10) for a, b in zip(runs[k], runs[k + "s"])] for k in ("h", "p")}
            step_ratio = statistics.median(h / p for h, p in zip(step["h"], step["p"]))
            m = {k: statistics.median(v) for k, v in runs.items()}
            print(f"| {name} (hidden {size['hidden']}, batch {size['batch']}, T {size['T']}, {size['steps']} steps) | {cell} "
                  f"| {m['p']:.2f} | {m['h']:.2f} | {ratio:.2f} | {1e3 * statistics.median(step['p']):.2f} "
                  f"| {1e3 * statistics.median(step['h']):.2f} | {step_ratio:.2f} | {m['ps']:.2f}, {m['hs']:.2f} |",
                  flush=True)  # fmt: skip


def per_trial(out: Path, trials: int = 6) -> float:
    """Seconds a sweep worker spends per trial beyond the runs' own wall time: sweeps of n and 2n one-seed trials."""
    walls, trained = [], []
    for n in (trials, 2 * trials):
        shutil.rmtree(out / f"sweep{n}", ignore_errors=True)  # a repeat starts a fresh study
        exp = out / f"trials{n}.yaml"
        exp.write_text(
            f"name: trials{n}\nmodel: {{hidden_size: 16, cell: lstm}}\ntask: {{name: adding, T: 20, val_size: 64}}\n"
            "train: {steps: 20, batch_size: 16, val_every: 10, progress: false, accelerator: cpu}\nprobe: {every: 10}\n"
            "wandb: {mode: offline}\nseeds: [0]\nsearch: {init.gain: {type: float, low: 0.5, high: 1.5}}\n"
            f"families: {{orthogonal: {{init.recurrent: orthogonal}}}}\nstudy: {{trials: {n}, pruner: none}}\n"
            f"out: {out / f'sweep{n}'}\n"
        )
        walls.append(wall([sys.executable, "-m", "rnnstudy.cli", "sweep", str(exp)]))
        runs = [json.loads(p.read_text()) for p in (out / f"sweep{n}" / f"trials{n}").glob("*/run.json")]
        trained.append(sum(r["wall_s"] for r in runs))
    return ((walls[1] - walls[0]) - (trained[1] - trained[0])) / trials


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--cells", nargs="+", default=["lstm"], choices=["rnn_tanh", "rnn_relu", "lstm", "gru"])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--only-trial", action="store_true", help="only the per-trial, configuration-error and --version rows")
    args = p.parse_args()
    print("# harness vs a hand-written loop, whole processes, paired, median of", args.pairs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if not args.only_trial:
            run_rows(args.sizes, args.cells, args.pairs, out)
        trial = statistics.median(per_trial(out) for _ in range(args.pairs))
    error = statistics.median(
        wall_ok([sys.executable, "-m", "rnnstudy.cli", "train", "model.cell=lstn"]) for _ in range(args.pairs)
    )
    version = statistics.median(wall([sys.executable, "-m", "rnnstudy.cli", "--version"]) for _ in range(args.pairs))
    print(f"\n| per trial in a sweep worker, beyond training (s) | a configuration error (s) | --version (s) |\n|---|---|---|\n"
          f"| {trial:.2f} | {error:.2f} | {version:.2f} |")  # fmt: skip


def wall_ok(cmd: list[str]) -> float:
    """Seconds a process takes that is meant to fail with a configuration error (exit 2)."""
    start = time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT).returncode
    assert code == 2, code
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
