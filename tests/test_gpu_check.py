"""The GPU check's whole path, proven on this CPU before a GPU is lent: a fresh environment holding only what the GPU
box ships, the wheel folder installed with --no-index, every import, every measurement at small sizes (slow: minutes,
and it needs the package registry to build the emulated box and the wheel folder)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("box_image", "wheels", "install", "imports", "bench_train", "bench_train_deterministic", "bench_probe",
         "tf32_check", "bench_packing", "bench_sweep", "reproduction")  # fmt: skip


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu-dry-run"
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (out / "steps.log").read_text()
    for step in STEPS:
        assert f"{step}: exit 0 after" in log, log
    assert not (out / "failures.txt").exists()
    assert "rnnstudy modules import" in (out / "imports.md").read_text()
    for table in ("bench_train", "bench_probe", "tf32_check", "bench_packing", "bench_sweep"):
        rows = [line for line in (out / f"{table}.md").read_text().splitlines() if line.startswith("|")]
        assert len(rows) >= 3, (table, rows)  # a header, its rule and at least one measured row
    installed = {p.name.split("-")[0].lower() for p in (out / "wheels").glob("*.whl")}
    assert {"wandb", "optuna", "pydantic", "sqlalchemy", "alembic", "submitit", "rnnstudy"} <= installed
    assert not installed & {"torch", "lightning", "numpy", "pandas", "pyarrow", "scipy"}  # the box's own stay its own


def _fake(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """An environment whose PATH finds a stand-in ``name`` first."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_gpu_check_stops_at_once_on_an_old_glibc_or_no_driver(tmp_path):
    run = lambda env: subprocess.run(["bash", "benchmarks/gpu_check.sh", "--out", str(tmp_path / "o")], cwd=ROOT,  # noqa: E731
                                     capture_output=True, text=True, env=env)  # fmt: skip
    old = run(_fake(tmp_path, "ldd", 'echo "ldd (GNU libc) 2.17"'))
    assert old.returncode == 2
    assert old.stderr.strip() == "gpu_check.sh: glibc 2.17; allowed: 2.28 or newer (wandb's wheels are manylinux_2_28)"
    # the real ldd's answer runs on after its first line (reading only that line once failed on a good glibc)
    env = _fake(tmp_path, "ldd", 'echo "ldd (Debian GLIBC 2.36-9+deb12u14) 2.36"; seq 100000')
    env = _fake(tmp_path, "nvidia-smi", 'echo "NVIDIA-SMI has failed because it could not communicate with the driver"; exit 9')
    none = run(env)
    assert none.returncode == 2 and len(none.stderr.strip().splitlines()) == 1
    assert "nvidia-smi does not answer (NVIDIA-SMI has failed" in none.stderr and "no usable NVIDIA driver" in none.stderr


def test_gpu_checks_steps_on_the_box_fit_nine_minutes_by_their_own_limits():
    import re

    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    box = text[text.rindex("\nelse\n") :]  # the measurements on the GPU box (the dry run's sizes come before)
    limits = [int(n) for n in re.findall(r"^\s*step \w+ (\d+) ", box, re.M)]
    setup = [int(n) for n in re.findall(r"^step (?:install|imports) (\d+) ", text, re.M)]
    assert len(limits) >= 8 and len(setup) == 2 and sum(limits) + sum(setup) <= 9 * 60


def test_setup_with_the_system_torch_sees_the_system_site_and_installs_no_torch(tmp_path):
    """`make setup SYSTEM_TORCH=1` (a GPU box's own CUDA torch): its commands, as make would run them."""
    venv = tmp_path / "venv"
    plan = subprocess.run(["make", "-n", "setup", "SYSTEM_TORCH=1", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.splitlines()  # fmt: skip
    assert f"python3 -m venv --system-site-packages {venv}" in plan
    assert not any("pip install" in line and "torch" in line.split("install")[1].split("-e")[0] for line in plan)
    assert any(line.startswith(f"{venv}/bin/python -c \"import torch;") for line in plan)  # says which torch, fails without
    default = subprocess.run(["make", "-n", "setup", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()  # fmt: skip
    assert f'{venv}/bin/pip install -q "torch==2.13.0" ' in default  # the CPU path keeps its pin


#: The benchmarks at toy sizes: each still builds its networks through the harness's own API, so this catches a
#: benchmark that the harness moved away from (a model config it builds by hand lost a field) before a GPU box does.
QUICK = {
    "bench_probe": ["--T", "10", "--cells", "lstm", "rnn_tanh", "--repeats", "1", "--batch", "4", "--hidden", "8"],
    "tf32_check": ["--T", "10", "--hidden", "8"],
    "bench_packing": ["--K", "1", "2", "--T", "5", "--hidden", "8", "--batch", "4", "--repeats", "1"],
    "bench_scan": ["--T", "8", "--hidden", "8", "--repeats", "1"],
    "bench_train": ["--T", "5", "--cells", "rnn_tanh", "--steps", "5"],
}


@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s == "bench_train" else s for s in QUICK])
def test_each_benchmark_runs_at_toy_sizes_and_prints_its_table(script):
    import sys

    proc = subprocess.run([sys.executable, f"benchmarks/{script}.py", *QUICK[script]], cwd=ROOT, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert len(rows) >= 3, proc.stdout  # a header, its rule and at least one measured row
