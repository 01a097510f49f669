"""The libraries' start-up chatter, turned down once by each entry point (CLI, sweep worker).

Only named, understood messages are silenced; everything else still shows.
"""

from __future__ import annotations

import warnings

#: Lightning warnings that do not apply here, with why.
LIGHTNING_NOTES = (
    ".*does not have many workers.*",  # batches are generated on the device: no loader workers to add
    ".*IterableDataset.*__len__.*",  # the training stream is endless by design; the step budget ends a run
    ".*Trainer.fit` stopped.*",  # the harness stops at its own step budget and says so itself
    ".*isinstance\\(treespec, LeafSpec\\).*",  # inside lightning 2.6.6's own _pytree helper with torch 2.13; nothing to do here
    ".*The `srun` command is available on your system but is not used.*",  # one process per worker is the design, SLURM or not
    ".*Checkpoint directory .* exists and is not empty.*",  # a resumed run keeps writing its last checkpoint where it was
)
#: Raised by torch 2.13 itself when forward-mode AD (the Lyapunov diagnostics' jvp) first loads its decompositions.
TORCH_NOTES = (".*torch.jit.script` is deprecated.*",)
#: Every warning message silenced (regular expressions); the test suite silences the same ones.
NOTES = (*LIGHTNING_NOTES, *TORCH_NOTES)


def quiet_libraries() -> None:
    """Named library warnings off, Optuna's trial logs off (the harness prints one line per trial outcome).

    Lightning's INFO notes (GPU/TPU availability, tips) are turned down where the Trainer is made (``train.make_trainer``):
    importing Lightning resets its loggers, and importing it here would slow every command that never trains.
    """
    import optuna

    for pattern in NOTES:
        warnings.filterwarnings("ignore", pattern)
    # Heartbeats, fail_stale_trials and the retry callback have carried this label since Optuna 2.9.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
