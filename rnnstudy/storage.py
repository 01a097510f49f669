"""Optuna storages: the URL (a SQLite file by default, ``--storage-file``, ``$RNNSTUDY_STORAGE``), masking, opening.

A password never reaches a command line, a file the harness writes, or a message: URLs are shown
masked. Several sweeps may start at once on a new storage; whoever loses the race to create its
schema retries.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from rnnstudy.config import RunConfig
from rnnstudy.errors import ConfigError
from rnnstudy.experiment import Experiment
from rnnstudy.store import FAILED, RUN_FILE, RUNNING, read_info, run_folders, write_json

SCHEMA_ATTEMPTS = 10
#: What losing the race to create a new storage's schema looks like (SQLite and PostgreSQL); anything else is an error.
SCHEMA_RACE = ("unique", "locked", "already exists", "duplicate")
STORAGE_ENV = "RNNSTUDY_STORAGE"
#: The default storage's file name, under the experiment's results folder.
DB_FILE = "optuna.db"


def mask(url: str) -> str:
    """A storage URL safe to print or store: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable storage URL>"


def default_db(cfg: RunConfig) -> Path:
    """The default storage: a SQLite file under the experiment's results folder."""
    return (cfg.out / cfg.experiment / DB_FILE).resolve()


def default_storage(cfg: RunConfig) -> str:
    """The default storage's URL (its folder is created)."""
    path = default_db(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def storage_url(given: str | None = None, file: str | None = None) -> str | None:
    """The storage URL: ``--storage-file``, then ``--storage``, then ``$RNNSTUDY_STORAGE``; None means the default.

    A password is accepted only from the file or the environment: on a command line every local user sees it.
    """
    if file:
        try:
            given = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"--storage-file = {file!r}: cannot read it ({type(err).__name__})") from None
        if not given:
            raise ConfigError(f"--storage-file = {file!r}: the file is empty; it should hold one storage URL")
    elif given and password(given):
        raise ConfigError(
            f"--storage = {mask(given)}: a password on the command line is visible to every local user; "
            f"allowed: --storage-file FILE or the {STORAGE_ENV} environment variable"
        )
    return given or os.environ.get(STORAGE_ENV) or None


class RetryAndMark:
    """On a stale heartbeat: retry the trial and mark its unfinished store runs failed."""

    def __init__(self, root: Path) -> None:
        self.root, self.retry = root, RetryHeartbeatStaleTrialCallback(max_retry=3)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.retry(study, trial)
        for folder in run_folders(self.root):
            info = read_info(folder)
            meta = info.get("meta", {})
            if meta.get("study") == study.study_name and meta.get("trial") == trial.number and info["status"] == RUNNING:
                info.update(status=FAILED, reason="worker stopped: its heartbeat went stale; the trial was retried")
                write_json(folder / RUN_FILE, info)


def open_storage(url: str | None, exp: Experiment, cfg: RunConfig, create: bool = True) -> tuple[RDBStorage, str]:
    """Connect to the storage (creating the schema unless ``create`` is off); unreachable URLs are config errors.

    Several sweeps may start at once on a new storage: whoever loses the race to create the schema retries.
    """
    url = url or default_storage(cfg)
    heartbeat = exp.study.heartbeat_s
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                storage = RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=RetryAndMark(cfg.out / cfg.experiment),
                    skip_table_creation=not create,
                )
                break
            except (IntegrityError, OperationalError) as err:
                if attempt == SCHEMA_ATTEMPTS - 1 or not any(w in str(err).lower() for w in SCHEMA_RACE):
                    raise
                time.sleep(0.2 + random.random())
    except Exception as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        secret = password(url)
        if secret:
            text = text.replace(secret, "***")
        raise ConfigError(f"storage {mask(url)}: cannot open: {text}") from None
    return storage, url


def password(url: str) -> str | None:
    """The password in a storage URL, or None (also for a URL that does not parse)."""
    try:
        return make_url(url).password
    except Exception:
        return None
