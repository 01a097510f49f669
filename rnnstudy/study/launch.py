"""Sweep workers through a cluster scheduler: a SLURM job array via submitit (or submitit's local executor).

Each array task is one sweep worker on the shared storage, exactly like a local worker process. The
storage URL reaches the tasks through the environment (SLURM exports the submitting environment;
the local executor inherits it), never through the pickled job, so no secret lands in a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LAUNCHERS = ("local", "slurm", "submitit-local")
JOBS_FILE = "jobs.json"


@dataclass
class ClusterOptions:
    """What each array task asks the scheduler for."""

    gpus_per_task: int = 0
    cpus_per_task: int = 2
    time_min: int = 240
    partition: str | None = None
    parallelism: int | None = None


def array_worker(experiment: str, overrides: list[str], threads: int) -> int:
    """One array task: a sweep worker (its storage URL from the environment)."""
    from rnnstudy.study.worker import main

    return main([experiment, *overrides, "--threads", str(threads)])


def jobs_folder(results: Path) -> Path:
    """Where submitit keeps the array's scripts and logs, and where the job ids are recorded."""
    return results / "jobs"


def submit(
    results: Path, experiment: str, overrides: list[str], launcher: str, workers: int, options: ClusterOptions
) -> list[Any]:
    """Submit ``workers`` array tasks; record their ids in ``jobs/jobs.json``; return the submitit jobs."""
    import submitit

    folder = jobs_folder(results)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster="local" if launcher == "submitit-local" else "slurm")
    params: dict[str, Any] = {
        "name": f"rnnstudy-{results.name}",
        "timeout_min": options.time_min,
        "cpus_per_task": options.cpus_per_task,
    }
    if launcher == "slurm":
        params.update(gpus_per_node=options.gpus_per_task, slurm_array_parallelism=options.parallelism or workers)
        if options.partition:
            params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    threads = max(1, options.cpus_per_task)
    args = [str(Path(experiment).resolve())] * workers
    jobs = executor.map_array(array_worker, args, [overrides] * workers, [threads] * workers)
    records = [{"job_id": str(j.job_id), "launcher": launcher, "folder": str(folder)} for j in jobs]
    existing = json.loads((folder / JOBS_FILE).read_text()) if (folder / JOBS_FILE).exists() else []
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JOBS_FILE).write_text(json.dumps(existing + [{**r, "options": asdict(options)} for r in records], indent=1))
    return jobs


def job_states(results: Path) -> list[tuple[str, str]]:
    """The recorded array tasks and their scheduler states (SLURM: from sacct/squeue through submitit)."""
    path = jobs_folder(results) / JOBS_FILE
    if not path.exists():
        return []
    out = []
    for record in json.loads(path.read_text()):
        state = "local (see the trial counts)"
        if record["launcher"] == "slurm":
            import submitit

            try:
                state = submitit.SlurmJob(folder=Path(record["folder"]) / "%j", job_id=record["job_id"]).state
            except Exception as err:  # the scheduler is not reachable from here
                state = f"unknown ({type(err).__name__})"
        out.append((record["job_id"], state))
    return out


def storage_for_cluster(url: str) -> str | None:
    """A warning when the storage cannot be shared safely between nodes."""
    if url.startswith("sqlite") and os.environ.get("SLURM_JOB_ID") is None:
        return (
            "warning: SQLite storage on a shared filesystem is safe only on one node; for many, set RNNSTUDY_STORAGE to "
            "PostgreSQL or to a journal file on the shared file system (journal:PATH)"
        )
    return None
