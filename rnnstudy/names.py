"""The harness's vocabulary: every name that one module writes and another reads, spelled once.

Metric names (the store's ``metric`` column and W&B's keys after their split), run statuses (run.json's
``status``), the trial attributes a worker records and the stages read back, the solved fraction that makes
a point's verdict, the censored state of a memory-length estimate, and the SQLite storage URL.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

#: Metrics a run logs (``split``/``metric`` in the store, ``split/metric`` in W&B).
LOSS, NORM_LOSS, GRAD_NORM, SOLVED, LR = "loss", "norm_loss", "grad_norm", "solved", "lr"

#: The splits a run's metrics belong to: training steps, validations, the gradient probe's derived numbers.
TRAIN, VAL, PROBE = "train", "val", "probe"


def metric_key(name: str, loss: str = "answer", layer: int = 1, state: str = "h") -> str:
    """The name of a derived gradient number in the store and (under ``grad/``) in W&B: ``<loss>/<name>/l<layer>/<state>``."""
    return f"{loss}/{name}/l{layer}/{state}"


#: A run's status in run.json: ``running`` until it ends, then complete, pruned or diverged (each a result: trained to
#: its budget or solved bar, stopped by the pruner, or diverged) or failed (a crash or an interrupt, not a result).
RUNNING, COMPLETE, PRUNED, DIVERGED, FAILED = "running", "complete", "pruned", "diverged", "failed"
#: A running run whose process is gone (its lock is free): killed; rerunning the command resumes it.
DEAD = "dead"
#: A dead or failed run another folder of the same run key holds (trained again there): an earlier attempt, left out.
SUPERSEDED = "superseded"

#: At least this fraction of a point's seeds solved: the point is solved (the T search goes on past it, T50 crosses it).
SOLVED_FRACTION = 0.5


class TrialAttr:
    """The user attributes a worker writes on a trial as its seeds finish, and the stages read back."""

    SOLVED = "solved"  # per finished seed: whether it met the task's solved bar
    FINAL = "final"  # per finished seed: its final normalised validation loss (inf: diverged)
    RUN_IDS = "run_ids"  # per finished seed: its run id in the results store
    REASON = "reason"  # why the trial was pruned, diverged or was a surplus
    HEARTBEAT = "heartbeat"  # a journal storage's trial: when its worker last said it was alive (Unix time)


class Censored(str, Enum):
    """Whether a memory-length estimate is a number or a bound: every T tried solved (above) or none did (below)."""

    NONE = ""
    ABOVE = ">"
    BELOW = "<"


#: The environment variable a sweep hands its workers its own command line in (run.json's ``launched_by``).
SWEEP_COMMAND_ENV = "RNNSTUDY_SWEEP_COMMAND"


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite storage file (absolute, so it reads the same from any working directory)."""
    return f"sqlite:///{Path(path).resolve()}"
