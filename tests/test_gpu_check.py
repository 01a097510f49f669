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
