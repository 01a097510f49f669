"""The harness's own error, a bad configuration (exit status 2), and the signals that stop a command cleanly: importable
without torch so the CLI answers fast."""

import signal

#: The signals a command ends cleanly on, each as Ctrl-C does; the last one that came, for the records and the exit status.
STOPS = (signal.SIGINT, signal.SIGTERM)
_received: list[signal.Signals] = []


class ConfigError(ValueError):
    """A bad configuration; the message names the key, the value and what is allowed."""


def stop_on_signals() -> None:
    """SIGINT and SIGTERM both stop this process as Ctrl-C does (a KeyboardInterrupt in the main thread), and the one
    that came is remembered (:func:`stop_reason`, :func:`stop_status`). Only the first stops it: one that comes while
    it stops (a second Ctrl-C, the sweep handing the signal on) is noted and not raised, so it cannot cut short the
    records the first one is finishing (a trial left running in the storage, a run.json half written)."""
    _received.clear()

    def stop(signum: int, frame: object) -> None:
        _received.append(signal.Signals(signum))
        if len(_received) == 1:
            raise KeyboardInterrupt

    for s in STOPS:
        if signal.getsignal(s) is not signal.SIG_IGN:  # a background job's inherited "ignore Ctrl-C" is kept
            signal.signal(s, stop)


def stopping() -> bool:
    """Whether a stop signal came: an error raised after it may be the signal landing inside a library call, which
    wrapped its KeyboardInterrupt (Optuna's storage turns one inside a commit into a StorageInternalError)."""
    return bool(_received)


def stop_signal() -> signal.Signals:
    """The signal that stopped this process (SIGINT where none was seen: Python's own Ctrl-C, or a stop from inside)."""
    return _received[0] if _received else signal.SIGINT


def stop_reason() -> str:
    """The stop in a run's record: ``Ctrl-C`` for SIGINT, the signal's name otherwise."""
    return "Ctrl-C" if stop_signal() == signal.SIGINT else stop_signal().name


#: How the reason of a run or trial that a stop signal ended begins (:func:`interrupted`).
INTERRUPTED = "interrupted ("


def interrupted() -> str:
    """The reason a run or trial records when a stop signal ended it: ``interrupted (Ctrl-C)``, ``interrupted (SIGTERM)``."""
    return f"{INTERRUPTED}{stop_reason()})"


def stop_status() -> int:
    """The conventional exit status of a process stopped by that signal: 128 + its number (130, 143)."""
    return 128 + stop_signal().value
