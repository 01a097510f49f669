"""Weights & Biases tracking: a Lightning ``WandbLogger`` plus the harness's chart conventions.

project = experiment, group = study (cell/task/T), one run per training run, metric keys
namespaced ``train/``, ``val/``, ``grad/`` against ``trainer/global_step``. Gradient profiles
are one line chart per layer/state (log10 g_t against t, one line per probed step) and a
heatmap image at the end, never one scalar key per time step. Offline runs live in the run's
folder (``<run>/wandb/offline-run-*``) and upload later with ``make sync``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from lightning.pytorch.loggers import WandbLogger

from rnnstudy.config import RunConfig

SETTINGS = {"silent": True, "disable_git": True, "save_code": False, "disable_code": True, "console": "off"}


def run_name(cfg: RunConfig) -> str:
    """Readable run name: cell-task-T-init-seed."""
    init = cfg.init.recurrent if cfg.init.bias == "default" else f"{cfg.init.recurrent}+{cfg.init.bias}"
    return f"{cfg.model.cell}-{cfg.task.name}-T{cfg.task.T}-{init}-s{cfg.seed}"


def study_group(cfg: RunConfig) -> str:
    """The W&B group of a run: its study (cell/task/T)."""
    return f"{cfg.model.cell}/{cfg.task.name}/T={cfg.task.T}"


class WandbSink:
    """Sends a run's metrics, profiles and summary to one W&B run."""

    def __init__(self, cfg: RunConfig, folder: Path, run_id: str, group: str | None, extra: dict[str, Any]) -> None:
        import wandb

        tags = [cfg.model.cell, cfg.task.name, f"T={cfg.task.T}", f"init={cfg.init.recurrent}", f"bias={cfg.init.bias}"]
        self.run = wandb.init(
            name=run_name(cfg),
            dir=str(folder),
            id=run_id,
            project=cfg.wandb.project or cfg.experiment,
            entity=cfg.wandb.entity,
            group=group or study_group(cfg),
            job_type="train",
            tags=tags + list(cfg.wandb.tags),
            config={**cfg.model_dump(mode="json"), **extra},
            mode=cfg.wandb.mode,
            settings=wandb.Settings(**SETTINGS),
            reinit="create_new",
        )
        self.logger = WandbLogger(experiment=self.run)
        self.profiles: list[pd.DataFrame] = []

    def metrics(self, step: int, split: str, values: dict[str, float]) -> None:
        """Log scalars as ``<split>/<name>``."""
        self.logger.log_metrics({f"{split}/{k}": v for k, v in values.items()}, step=step)

    def profile(self, step: int, frame: pd.DataFrame, scalars: dict[str, float]) -> None:
        """Log the probe's scalars and redraw the profile charts with this probe added."""
        import wandb

        self.profiles.append(frame)
        charts: dict[str, Any] = {f"grad/{k}": v for k, v in scalars.items()}
        profiles = pd.concat(self.profiles, ignore_index=True)
        profiles = profiles.assign(log10_g=np.log10(profiles["norm"].clip(lower=1e-300)))
        for (layer, state), rows in profiles.groupby(["layer", "state"]):
            table = wandb.Table(dataframe=rows[["step", "t", "log10_g"]].astype({"step": str}))
            charts[f"grad/profile_l{layer}_{state}"] = wandb.plot.line(
                table, "t", "log10_g", stroke="step", title=f"log10 |dL/d{state}_t|, layer {layer} (one line per step)"
            )
        self.logger.log_metrics(charts, step=step)

    def finish(self, summary: dict[str, Any], exit_code: int) -> None:
        """Write the summary, the gradient heatmaps, and close the run."""
        import wandb

        images = {}
        if self.profiles:
            import matplotlib.pyplot as plt

            from rnnstudy.figures import profile_heatmap

            profiles = pd.concat(self.profiles, ignore_index=True)
            for (layer, state), rows in profiles.groupby(["layer", "state"]):
                fig = profile_heatmap(rows, title=f"log10 |dL/d{state}_t|, layer {layer}")
                images[f"grad/heatmap_l{layer}_{state}"] = wandb.Image(fig)
                plt.close(fig)
        if images:
            self.run.log(images)
        self.run.summary.update(summary)
        self.run.finish(exit_code=exit_code)
