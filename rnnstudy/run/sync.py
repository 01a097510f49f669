"""``rnnstudy sync``: upload a results folder's offline W&B runs with the pinned ``wandb sync``.

It first makes the folder's staging links again (rnnstudy.run.tracking.relink), so a results folder moved or copied
from another box, or one whose links a reboot cleared from /tmp, finds every staged file; ``--relink-only`` stops
there, without a key, for a plain ``wandb sync`` to follow. Before uploading anything it checks that there are
credentials and that the W&B server answers within a bounded wait: without them ``wandb sync`` would stop or hang
with no message.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from rnnstudy.errors import ConfigError
from rnnstudy.run.tracking import api_host, api_url, has_api_key, relink

#: How long the server may take to accept a connection before sync gives up.
CONNECT_S = 10
#: Flags passed to the pinned ``wandb sync`` (its test checks the pinned CLI still offers them).
SYNC_FLAGS = ("--yes", "--skip-synced")


def offline_runs(results: Path) -> list[Path]:
    """Every offline W&B run folder under a results folder (training runs and study summaries)."""
    return sorted(p for p in results.rglob("offline-run-*") if p.is_dir() and p.parent.name == "wandb")


def reachable(host: str, port: int, timeout: float = CONNECT_S) -> str | None:
    """None when the server accepts a connection, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return err.strerror or type(err).__name__


def sync(results: Path, relink_only: bool = False) -> int:
    """Relink, then upload every offline run under ``results`` (unless ``relink_only``); exit 2 without credentials, 1
    when the server cannot be reached."""
    runs = offline_runs(results)
    if not runs:
        raise ConfigError(f"{results}: no offline W&B runs under it (nothing to upload)")
    linked = relink(results)  # the staged files are found wherever the folder is now
    if relink_only:
        print(f"{linked} staging folders under {results} linked: `wandb sync` finds the staged files of its {len(runs)} "
              "offline runs")
        return 0
    if not has_api_key():
        raise ConfigError("no W&B API key: set WANDB_API_KEY or run `wandb login`, then sync again")
    url = api_url()
    port = url.port or (443 if url.scheme == "https" else 80)
    why = reachable(api_host(), port)
    if why:
        print(f"rnnstudy sync: cannot reach {api_host()}:{port} within {CONNECT_S}s ({why}); nothing uploaded", file=sys.stderr)
        return 1
    print(f"uploading {len(runs)} offline runs from {results} ({linked} staging folders linked) ...", flush=True)
    wandb = str(Path(sys.executable).with_name("wandb"))
    return subprocess.run([wandb, "sync", *SYNC_FLAGS, *map(str, runs)]).returncode
