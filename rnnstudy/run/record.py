"""run.json's contract: one typed model of a run's record (no torch import), written by ``store.RunWriter`` only.

A field added here is written by the run and read by the report's run table (``report.frames.run_table``) through
the same attribute; a run.json that does not match (a missing field, a wrong type) is read as damaged, by name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from rnnstudy.run.config import RunConfig


class StudyFacts(BaseModel):
    """A run's place in a study (all unset for a hand run): its grid point's facts, trial, searched values and seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str = ""
    study: str = ""
    line: str = ""
    stage: str = ""
    cell: str = ""
    task: str = ""
    T: int | None = None
    family: str = ""
    row: str = ""
    axis: str = ""
    value: float | None = None
    base: str = ""
    trial: int | None = None
    params: dict[str, Any] = {}
    seed: int | None = None

    def given(self) -> dict[str, Any]:
        """The facts as the study handed them (unset ones left out): what the run's key and name are made of."""
        return self.model_dump(exclude_unset=True)


class Provenance(BaseModel):
    """Where the run's code came from (None outside a git checkout) and its parameter count."""

    commit: str | None
    dirty: bool | None
    parameters: int


class Packing(BaseModel):
    """A packed run's place in its pack: how many members, which one, whether they train as one stacked computation."""

    members: int
    index: int
    stacked: bool


class RunInfo(BaseModel):
    """One run's run.json: what it is (key, names, config, study facts), how it was made, and how it ended."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    key: str
    run_id: str
    experiment: str
    name: str
    status: str
    reason: str | None = None
    resumed_from_step: int | None = None
    #: How each earlier attempt at this run, in this folder, ended (``dead``: killed; or failed, with its reason).
    earlier: list[str] = []
    config: RunConfig
    meta: StudyFacts = StudyFacts()
    baseline: float
    seq_len: int
    probe_method: str | None = None
    tf32: dict[str, bool]
    deterministic: bool
    versions: dict[str, str]
    provenance: Provenance
    command: str
    #: The user's command that started the sweep whose worker ran this run (None: a run of its own).
    launched_by: str | None = None
    device: str
    packed: Packing | None = None
    started: datetime
    final: dict[str, float] = {}
    best: dict[str, float] = {}
    steps: int | None = None
    steps_to_solve: int | None = None
    wall_s: float | None = None
    summary: dict[str, Any] = {}
    steps_per_s: float | None = None
    ended: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The record as run.json holds it (the study facts as given)."""
        return {**self.model_dump(mode="json"), "meta": self.meta.given()}
