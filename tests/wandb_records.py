"""Read an offline W&B run back with wandb's own maintained reader, ``wandb leet inspect --json``.

Each line it prints is one record of the run's ``.wandb`` transaction log (run, config, history,
summary, metric definitions, exit). Table contents are not in the log: wandb writes them as files
under ``files/media/table/``, read here as the JSON they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

WANDB = str(Path(sys.executable).with_name("wandb"))


def inspect(run_dir: Path) -> list[dict]:
    """Every record of the run's log as ``wandb leet inspect --json`` prints it."""
    out = subprocess.run([WANDB, "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


class OfflineRun:
    """The parts of an offline run the tests check."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.records = inspect(run_dir)
        by_type: dict[str, list[dict]] = {}
        for r in self.records:
            by_type.setdefault(r["type"], []).append(r[r["type"]] if r["type"] in r else r)
        run = by_type["run"][0]
        self.group, self.job_type, self.tags = run.get("run_group", ""), run.get("job_type", ""), run.get("tags", [])
        self.name, self.project, self.id = run.get("display_name", ""), run.get("project", ""), run.get("run_id", "")
        self.config = dict(run.get("config", {}).get("update", {}))
        for c in by_type.get("config", []):
            self.config.update(c.get("update", {}))
        self.environment = by_type.get("environment", [])
        self.history = [h["item"] for h in by_type.get("history", [])]
        self.summary: dict = {}
        for s in by_type.get("summary", []):
            self.summary.update(s.get("update", {}))
        self.metrics = by_type.get("metric", [])
        self.exit_code = by_type["exit"][0].get("exit_code", 0) if "exit" in by_type else None

    def history_keys(self) -> set[str]:
        return {k for row in self.history for k in row}

    def tables(self, key: str) -> list[tuple[int, dict]]:
        """The logged tables of a key (``grad/answer/profile_l1_h``) with the step their file is named by, oldest first."""
        folder = self.dir / "files" / "media" / "table" / Path(key).parent
        files = {int(p.name.split("_")[-2]): p for p in folder.glob(f"{Path(key).name}_table_*.table.json")}
        return [(step, json.loads(files[step].read_text())) for step in sorted(files)]


def finished_run(run_dir: Path) -> OfflineRun:
    """An offline run read once wandb has written all of it (its exit record).

    wandb's service process can still be appending the last records just after ``run.finish()``
    returns on a loaded machine; it always finishes, so this waits without a clock.
    """
    for _ in range(3000):
        run = OfflineRun(run_dir)
        if run.exit_code is not None:
            return run
        time.sleep(0.2)
    raise AssertionError(f"{run_dir}: no exit record was ever written")


def offline_run(run_folder: Path) -> OfflineRun:
    """The single offline W&B run written under a results-store run folder."""
    (run_dir,) = (run_folder / "wandb").glob("offline-run-*")
    return finished_run(run_dir)
