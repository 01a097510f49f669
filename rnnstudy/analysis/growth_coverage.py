"""How often the growth exponent's nominal 95% interval covers the truth under the harness's own design, by simulation.

A simulated line has a known growth law: a seed trains T to its solved bar at step S = B (T / T_c)^alpha e^(luck + e),
with e normal (sd ``sigma``, new at every run) and the seed's luck normal (sd ``luck``, shared by every T it runs, as a
lucky initialisation would be), so the median run solves exactly at the budget B at T_c, the line's crossing. A run
solves within the budget when S <= B and is first seen solved at the validation at or after S (every B / ``checks``
steps), its solve interval-censored between the validation before and that one, exactly as the budget section fits it
(:func:`rnnstudy.analysis.memory.growth_law`); an unsolved run is right-censored at B. The seeds visit T as a T-search
stage and the bracket stage visit them (:func:`rnnstudy.analysis.coverage.visit`), so which T carry solves depends on
the data. T_c is drawn log-uniformly inside the design, or held near its low edge or at a multiple of the search's max.
A line where fewer than two T had a solve has no exponent (as in a report): counted apart, not as a miss.

    python -m rnnstudy.analysis.growth_coverage --out docs/results   # growth_coverage.md and .csv (about an hour on one core)
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rnnstudy.analysis.coverage import LEVEL, SEARCH, command, page_head, span, visit
from rnnstudy.analysis.memory import growth_law
from rnnstudy.study.tsearch import TSearch

#: The committed studies' budget and seeds (5, and 5 more at the bracket).
BUDGET, SEEDS, EXTRA = 1500, 5, 5


@dataclass(frozen=True)
class Design:
    """One simulated design: the true exponent, the per-run and per-seed spread of log steps, the validations per budget
    (20: every 75 of 1500 steps, as phase_cpu; 80: every 300 of 24000, as budget_cpu), and where the crossing T_c lies
    (0: drawn log-uniformly between 1.5 x the search's start and its max / 1.5; else that T, or a multiple of max)."""

    alpha: float
    sigma: float
    luck: float
    checks: int = 20
    crossing: float = 0.0
    of_max: bool = True


def simulate(rng: np.random.Generator, design: Design, T_c: float, search: TSearch = SEARCH) -> pd.DataFrame:
    """One line's runs (T, seed, solved, fresh, steps to solve as first seen, the validation before it)."""
    every = BUDGET / design.checks
    luck = rng.normal(0.0, design.luck, SEEDS + EXTRA)

    def run(T: int, seeds: range) -> list[tuple[int, int, bool, bool, float, float]]:
        noise = luck[seeds.start : seeds.stop] + rng.normal(0.0, design.sigma, len(seeds))
        S = BUDGET * (T / T_c) ** design.alpha * np.exp(noise)
        seen = np.ceil(S / every) * every
        return [(T, seed, bool(s <= BUDGET), seed >= SEEDS, float(s) if s <= BUDGET else math.nan, float(s - every))
                for seed, s in zip(seeds, seen)]  # fmt: skip

    columns = ["T", "seed", "solved", "fresh", "steps", "solved_after"]
    return pd.DataFrame(visit(search, SEEDS, EXTRA, run), columns=columns)


def crossing(rng: np.random.Generator, design: Design, search: TSearch = SEARCH) -> float:
    """The line's T_c under the design."""
    if not design.crossing:
        return math.exp(rng.uniform(math.log(search.start * 1.5), math.log(search.max / 1.5)))
    return design.crossing * search.max if design.of_max else design.crossing


def coverage(design: Design, lines: int, seed: int = 0, search: TSearch = SEARCH) -> dict[str, float]:
    """Over ``lines`` simulated lines: the fraction with an exponent, the fraction of those whose interval holds the
    truth (with its simulation error), and their median interval width."""
    rng = np.random.default_rng(seed)
    hits, fitted, widths = 0, 0, []
    for _ in range(lines):
        runs = simulate(rng, design, crossing(rng, design, search), search)
        steps = runs["steps"]
        law = growth_law(runs["T"], steps, pd.Series(float(BUDGET), index=runs.index), steps - runs["solved_after"])
        if math.isnan(law.alpha):
            continue
        fitted += 1
        hits += law.low <= design.alpha <= law.high
        widths.append(law.high - law.low)
    rate = hits / fitted if fitted else math.nan
    return {
        "fitted": fitted / lines,
        "coverage": rate,
        "se": math.sqrt(rate * (1 - rate) / fitted) if fitted else math.nan,
        "width": float(np.median(widths)) if widths else math.nan,
    }


#: The designs the table reports: shallow (the GRU's 0.1-0.4), linear and steep growth (the RNNs' 0.9-1.5), tight and
#: wide spread, seed luck off and on, at phase_cpu's validations; one at budget_cpu's; and, for the design's edges, the
#: crossing near the search's start (few T solve), at half its max and at twice its max (every T solves).
DESIGNS = [Design(a, s, u) for a in (0.2, 1.0, 1.5) for s in (0.3, 0.8) for u in (0.0, 0.5)] + [
    Design(1.0, 0.8, 0.5, checks=80),
    Design(1.0, 0.8, 0.5, crossing=15, of_max=False),
    Design(1.0, 0.8, 0.5, crossing=0.5),
    Design(0.2, 0.8, 0.5, crossing=2.0),
]


def table(lines: int, seed: int = 0) -> pd.DataFrame:
    """The coverage of every design, one row each."""
    return pd.DataFrame([{**asdict(d), "lines": lines, **coverage(d, lines, seed)} for d in DESIGNS])


def statement(rows: pd.DataFrame) -> str:
    """The one sentence every document uses for the exponent's coverage, derived from the table."""
    between, where = span(rows)
    return (f"the growth exponent's nominal {LEVEL:.0%} interval covered the true alpha in {between} of simulated "
            f"lines with an exponent, through the harness's own T search ({len(rows)} designs, "
            f"{int(rows['lines'].iloc[0])} lines each, the crossing inside the design, near its start, at half its "
            f"largest T and at twice it); {where}")  # fmt: skip


def markdown(rows: pd.DataFrame) -> str:
    """growth_coverage.md: what was simulated, the statement, and the table."""
    lines = [
        *page_head("Coverage of the growth exponent's interval under the harness's own design", __name__),
        f"Budget {BUDGET} steps, {SEEDS} seeds per T and {EXTRA} more at the bracket; T search: start {SEARCH.start}, "
        f"x{SEARCH.factor:g} to {SEARCH.max}, {SEARCH.refine} bisection. A seed solves T at step "
        "S = budget x (T / T_c)^alpha x exp(luck + noise): *spread* is the sd of the noise in log steps (new every run), "
        "*seed luck* that of a seed's offset shared by every T it runs. A run is seen solved at the first validation "
        "after S (*validations* per budget), its solve censored between that validation and the one before; unsolved "
        "runs are censored at the budget. *Crossing*: the T at which the median run solves at the budget. *Fitted*: "
        "the lines where at least two T had a solve, which is when a report prints an exponent; coverage is of those.",
        "",
        f"**{statement(rows)[0].upper() + statement(rows)[1:]}.**",
        "",
        "| true alpha | spread | seed luck | validations | crossing | fitted | coverage ± se | median width |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples(index=False):
        where = "inside" if not r.crossing else f"{r.crossing:g} x max" if r.of_max else f"T = {r.crossing:g}"
        lines.append(f"| {r.alpha:g} | {r.sigma:g} | {r.luck:g} | {r.checks} | {where} | {r.fitted:.2f} "
                     f"| {r.coverage:.3f} ± {r.se:.3f} | {r.width:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    """Write growth_coverage.csv and growth_coverage.md for :data:`DESIGNS` into ``--out``."""
    command(sys.modules[__name__], "lines", 300)


if __name__ == "__main__":
    main()
