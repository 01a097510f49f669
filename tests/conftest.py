"""Shared fixtures: tiny configs that run the real pipeline in about a second."""

from __future__ import annotations

import os

import pytest

from rnnstudy.config import RunConfig, apply_overrides

os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def tiny(tmp_path):
    """Build a tiny run config under a temp results root, with extra dotted overrides."""

    def make(**overrides):
        base = {
            "experiment": "t",
            "out": str(tmp_path / "runs"),
            "model.hidden_size": 8,
            "task.name": "adding",
            "task.T": 12,
            "task.val_size": 64,
            "train.steps": 20,
            "train.batch_size": 16,
            "train.val_every": 10,
            "train.log_every": 1,
            "train.progress": False,
            "probe.every": 10,
            "wandb.mode": "disabled",
            "train.accelerator": "cpu",
        }
        base.update({k.replace("__", "."): v for k, v in overrides.items()})
        return apply_overrides(RunConfig(), base)

    return make
