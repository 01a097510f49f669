"""Shared fixtures: tiny configs that run the real pipeline in about a second."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import lightning.pytorch as pl
import pytest
import torch

from rnnstudy.run.config import RunConfig
from rnnstudy.run.overrides import apply_overrides

# One torch thread in the suite's process and in every process it starts (set before they start): its models are
# tiny, where a second thread adds only synchronisation, and on a busy machine two threads a process slow each test
# many times. A user's OMP_NUM_THREADS is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")
# The suite's W&B staging links live in a folder of its own (inherited by every process a test starts), not in
# the box's /tmp/rnnstudy-stage, so that its many short-lived results folders leave no links behind.
os.environ["RNNSTUDY_STAGE_LINKS"] = tempfile.mkdtemp(prefix="rnnstudy-test-stage-")
# The signal tests stand for a terminal's Ctrl-C: the processes they start must not inherit the "ignore SIGINT" a
# shell gives a background job (the suite run with `&`), which the harness keeps on purpose.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_configure(config):
    """The suite silences exactly the warnings every entry point silences (rnnstudy.quiet), and nothing else."""
    from rnnstudy.quiet import NOTES

    for pattern in NOTES:
        config.addinivalue_line("filterwarnings", f"ignore:{pattern}")
    config.addinivalue_line("filterwarnings", "ignore::optuna.exceptions.ExperimentalWarning")


def pytest_unconfigure(config):
    """The suite's staging links go with it."""
    shutil.rmtree(os.environ["RNNSTUDY_STAGE_LINKS"], ignore_errors=True)


def cli(*args: str) -> list[str]:
    """The command line that runs ``rnnstudy ARGS`` with this interpreter (no console script needed)."""
    import sys

    return [sys.executable, "-m", "rnnstudy.cli", *args]


class Interrupt(pl.Callback):
    """Stops training as Ctrl-C would, after the training step ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.at:
            raise KeyboardInterrupt


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


class PostgresServer:
    """A throwaway PostgreSQL server: its URL, and stop/start for tests that take the database away."""

    def __init__(self, pg_ctl: list[str], data: str, options: str, log: str, url: str) -> None:
        self.pg_ctl, self.data, self.options, self.log, self.url = pg_ctl, data, options, log, url

    def start(self) -> None:
        import subprocess

        cmd = [*self.pg_ctl, "-D", self.data, "-o", self.options, "-l", self.log, "-w", "start"]
        subprocess.run(cmd, check=True, capture_output=True)

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as when the database host restarts."""
        import subprocess

        subprocess.run([*self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop"], capture_output=True)


@pytest.fixture(scope="session")
def postgres_server():
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
    server = PostgresServer(
        [*as_postgres, pg_ctl],
        str(data),
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
        str(root / "log"),
        f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server):
    """The throwaway PostgreSQL server's URL."""
    return postgres_server.url


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real single-node SLURM (munged, slurmctld, slurmd from Debian's slurm-wlm) in a temp folder; its environment.

    Needs root (slurmd runs jobs as their user) and the daemons installed (.ci/run installs them); skipped otherwise.
    """
    import shutil
    import signal
    import socket
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    daemons = [shutil.which(d) for d in ("munged", "slurmctld", "slurmd", "sbatch")]
    if os.geteuid() != 0 or not all(daemons):
        pytest.skip("a real SLURM needs root and slurm-wlm + munge installed (.ci/run installs them)")
    root = Path(tempfile.mkdtemp(prefix="rnnstudy-slurm-"))
    key = root / "munge.key"
    key.write_bytes(os.urandom(64))
    key.chmod(0o400)
    munge_socket = root / "munge.socket"
    subprocess.run(
        [
            "munged",
            "--force",
            f"--socket={munge_socket}",
            f"--key-file={key}",
            f"--log-file={root / 'munged.log'}",
            f"--pid-file={root / 'munged.pid'}",
            f"--seed-file={root / 'munged.seed'}",
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    host = socket.gethostname()
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    conf = root / "slurm.conf"
    conf.write_text(
        f"ClusterName=rnnstudytest\nSlurmctldHost={host}\nSlurmctldPort={ports[0]}\nSlurmdPort={ports[1]}\n"
        f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}\nCredType=cred/munge\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSchedulerType=sched/backfill\nSelectType=select/cons_tres\n"
        "SelectTypeParameters=CR_CPU\nReturnToService=2\nMpiDefault=none\nJobAcctGatherType=jobacct_gather/none\n"
        "AccountingStorageType=accounting_storage/none\nSlurmUser=root\nSlurmdUser=root\n"
        f"SlurmctldPidFile={root / 'slurmctld.pid'}\nSlurmdPidFile={root / 'slurmd.pid'}\nSlurmdSpoolDir={root / 'spool'}\n"
        f"StateSaveLocation={root / 'state'}\nSlurmctldLogFile={root / 'slurmctld.log'}\nSlurmdLogFile={root / 'slurmd.log'}\n"
        f"NodeName={host} CPUs={os.cpu_count() or 1} State=UNKNOWN\n"
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["slurmctld"], env=env, check=True, capture_output=True)
    subprocess.run(["slurmd"], env=env, check=True, capture_output=True)
    for _ in range(100):  # until the node is idle (each try is a quick sinfo call)
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()
        if state == "idle":
            break
        time.sleep(0.2)
    else:
        pytest.skip(f"the test SLURM did not come up (node state {state!r}); see {root}")
    try:
        yield env
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
            try:
                os.kill(int((root / pid_file).read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        shutil.rmtree(root, ignore_errors=True)
