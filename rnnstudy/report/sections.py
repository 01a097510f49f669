"""The report's sections as data: each one a title, its prose, the frame it shows, how it draws it, its tables.

``build_report`` renders them in order (rnnstudy.report.build); a new section is one entry in :data:`SECTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.storages import BaseStorage

from rnnstudy.analysis.memory import BOUND_LEVEL, MIN_SEEDS
from rnnstudy.report import (
    budget,
    calibration,
    curves,
    frontier,
    gradient_lag,
    heatmaps,
    phase,
    reproduction,
    search,
    sensitivity,
    tables,
)
from rnnstudy.run.store import Results


@dataclass
class Section:
    """One rendered part of the report: prose, figures and tables, written to Markdown and HTML alike."""

    title: str
    text: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)


@dataclass(frozen=True)
class Inputs:
    """What every section reads: the store, its run table, the memory-length frame, the Optuna storage, the folder, and
    the budget ladder with its growth laws (:func:`rnnstudy.report.budget.frame`, computed once)."""

    res: Results
    runs: pd.DataFrame
    memory: pd.DataFrame
    storage: BaseStorage | None
    out: Path
    ladder: tuple[pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True)
class ReportSection:
    """One section: its ``frame`` from the inputs, figures ``draw``n from that frame, ``tables`` of it, and its prose.

    ``empty`` is the prose where the frame holds nothing (the section then draws nothing); without it the section
    still draws whatever its figures make of an empty frame.
    """

    title: str
    text: str
    frame: Callable[[Inputs], Any]
    draw: Callable[[Any, Inputs], list[Path]] = lambda data, inputs: []
    tables: Callable[[Any, Inputs], list[pd.DataFrame]] = lambda data, inputs: []
    empty: str = ""

    def render(self, inputs: Inputs) -> Section:
        """The section for these inputs: its frame computed once, drawn and tabled."""
        data = self.frame(inputs)
        if self.empty and _is_empty(data):
            return Section(self.title, [self.empty], [], self.tables(data, inputs))
        return Section(self.title, [self.text], self.draw(data, inputs), self.tables(data, inputs))


def _is_empty(data: Any) -> bool:
    first = data[0] if isinstance(data, tuple) else data
    return isinstance(first, pd.DataFrame) and first.empty


def figure(draw: Callable[[Any, Path], Path | list[Path] | None], name: str) -> Callable[[Any, Inputs], list[Path]]:
    """A section's draw step: one figure module's ``draw(frame, path)`` into ``name`` under the report's folder."""

    def run(data: Any, inputs: Inputs) -> list[Path]:
        made = draw(data, inputs.out / name)
        return [p for p in (made if isinstance(made, list) else [made]) if p]

    return run


def _calibration(inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs = calibration.frame(inputs.runs)
    return runs, calibration.chosen(runs, inputs.runs)


def _reference(inputs: Inputs) -> pd.DataFrame:
    """The reference table; ``reproduction.md`` is written beside the report where enough rows were run."""
    table = reproduction.frame(inputs.runs)
    page = reproduction.page(table, "gradient_lag.png" if (inputs.out / "gradient_lag.png").exists() else None)
    if page:
        (inputs.out / "reproduction.md").write_text(page)
    return table


def _memory_figures(memory: pd.DataFrame, inputs: Inputs) -> list[Path]:
    t50 = figure(frontier.draw_t50, "memory_length.png")(memory, inputs)
    return t50 + figure(frontier.draw, "frontier.png")(frontier.frame(inputs.runs), inputs)


SECTIONS: list[ReportSection] = [
    ReportSection(
        "Gradient flow against lag",
        "log10 of the mean per-sample ||d(answer loss)/dh_t|| (layer 1) against how far back t lies from the end of the "
        "sequence (the last answer step), at initialisation and at the end of training, for the best and the default "
        "initialisation of each cell; one row per task and T. The answer loss is the loss on the steps that carry the "
        "answer (copy: the ten recall steps; adding: the last step). A flat line reaches far back; a falling one "
        "vanishes. 'end' is the last probe, taken at the run's last validation: the end of the budget, or "
        "the step it stopped once solved.",
        lambda i: gradient_lag.frame(i.res, i.runs),
        figure(gradient_lag.draw, "gradient_lag.png"),
    ),
    ReportSection(
        "Gradient-flow heatmaps",
        "Each panel: one run per task and cell, at the largest T that cell was trained at: its best initialisation's "
        "typical seed (the median final loss; the title says whether it solved); rows are probed training steps (a "
        "run stopped early once solved is probed at the step it stopped), columns the lag back from the end of the "
        "sequence; ||d(answer loss)/dh_t||, layer 1, on one colour scale shared by every panel.",
        lambda i: heatmaps.frame(i.res, i.runs),
        figure(heatmaps.draw, "heatmaps.png"),
    ),
    ReportSection(
        "Memory length",
        "Memory length is T50, at the budget each run trained for (the table's budget column): each (seed, T) run is "
        "one observation, solved within its budget or not; P(solved | T) is a logistic curve in log T and T50 is where "
        "it crosses one half: the median of its posterior (flat priors in log T50 and in log slope), with the 95% "
        "equal-tailed interval averaged over resamples of the seeds, so a seed's luck shared across T widens it; its "
        "coverage under the harness's own T search, at and beyond the design's edges, is simulated in "
        "docs/results/coverage.md. A bound is printed with its evidence: 'T50 > x: 5 of 5 solve x' where the runs at x "
        f"reject P(solved) <= 1/2 (one-sided binomial test at {BOUND_LEVEL:g}; 'not a 95% bound' where no T does), "
        "the mirror for 'T50 < x'. A line whose failures all lie at or above its successes but at one T is "
        "quasi-separated: with a T on each side of one half it is printed as the bracket between those design points "
        "with the runs at each; open on one side, it is a bound. An interval end beyond the T tried says so, "
        "as does "
        f"an estimate outside them. Fewer than {MIN_SEEDS} seeds make an estimate exploratory. Steps to solve "
        "are a Kaplan-Meier median (unsolved runs censored at the budget). 'T visited' lists the T each line was "
        "trained at (a T search brackets the transition: it doubles T while at least half the seeds solve, then bisects "
        "in log T; the bracket seeds then run at the two T around the crossing and go on up or down while their own "
        "verdicts put it outside). The frontier figures show the final normalised validation loss and the fraction of "
        "seeds solved "
        "against T, one panel per task and cell, one line per family (and setting), side by side where they share a T.",
        lambda i: i.memory,
        _memory_figures,
        lambda memory, i: [tables.memory_table(memory)],
    ),
    ReportSection(
        "Memory length against the training budget",
        "Memory length is a function of the budget. A run solved within b steps if and only if it first met its bar "
        "at or before step b, so T50 at a quarter, half, three quarters and all of each line's budget comes from the "
        "same runs (steps to solve are resolved to the validation interval). The budget-free summary is the growth "
        "law: a censored log-normal regression of steps to solve on T (a solve lies between the validation before it "
        "and its own; a run that never solved is right-censored at the budget) gives median steps ~ T^alpha, alpha "
        "with its 95% profile-likelihood interval (its coverage under the harness's own T search, seed luck and "
        "validation grid is simulated in docs/results/growth_coverage.md); the dashed lines are the T50 that law "
        "implies at each budget (drawn only within 4x of the T a line visited); each alpha names the T its solves "
        "span, and where its interval lies below what the validation grid resolves there (log((s + v) / s) / log(T "
        "range), s the earliest solve, v the validation interval) it is reported as below that. 'Still rising' is "
        "claimed only where the full budget's 95% interval (or bound) lies wholly above the rung below's; a line that"
        " still rises has not levelled off: its memory length is its budget's, not the cell's.",
        lambda i: i.ladder,
        figure(lambda d, p: budget.draw(d[0], p), "budget.png"),
        lambda d, i: [budget.table(*d)],
        empty="No line of this experiment has a memory-length estimate to read at smaller budgets.",
    ),
    ReportSection(
        "Trainability phase diagram",
        "Each cell held at a list of values of one initialisation parameter: the fraction of seeds solved at every "
        "(value, T) the T search visited, and T50 against the value with its interval; the dashed line is the "
        "init-time prediction (`rnnstudy diagnose`) where its predicted memory length equals T.",
        lambda i: phase.frame(i.runs),
        lambda cells, i: figure(lambda d, p: phase.draw(d, i.memory, phase.predicted(i.runs), p), "phase.png")(cells, i),
        empty="No line of this experiment holds an initialisation parameter at a list of values.",
    ),
    ReportSection(
        "Learning-rate calibration",
        "The learning rate is held apart from what is compared: per cell and task, the calibration stage trained the "
        "experiment's own initialisation at a reference T over a log grid of learning rates (several seeds, no early "
        "stop); the stage chose the lr with the lowest median final normalised loss (a diverged seed counts as "
        "infinite), and every family and setting of that cell trained at it. Where the choice sat at an edge of the "
        "grid, the stage added lrs beyond that edge, one at a time, until the choice was bracketed or its bound "
        "(calibrate.extend) was reached: 'lr tried' lists them all, and 'bracketed: no' marks a choice that is still at "
        "an edge, which is then a bound on the best lr, not a choice.",
        _calibration,
        figure(lambda d, p: calibration.draw(*d, p), "calibration.png"),
        lambda d, i: [calibration.chosen_table(d[1])],
        empty="This experiment has no calibration stage: its learning rates are set (or searched) in the file.",
    ),
    ReportSection(
        "Memory length against the learning rate",
        "One initialisation trained at several learning rates (rows of the experiment that set train.lr), each with "
        "its own T search: how much of a memory length is the learning rate's. Triangles are bounds (every T tried "
        "solved, or none); hollow points are located only between design points (quasi-separated).",
        lambda i: sensitivity.frame(i.memory),
        figure(sensitivity.draw, "lr_sensitivity.png"),
        lambda d, i: [tables.memory_table(d)],
        empty="No initialisation of this experiment trained at more than one learning rate.",
    ),
    ReportSection(
        "Learning curves",
        "Validation loss / baseline against training step, best initialisation per cell.",
        lambda i: curves.frame(i.res, i.runs),
        figure(curves.draw, "curves.png"),
    ),
    ReportSection(
        "Initialisation search",
        "The objective against each searched parameter (one row per task and T); per searched study how its trials were "
        "drawn (a study with no more trials than start-up trials is random sampling, not a search) and Optuna's "
        "parameter importances (only where a study has enough complete trials and a parameter took more than one "
        "value); the best configuration of each study with how many it beat.",
        lambda i: search.objective_frame(i.runs, i.storage),
        figure(search.draw, "search.png"),
        lambda d, i: [
            search.importance_table(i.storage, sorted(i.runs["study"].dropna().unique())),
            tables.best_parameters(i.runs),
        ],
    ),
    ReportSection(
        "Reference results",
        "The published reference results (docs/references.md) that this experiment covers, with ours beside them "
        "(also written to `reproduction.md` beside this report where enough of them were run).",
        _reference,
        tables=lambda table, i: [table],
    ),
]
