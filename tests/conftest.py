"""Shared fixtures: tiny configs that run the real pipeline in about a second."""

from __future__ import annotations

import os

import pytest

from rnnstudy.config import RunConfig, apply_overrides

os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


def cli(*args: str) -> list[str]:
    """The command line that runs ``rnnstudy ARGS`` with this interpreter (no console script needed)."""
    import sys

    return [sys.executable, "-m", "rnnstudy.cli", *args]


@pytest.fixture
def tiny(tmp_path):
    """Build a tiny run config under a temp results root, with extra dotted overrides."""

    def make(**overrides):
        base = {
            "experiment": "t",
            "out": str(tmp_path / "runs"),
            "model.hidden_size": 8,
            "task.name": "adding",
            "task.T": 12,
            "task.val_size": 64,
            "train.steps": 20,
            "train.batch_size": 16,
            "train.val_every": 10,
            "train.log_every": 1,
            "train.progress": False,
            "probe.every": 10,
            "wandb.mode": "disabled",
            "train.accelerator": "cpu",
        }
        base.update({k.replace("__", "."): v for k, v in overrides.items()})
        return apply_overrides(RunConfig(), base)

    return make


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1, stopped at the end (skipped where none is installed)."""
    import shutil
    import socket
    import subprocess
    import tempfile
    from pathlib import Path

    bindir = (
        next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
        if Path("/usr/lib/postgresql").exists()
        else None
    )
    initdb = shutil.which("initdb") or (str(bindir / "initdb") if bindir else None)
    if not initdb:
        pytest.skip("PostgreSQL server binaries not installed (.ci/run installs them)")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="rnnstudy-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_postgres, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    start = [*as_postgres, pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
    subprocess.run(start, check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
