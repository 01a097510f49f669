"""Read an offline W&B run back from its ``run-*.wandb`` file (the LevelDB-style log wandb writes)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7
FULL, LAST = 1, 4


def records(path: Path) -> list[pb.Record]:
    """Every record in the file, in order."""
    data = path.read_bytes()
    ident, _, _ = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B", ident
    out, pos, buf = [], HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pos += HEADER
        if kind == 0 and length == 0:
            pos += left - HEADER
            continue
        buf += data[pos : pos + length]
        pos += length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


class OfflineRun:
    """The parts of an offline run the tests check."""

    def __init__(self, run_dir: Path) -> None:
        (path,) = run_dir.glob("run-*.wandb")
        self.dir = run_dir
        self.records = records(path)
        by_type: dict[str, list] = {}
        for r in self.records:
            by_type.setdefault(r.WhichOneof("record_type"), []).append(r)
        run = by_type["run"][0].run
        self.group, self.job_type, self.tags, self.name, self.project = (
            run.run_group,
            run.job_type,
            list(run.tags),
            run.display_name,
            run.project,
        )
        self.config = {}
        for r in by_type.get("config", []) + by_type["run"]:
            cfg = r.config if r.HasField("config") else r.run.config
            self.config.update({_key(u): json.loads(u.value_json) for u in cfg.update})
        self.history = [{_key(i): json.loads(i.value_json) for i in r.history.item} for r in by_type.get("history", [])]
        self.summary = {}
        for r in by_type.get("summary", []):
            self.summary.update({_key(u): json.loads(u.value_json) for u in r.summary.update})
        self.exit_code = by_type["exit"][0].exit.exit_code if "exit" in by_type else None

    def history_keys(self) -> set[str]:
        return {k for row in self.history for k in row}


def finished_run(run_dir: Path, timeout: float = 30.0) -> OfflineRun:
    """An offline run read once wandb has written all of it.

    wandb's service process can still be appending the last records just after ``run.finish()``
    returns on a loaded machine, so this waits for the run's exit record.
    """
    deadline = time.time() + timeout
    while True:
        run = OfflineRun(run_dir)
        if run.exit_code is not None or time.time() > deadline:
            return run
        time.sleep(0.2)


def offline_run(run_folder: Path) -> OfflineRun:
    """The single offline W&B run written under a results-store run folder."""
    (run_dir,) = (run_folder / "wandb").glob("offline-run-*")
    return finished_run(run_dir)
