"""TF32 in cuDNN RNNs against float64: does the GPU probe still measure a decaying gradient exactly?

PyTorch lets cuDNN use TF32 tensor cores by default (``torch.backends.cudnn.allow_tf32 = True``),
with a 10-bit mantissa. For an LSTM at initialisation on copy (T=500) this measures the answer-loss
profile on the GPU in float32 with TF32 off (the harness's default) and on, both probe methods,
against a float64 CPU computation on the same weights and batch, and prints the largest relative
error of g_t per band of g_t / max g.

    python benchmarks/tf32_check.py [--T 500] [--cell lstm]
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
from rnnstudy.run.device import set_tf32  # noqa: E402
from rnnstudy.study.experiment import load_run_config  # noqa: E402

BANDS = [(1e-3, 1.0), (1e-6, 1e-3), (1e-9, 1e-6), (0.0, 1e-9)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, default=500)
    p.add_argument("--cell", default="lstm")
    p.add_argument("--hidden", type=int, default=128)
    args = p.parse_args()
    cuda = torch.cuda.is_available()  # without one (the dry run) the same comparison runs float32 CPU against float64
    overrides = [f"model.cell={args.cell}", "task.name=copy", f"task.T={args.T}", f"model.hidden_size={args.hidden}"]
    cfg = load_run_config(None, overrides)
    torch.manual_seed(0)
    task = build_task(cfg)
    net = initial_net(cfg, task)
    batch = task.sample(64, torch.Generator().manual_seed(0))
    reference = profile(copy.deepcopy(net).double(), batch._replace(x=batch.x.double()), task).mean((1, "h"))
    ratio = reference / reference.max()
    where = torch.cuda.get_device_name() if cuda else "CPU (no GPU: TF32 does not apply)"
    print(f"# {where}: {args.cell} {args.hidden}, copy T={args.T}, answer-loss profile, float32 vs float64 CPU")
    print("| TF32 | method | g_t / max g | time steps | largest relative error |")
    print("|---|---|---|---|---|")
    device = "cuda" if cuda else "cpu"
    gpu_net = copy.deepcopy(net).to(device)
    gpu_batch = batch._replace(x=batch.x.to(device), y=batch.y.to(device), informative=batch.informative.to(device))
    methods = ["chunked", "fused"] if args.cell != "gru" else ["chunked"]
    for tf32 in (False, True) if cuda else (False,):
        set_tf32(tf32)
        for method in methods:
            g = profile(gpu_net, gpu_batch, task, method=method).mean((1, "h"))
            error = np.abs(g - reference) / reference
            for low, high in BANDS:
                band = (ratio >= low) & (ratio < high)
                if band.any():
                    row = (
                        f"| {'on' if tf32 else 'off'} | {method} | [{low:g}, {high:g}) | {band.sum()} | {error[band].max():.1e} |"
                    )
                    print(row, flush=True)
    set_tf32(False)


if __name__ == "__main__":
    main()
