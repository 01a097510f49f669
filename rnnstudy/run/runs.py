"""A run's identity and which folder it trains in: its one name, its study's name and its key. The same run (its
config and study facts) is read back once it ended, resumed from its checkpoint when it was killed, and claimed while
one process trains it, so no run is trained twice or lost."""

from __future__ import annotations

import fcntl
import hashlib
import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rnnstudy.model import inits
from rnnstudy.names import COMPLETE, DIVERGED, FAILED, RUNNING
from rnnstudy.run.config import LATER_FIELDS, RunConfig
from rnnstudy.run.record import RunInfo
from rnnstudy.run.store import RUN_FILE, hold, read_info


def schemes(cfg: RunConfig) -> str:
    """The run's initialisation schemes in a name: ``orthogonal``, ``default+chrono``."""
    return inits.schemes_name(cfg.init.recurrent, cfg.init.bias)


def run_name(cfg: RunConfig, meta: dict[str, Any] | None = None) -> str:
    """A run's one name, shown everywhere (its folder, run.json, W&B, the progress lines): [stage-]cell-task-T-init
    [-axis=value]-s<seed>[-t<trial>]. A study's run says its family and the value it is held at (a calibration's: its
    lr); a searched study's, its trial, whose parameters tell its runs apart; a hand run, its schemes."""
    meta = meta or {}
    if not meta.get("study"):
        return f"{cfg.model.cell}-{cfg.task.name}-T{cfg.task.T}-{schemes(cfg)}-s{cfg.seed}"
    value = meta.get("value")
    setting = f"-{meta['axis'].split('.')[-1]}={value:g}" if meta.get("axis") else ""
    family = meta.get("family") or schemes(cfg)
    stage = f"{meta['stage']}-" if meta.get("stage") else ""
    trial = f"-t{meta['trial']}" if meta.get("params") and "trial" in meta else ""
    return f"{stage}{cfg.model.cell}-{cfg.task.name}-T{cfg.task.T}-{family}{setting}-s{cfg.seed}{trial}"


def command_line() -> str:
    """This process's command line, the program by name (no path of this box)."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])


def study_name(experiment: str, cfg: RunConfig, stage: str = "", family: str = "", setting: str = "", row: str = "") -> str:
    """A study's name, for people: experiment/[stage/]cell/task/T=../[family/][setting/][row] (a hand run's: its
    experiment, cell, task and T)."""
    parts = [experiment, stage, cfg.model.cell, cfg.task.name, f"T={cfg.task.T}", family, setting, row]
    return "/".join(p for p in parts if p)


CHECKPOINT = Path("checkpoints") / "last.ckpt"
#: The folder (under the experiment's results) of the per-run-key claim locks.
KEYS = ".keys"
#: The folder (under the experiment's results) of packed runs' shared checkpoints.
PACKS = ".packs"


def run_key(cfg: RunConfig, meta: dict[str, Any] | None, device: str = "cpu") -> str:
    """What makes two runs the same run: the config, the study's facts and the device type it trains on, not the trial
    number (a retry is the same run). A CPU run's key is the key it always had; another device type's adds it, so a
    run recorded on a CPU is never read back into a GPU study, nor resumed from a CPU checkpoint (whose generator
    state a CUDA generator cannot take)."""
    facts = {k: v for k, v in (meta or {}).items() if k != "trial"}
    if device != "cpu":
        facts["device"] = device
    config = cfg.model_dump(mode="json")
    for section, names in LATER_FIELDS.items():
        defaults = type(getattr(cfg, section))()
        for name in names:
            if getattr(getattr(cfg, section), name) == getattr(defaults, name):
                del config[section][name]
    text = json.dumps({"config": config, "meta": facts}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _same_named(cfg: RunConfig, meta: dict[str, Any] | None) -> list[tuple[Path, RunInfo]]:
    """The readable run folders of the experiment that carry this run's name but for its trial (only they can hold the
    same run: a retried trial reaches the runs of the trial before it)."""
    out = []
    untried = {k: v for k, v in (meta or {}).items() if k != "trial"}
    for info_path in sorted((cfg.out / cfg.experiment).glob(f"*-{run_name(cfg, untried)}*/{RUN_FILE}")):
        try:
            out.append((info_path.parent, read_info(info_path.parent)))
        except (OSError, ValueError):
            continue
    return out


def recorded(cfg: RunConfig, meta: dict[str, Any] | None, key: str) -> tuple[Path, RunInfo] | None:
    """The folder and run.json of a run of the same key that already ended as a result (complete or diverged)."""
    for folder, info in _same_named(cfg, meta):
        if info.key == key and info.status in (COMPLETE, DIVERGED):
            return folder, info
    return None


@contextmanager
def claimed(cfg: RunConfig, key: str) -> Iterator[None]:
    """Hold the claim on a run key for as long as this process trains it; another process waits here until it is free.

    The claim is a lock file per key under the experiment's ``.keys`` folder (flock, dropped by the OS when the
    process dies), so two workers that reach the same run at once never both train it.
    """
    folder = cfg.out / cfg.experiment / KEYS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def resumable(cfg: RunConfig, meta: dict[str, Any] | None, key: str, checkpoint: Path | None = None) -> tuple[Path, Any] | None:
    """An unfinished, unlocked run of the same key with a checkpoint (its own, or its pack's ``checkpoint``), and its
    lock; None when there is none."""
    for folder, info in _same_named(cfg, meta):
        saved = checkpoint if checkpoint is not None else folder / CHECKPOINT
        if info.key == key and info.status in (RUNNING, FAILED) and saved.exists():
            lock = hold(folder)
            if lock is not None:
                return folder, lock
    return None


def new_run_id(cfg: RunConfig, meta: dict[str, Any] | None) -> str:
    """A unique, sortable run id: the time it started, the run's name, and a random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{run_name(cfg, meta)}-{secrets.token_hex(3)}"
