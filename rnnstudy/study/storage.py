"""Optuna storages: the URL (a SQLite file by default, ``--storage-file``, ``$RNNSTUDY_STORAGE``), masking, opening.

Three kinds: a SQLite file (the default, one box), a database server (PostgreSQL, many boxes), and a journal
file (``journal:PATH``, many boxes with a shared file system and no database server: Optuna's JournalStorage,
appends under a lock file, which Optuna advises over SQLite on NFS). A password never reaches a command line, a
file the harness writes, or a message: URLs are shown masked. Several sweeps may start at once on a new storage;
whoever loses the race to create its schema retries. A database that goes away (a restart, a dropped connection,
a locked SQLite file) is waited for: every storage call retries with backoff, said once per outage and process.
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from rnnstudy.errors import ConfigError
from rnnstudy.names import TrialAttr, sqlite_url
from rnnstudy.run.config import RunConfig
from rnnstudy.study.experiment import Experiment

SCHEMA_ATTEMPTS = 10
#: What losing the race to create a new storage's schema looks like (SQLite and PostgreSQL); anything else is an error.
SCHEMA_RACE = ("unique", "locked", "already exists", "duplicate")
STORAGE_ENV = "RNNSTUDY_STORAGE"
#: The default storage's file name, under the experiment's results folder.
DB_FILE = "optuna.db"
#: A journal-file storage's URL: ``journal:`` and the file's path.
JOURNAL = "journal:"


def journal_path(url: str) -> Path | None:
    """The file a journal storage URL names (None: a database URL)."""
    return Path(url[len(JOURNAL) :]).expanduser().resolve() if url.startswith(JOURNAL) else None


def mask(url: str) -> str:
    """A storage URL safe to print or store: the password replaced by ***."""
    if url.startswith(JOURNAL):
        return url
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
    return sqlite_url(path)


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


#: How long a process waits for a database that went away before it gives up (a server restart takes seconds).
PATIENCE_S = 600.0
#: The first and the longest wait between tries while it is away.
BACKOFF_S = (0.5, 5.0)
#: Operational errors that are a wrong schema or query, not an absent database: never waited for.
NOT_AWAY = ("no such table", "no such column", "does not exist", "syntax error")


def database_away(err: BaseException) -> BaseException | None:
    """The database error behind ``err`` when it says the database cannot be reached now (refused, cut, locked), else None."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, (OperationalError, InterfaceError)):
            return None if any(w in str(seen).lower() for w in NOT_AWAY) else seen
        seen = seen.__cause__ or seen.__context__
    return None


class Outage:
    """This process's view of the database being away: said once when it goes, once when it is back."""

    lock = threading.Lock()
    since: float | None = None

    @classmethod
    def begin(cls, url: str, err: BaseException) -> None:
        with cls.lock:
            if cls.since is None:
                cls.since = time.monotonic()
                first = " ".join(str(getattr(err, "orig", err)).split())[:160]
                print(f"pid {os.getpid()}: storage unreachable ({mask(url)}: {first}); retrying with backoff "
                      f"({BACKOFF_S[0]:g} s up to {BACKOFF_S[1]:g} s) for up to {PATIENCE_S / 60:g} min",
                      file=sys.stderr, flush=True)  # fmt: skip

    @classmethod
    def end(cls) -> None:
        with cls.lock:
            if cls.since is not None:
                print(f"pid {os.getpid()}: storage reachable again after {time.monotonic() - cls.since:.1f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
                cls.since = None


def patiently(url: str, call: Callable[[], Any]) -> Any:
    """``call()``, retried with backoff while the database is away, for up to ``PATIENCE_S`` from the first failure."""
    wait, away_since = BACKOFF_S[0], None
    while True:
        try:
            result = call()
        except Exception as err:
            away = database_away(err)
            away_since = away_since or time.monotonic()
            if away is None or time.monotonic() - away_since > PATIENCE_S:
                raise
            Outage.begin(url, away)
            time.sleep(wait * (0.5 + random.random()))
            wait = min(2 * wait, BACKOFF_S[1])
            continue
        Outage.end()
        return result


def _patient(method: Callable[..., Any]) -> Callable[..., Any]:
    """The storage method, waiting out a database that went away (:func:`patiently`)."""

    @functools.wraps(method)
    def call(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return patiently(self.url, lambda: method(self, *args, **kwargs))

    return call


class PatientStorage(RDBStorage):
    """Optuna's RDB storage whose every call waits out a database that went away, so a restart loses no trial.

    Writes are idempotent in effect: a retried state change that had landed raises Optuna's
    ``UpdateFinishedTrialError``, which the worker treats as a trial already finished.
    """

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail and retry the trials whose workers stopped (Optuna's own heartbeat)."""
        fail_stale_trials(study)

    def beating(self, trial: optuna.Trial) -> AbstractContextManager[None]:
        """Nothing to do: Optuna's ``optimize`` keeps an RDB storage's heartbeat."""
        return nullcontext()


for _name in [n for n in vars(BaseStorage) if not n.startswith("_")] + ["record_heartbeat"]:
    setattr(PatientStorage, _name, _patient(getattr(RDBStorage, _name)))


class RetryOnce(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose worker stopped, queued only where no retry of it is queued yet: two workers that
    both find the trial stale (SQLite has no row lock to stop the second) would otherwise queue the same
    configuration twice, and a search would lose a trial of its budget to the copy."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not any(t.system_attrs.get("failed_trial") == trial.number for t in study.get_trials(deepcopy=False)):
            super().__call__(study, trial)


class HeartbeatJournal(JournalStorage):
    """Optuna's journal-file storage, with a heartbeat of the harness's own (Optuna keeps none for a journal).

    While a trial trains, its worker stamps the time in the trial's ``heartbeat`` attribute every ``heartbeat_s``;
    any worker fails a running trial silent for twice that and retries it, as Optuna does for a database. The
    stamps are wall-clock times from the workers' machines, so a cluster's clocks must agree to well within
    ``heartbeat_s`` (NTP does). Two workers that fail the same trial at once may both queue a retry; the second
    ends as a surplus trial, so a study still holds exactly its target.
    """

    def __init__(self, url: str, heartbeat_s: float, on_stale: Callable[[optuna.Study, FrozenTrial], None]) -> None:
        path = str(journal_path(url))
        super().__init__(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
        self.url, self.heartbeat_s, self.on_stale = url, heartbeat_s, on_stale

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail and retry every running trial whose heartbeat is older than twice ``heartbeat_s``."""
        now = time.time()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # a retry inherits its failed trial's attributes, so its own start counts too
            last = max(trial.user_attrs.get(TrialAttr.HEARTBEAT, 0.0), trial.datetime_start.timestamp())
            if now - last > 2 * self.heartbeat_s:
                self.on_stale(study, study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True))

    @contextmanager
    def beating(self, trial: optuna.Trial) -> Iterator[None]:
        """Stamp the trial's heartbeat now and every ``heartbeat_s`` until the block ends."""
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    trial.set_user_attr(TrialAttr.HEARTBEAT, time.time())
                except optuna.exceptions.UpdateFinishedTrialError:
                    return  # another worker failed it meanwhile (this one was silent too long); the worker says so
                if stop.wait(self.heartbeat_s):
                    return

        thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


#: What the harness opens: a database (waited out when away) or a journal file.
Storage = PatientStorage | HeartbeatJournal


def open_storage(
    url: str | None, exp: Experiment, cfg: RunConfig, create: bool = True, wait: bool = False
) -> tuple[Storage, str]:
    """Connect to the storage (creating the schema, or the journal file, unless ``create`` is off); unreachable URLs
    are config errors.

    Several sweeps may start at once on a new storage: whoever loses the race to create the schema retries.
    With ``wait`` (a worker, whose sweep already opened it) a database that is away is waited for, as every call is.
    """
    url = url or default_storage(cfg)
    heartbeat = exp.study.heartbeat_s
    if url.startswith(JOURNAL):
        check_journal(url, create)
        return HeartbeatJournal(url, heartbeat, RetryOnce(max_retry=3)), url
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}

    def connect() -> PatientStorage:
        attempt = 0
        while True:
            try:
                return PatientStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=RetryOnce(max_retry=3),
                    skip_table_creation=not create,
                )
            except (IntegrityError, OperationalError) as err:
                attempt += 1
                if attempt == SCHEMA_ATTEMPTS or not any(w in str(err).lower() for w in SCHEMA_RACE):
                    raise
                time.sleep(0.2 + random.random())

    try:
        storage = patiently(url, connect) if wait else connect()
    except Exception as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        secret = password(url)
        if secret:
            text = text.replace(secret, "***")
        raise ConfigError(f"storage {mask(url)}: cannot open: {text}") from None
    return storage, url


def check_journal(url: str, create: bool) -> None:
    """A journal storage's file can be used, checked before anything is written: a path that names a file in an
    existing folder, the file itself unless it may be created, and every complete line an Optuna record. A last
    record cut mid-write (a node that died while appending) is dropped where the file may be written: no reader ever
    took it (Optuna skips a line without its newline), and an append after it would corrupt the journal."""
    path = journal_path(url)
    allowed = "allowed: journal:PATH, a journal file in an existing folder"
    if not url[len(JOURNAL) :].strip():
        raise ConfigError(f"storage {url}: names no file; {allowed}")
    if path.is_dir():
        raise ConfigError(f"storage {url}: is a folder; {allowed}")
    if not path.parent.is_dir():
        raise ConfigError(f"storage {url}: no folder {path.parent}; {allowed}")
    if create and not os.access(path.parent, os.W_OK):
        raise ConfigError(f"storage {url}: cannot write in {path.parent}; {allowed}")
    if not path.is_file():
        if not create:
            raise ConfigError(f"storage {url}: no journal file there (a sweep creates it)")
        return
    data = path.read_bytes()
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        if not line.endswith(b"\n"):
            break  # the cut last record, below
        try:
            json.loads(line)
        except ValueError:
            raise ConfigError(f"storage {url}: not an Optuna journal (line {number} is not a JSON record); {allowed}") from None
    if create and data and not data.endswith(b"\n"):
        _drop_cut_record(url, path)


def _drop_cut_record(url: str, path: Path) -> None:
    """Truncate the journal after its last complete record, holding the lock its writers append under."""
    lock = JournalFileOpenLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            with open(path, "r+b") as f:
                f.truncate(keep)
            print(f"storage {url}: its last record was cut at byte {keep} (a writer died mid-append); dropped "
                  f"{len(data) - keep} bytes no trial had read", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        lock.release()


def reader(url: str) -> BaseStorage:
    """A storage to read an existing store from, creating nothing: no schema, no journal file."""
    if url.startswith(JOURNAL):
        check_journal(url, create=False)
        return JournalStorage(JournalFileBackend(str(journal_path(url))))
    return RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)


def password(url: str) -> str | None:
    """The password in a storage URL, or None (also for a URL that does not parse)."""
    try:
        return make_url(url).password
    except Exception:
        return None
