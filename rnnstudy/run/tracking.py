"""Weights & Biases tracking: one W&B run per training run, on the training-step axis.

project = experiment, group = study, one run per training run (``job_type`` train), metric keys
namespaced ``train/``, ``val/``, ``grad/`` and every one of them charted against
``trainer/global_step`` (declared with ``define_metric``; each training step is one W&B step, so
W&B's own ``_step`` is the training step too). Gradient profiles are one small table and line
chart per probe (the profile of that probe only, so what is logged grows linearly with the probes)
plus a heatmap image at the end, never one scalar key per time step. Offline runs live in the
run's folder (``<run>/wandb/offline-run-*``) and upload later with ``rnnstudy sync``.
"""

from __future__ import annotations

import math
import netrc
import os
import stat
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult, urlparse

import numpy as np
import pandas as pd

from rnnstudy.errors import ConfigError
from rnnstudy.names import LOSS, NORM_LOSS, SOLVED, TRAIN, VAL
from rnnstudy.run.config import RunConfig
from rnnstudy.run.store import GRADFLOW_FILE, METRICS_FILE, RUN_FILE

SETTINGS = {
    "silent": True,
    "disable_git": True,
    "save_code": False,
    "disable_code": True,
    "console": "off",
    "x_transaction_log_flush_interval": 1.0,
}  # a killed run keeps its record up to its last second
STEP = "trainer/global_step"
#: A run's console file, the one W&B's Logs tab shows.
CONSOLE = "output.log"
#: The folder under a run's results folder where W&B stages what the run uploads when synced.
DATA_DIR = "wandb-data"
#: The file in a staging folder holding its id, which names its staging link (:func:`stage_link`).
STAGE_ID = "stage-id"
#: Where staging links live: the same path on every box for one account (``/tmp/rnnstudy-stage-<uid>``), a folder
#: only that account can write, so no other account can decide where a run's files go; ``$RNNSTUDY_STAGE_LINKS``
#: moves it (every box that writes or syncs a folder must then agree on it).
STAGE_LINKS_ENV, STAGE_LINKS = "RNNSTUDY_STAGE_LINKS", "/tmp/rnnstudy-stage"
#: What ``define_metric`` keeps in the summary beside the last value.
#: Every loss, training or validation, keeps the same summary views: its minimum and its last value.
SUMMARIES = {f"{split}/{loss}": "min,last" for split in (TRAIN, VAL) for loss in (LOSS, NORM_LOSS)}
#: The type of a run's record artifact, and its name's prefix (the run id follows).
RECORD_ARTIFACT = "record"
WANDB_MODES = ("offline", "online", "disabled", "dryrun", "run", "shared")


def api_url() -> ParseResult:
    """The W&B server this process would talk to (``WANDB_BASE_URL``, else W&B's cloud)."""
    return urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")


def api_host() -> str:
    """The host name of :func:`api_url`."""
    return api_url().hostname or "api.wandb.ai"


def has_api_key() -> bool:
    """Whether W&B credentials are set up (``WANDB_API_KEY`` or a netrc entry from ``wandb login``), without a network call."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(api_host()) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def check_mode(mode: str) -> None:
    """Refuse, before anything runs, a W&B setup (``wandb.mode`` and the environment) that could only fail or prompt later."""
    env = os.environ.get("WANDB_MODE")
    if env is not None and env not in WANDB_MODES:
        raise ConfigError(f"WANDB_MODE = {env!r} (environment): allowed: {', '.join(WANDB_MODES)}")
    if mode == "online" and not has_api_key():
        raise ConfigError(
            "wandb.mode = 'online': no W&B API key (set WANDB_API_KEY or run `wandb login`); "
            "allowed without one: offline, disabled"
        )
    base = os.environ.get("WANDB_BASE_URL")
    if mode != "disabled" and base is not None and not (api_url().scheme in ("http", "https") and api_url().hostname):
        raise ConfigError(f"WANDB_BASE_URL = {base!r} (environment): allowed: the W&B server's http(s) URL, e.g. "
                          "https://api.wandb.ai, or unset")  # fmt: skip
    if mode != "disabled":
        stage_links()


def stage_links() -> Path:
    """The folder of this account's staging links, created only it can write; ConfigError where it is not such a
    folder (checked before anything is written: a link folder another account can write lets it redirect a run's
    staged files)."""
    given = os.environ.get(STAGE_LINKS_ENV)
    links = Path(given or f"{STAGE_LINKS}-{os.getuid()}")
    name = f"{STAGE_LINKS_ENV} = {str(links)!r}" if given else f"the staging folder {links}"
    allowed = "allowed: a folder of yours that only you can write" + ("" if given else f" (or set {STAGE_LINKS_ENV})")
    try:
        links.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise ConfigError(f"{name}: cannot create it ({err.strerror}); {allowed}") from None
    st = links.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{name}: is {'a link' if stat.S_ISLNK(st.st_mode) else 'not a folder'}; {allowed}")
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise ConfigError(f"{name}: another account owns it or can write in it; {allowed}")
    return links


def _nested_params(meta: dict[str, Any]) -> dict[str, Any]:
    """The study facts with the trial's searched values nested by their dotted keys (``init.gain`` -> init: {gain}),
    so W&B's config holds no key with a dot in it (the same values sit in the config's own sections too)."""
    nested: dict[str, Any] = {}
    for key, value in (meta.get("params") or {}).items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {**meta, "params": nested} if meta else {}


class WandbSink:
    """Sends a run's metrics, profiles and summary to one W&B run."""

    def __init__(self, cfg: RunConfig, folder: Path, run_id: str, name: str, group: str, extra: dict[str, Any]) -> None:
        import wandb

        tags = [cfg.model.cell, cfg.task.name, f"T={cfg.task.T}", f"init={cfg.init.recurrent}", f"bias={cfg.init.bias}"]
        stage_under(folder)
        self.folder = folder
        self.run = wandb.init(
            name=name,
            dir=str(folder),
            id=run_id,
            project=cfg.wandb.project or cfg.experiment,
            entity=cfg.wandb.entity,
            group=group,
            job_type=cfg.wandb.job_type or (extra.get("meta") or {}).get("stage") or "train",
            tags=tags + list(cfg.wandb.tags),
            config={**cfg.model_dump(mode="json"), **extra, "meta": _nested_params(extra.get("meta") or {})},
            mode=cfg.wandb.mode,
            # W&B's git panel: the commit the run's code came from, without W&B running git itself.
            settings=wandb.Settings(**SETTINGS, git_commit=(extra.get("provenance") or {}).get("commit")),
            reinit="create_new",
            resume="allow",  # a resumed run continues the same W&B run
        )
        define_step_axis(self.run)
        self.profiles: list[pd.DataFrame] = []
        self.step = 0
        self.budget = cfg.train.steps
        # The run's own console, as W&B's Logs tab shows it: W&B's capture is off because the runs of a pack share
        # one process (each would show every member's lines).
        self.console = Path(self.run.dir) / CONSOLE
        self.say(f"{self.run.name}: training {self.budget} steps")

    def say(self, line: str) -> None:
        """Append a line to the run's console (its Logs tab)."""
        with self.console.open("a") as out:
            out.write(line + "\n")

    def metrics(self, step: int, split: str, values: dict[str, float]) -> None:
        """Log scalars as ``<split>/<name>`` at the training step (a validation also says its line on the console)."""
        if split == VAL:
            solved = " (solved)" if values.get(SOLVED) else ""
            self.say(f"step {step}/{self.budget}: val loss / baseline {values.get(NORM_LOSS, math.nan):.4g}{solved}")
        self._log({f"{split}/{k}": v for k, v in values.items()}, step)

    def profile(self, step: int, frame: pd.DataFrame, scalars: dict[str, float]) -> None:
        """Log the probe's scalars and one line chart of this probe's profile per layer and state."""
        import wandb

        self.profiles.append(frame)
        charts: dict[str, Any] = {f"grad/{k}": v for k, v in scalars.items()}
        rows = with_log10(frame)
        for (loss, layer, state), part in rows.groupby(["loss", "layer", "state"]):
            table = wandb.Table(dataframe=part[["lag", "log10_g"]].reset_index(drop=True))
            charts[f"grad/{loss}/profile_l{layer}_{state}"] = wandb.plot.line(
                table, "lag", "log10_g", title=f"log10 |d({loss} loss)/d{state}_t| at step {step}, layer {layer}"
            )
        self._log(charts, step)

    def _log(self, data: dict[str, Any], step: int) -> None:
        stage_under(self.folder)  # the runs of a pack log in turn from one process: each stages under its own folder
        self.step = max(self.step, step)
        self.run.log({**data, STEP: self.step}, step=self.step)

    def finish(self, summary: dict[str, Any], exit_code: int, checkpoint: Path | None = None) -> None:
        """Write the summary, the gradient heatmaps and the run's record artifact (with ``checkpoint`` when given), and
        close the run."""
        import wandb

        images = {}
        if self.profiles:
            import matplotlib.pyplot as plt

            from rnnstudy.run.heatmap import profile_heatmap

            profiles = pd.concat(self.profiles, ignore_index=True)
            for (loss, layer, state), rows in profiles.groupby(["loss", "layer", "state"]):
                fig = profile_heatmap(rows, title=f"|d({loss} loss)/d{state}_t|, layer {layer}")
                images[f"grad/{loss}/heatmap_l{layer}_{state}"] = wandb.Image(fig)
                plt.close(fig)
                every = with_log10(rows)[["step", "lag", "log10_g"]]
                images[f"grad/{loss}/profiles_l{layer}_{state}"] = wandb.plot.line(
                    wandb.Table(dataframe=every.reset_index(drop=True)),
                    "lag",
                    "log10_g",
                    stroke="step",  # one line per probe, named by its training step
                    title=f"log10 |d({loss} loss)/d{state}_t| at every probe, layer {layer}",
                )
        if images:
            self._log(images, self.step)
        reason = f": {summary['reason']}" if summary.get("reason") else ""
        self.say(f"{summary['status']} after {summary['steps']} steps{reason}")
        self.run.save(str(self.console), base_path=self.run.dir, policy="now")
        self._log_record(checkpoint)
        self.run.summary.update(summary)
        self.run.tags = (*self.run.tags, f"status={summary['status']}")  # a W&B filter finds pruned, diverged, failed runs
        self.run.finish(exit_code=exit_code)
        share_staged(self.folder)

    def _log_record(self, checkpoint: Path | None) -> None:
        """The run's results-store files (its final run.json, its parquet files) as one artifact, ``record-<run id>``,
        so the W&B copy of a study holds every number its report reads."""
        import wandb

        stage_under(self.folder)
        what = "run.json, metrics.parquet and gradflow.parquet of the run's results folder"
        artifact = wandb.Artifact(f"{RECORD_ARTIFACT}-{self.run.id}", type=RECORD_ARTIFACT, description=what)
        for name in (RUN_FILE, METRICS_FILE, GRADFLOW_FILE):
            if (self.folder / name).is_file():
                artifact.add_file(str(self.folder / name), name=name)
        if checkpoint is not None and checkpoint.is_file():
            artifact.add_file(str(checkpoint), name=checkpoint.name)
        self.run.log_artifact(artifact)


def with_log10(frame: pd.DataFrame) -> pd.DataFrame:
    """A profile frame with ``log10_g``, the log10 of its gradient norms (a zero norm at the floor of float64)."""
    return frame.assign(log10_g=np.log10(frame["norm"].clip(lower=1e-300)))


def stage_under(folder: Path) -> None:
    """Have W&B stage the table artifacts the next runs log in ``folder`` (its default is the user's home), through
    the folder's staging link, so that a results folder moved or copied to another box carries every file its offline
    runs refer to (see :func:`stage_link`)."""
    os.environ["WANDB_DATA_DIR"] = str(stage_link(folder / DATA_DIR))


def stage_link(data_dir: Path) -> Path:
    """The address W&B stages a folder's files at: a link ``/tmp/rnnstudy-stage-<uid>/<id>`` to ``data_dir``, where the
    files are. W&B's offline log names each staged file by absolute path, and no public setting changes that; naming
    them by a link keyed by the folder's own id (written in it the first time) makes them findable wherever the folder
    is, once the link is made again: :func:`relink` (``rnnstudy sync`` runs it) does so. A fixed ``/tmp``, not
    ``$TMPDIR``, which differs between the jobs of a cluster."""
    data_dir.mkdir(parents=True, exist_ok=True)
    id_file = data_dir / STAGE_ID
    if not id_file.exists():
        id_file.write_text(uuid.uuid4().hex)
    link = stage_links() / id_file.read_text().strip()
    target = data_dir.resolve()
    if not (link.is_symlink() and Path(os.readlink(link)) == target):
        try:
            link.unlink(missing_ok=True)
            link.symlink_to(target, target_is_directory=True)
        except OSError as err:
            print(f"warning: cannot point {link} at {target} ({err.strerror}); it stays as it is", file=sys.stderr)
    return link


def relink(results: Path) -> int:
    """Point the staging link of every W&B staging folder under ``results`` at where it is now, and remove this
    account's links whose folder is gone; how many folders were linked."""
    folders = [d for d in results.rglob(DATA_DIR) if (d / STAGE_ID).is_file()]
    for data_dir in folders:
        stage_link(data_dir)
    for link in stage_links().iterdir():
        if link.is_symlink() and not link.exists():
            link.unlink()
    return len(folders)


def share_staged(folder: Path) -> None:
    """Give W&B's staged copies (written read-only for their owner) the mode of the folder's other files, so another
    account can copy or merge the results folder."""
    mode = stat.S_IMODE(folder.stat().st_mode) & 0o666
    for path in (folder / DATA_DIR).rglob("*"):
        if path.is_file():
            path.chmod(mode)


def define_step_axis(run: Any) -> None:
    """Every key against the training step; the summaries W&B keeps for the losses."""
    run.define_metric(STEP)
    for prefix in (TRAIN, VAL, "grad"):
        run.define_metric(f"{prefix}/*", step_metric=STEP)
    for key, summary in SUMMARIES.items():
        run.define_metric(key, step_metric=STEP, summary=summary)
