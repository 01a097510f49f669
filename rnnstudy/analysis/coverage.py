"""How often T50's nominal 95% interval covers the truth under the harness's own adaptive T search, by simulation.

A simulated line has a known transition, P(solved | T) = sigmoid(slope x (log T50 - log T) + luck of the seed): the
seeds visit T as a T-search stage visits them (:func:`rnnstudy.study.tsearch.next_T` on the stage's verdict rule), and
:func:`rnnstudy.analysis.memory.t50` estimates T50 from the runs. A seed's luck (normal, sd ``luck``) is shared by all T it
runs, as a lucky initialisation would be; luck 0 makes every run independent. The true T50 is drawn log-uniformly
between ``start x 1.5`` and ``max / 1.5``, or, for the design's edges, held at a fixed multiple of ``max``. A claim
covers when it is true of the truth: an interval that holds it, a bound on its right side. With ``extra`` seeds
(``T_search.bracket_seeds``), once the search is done that many new seeds run where the bracket stage runs them
(:func:`rnnstudy.study.tsearch.confirm`): a design that depends on the data, which is why its coverage is measured here too.

Beside the harness's estimate, each row scores a Firth-penalised profile-likelihood interval on the same runs, and
the winner's curse of the search: its own seeds' solved fraction at the last T they solved against the bracket
seeds' at the same T.

    python -m rnnstudy.analysis.coverage --out docs/results   # coverage.md and coverage.csv (about 20 minutes on one core)
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
from scipy import stats

from rnnstudy.analysis.memory import T50, t50
from rnnstudy.names import Censored
from rnnstudy.study.stages import solved
from rnnstudy.study.tsearch import TSearch, bracket, confirm, next_T

#: The T search the committed phase study uses.
SEARCH = TSearch(start=10, factor=2.0, max=512, refine=1)
#: The goal every row is held to, and the nominal level of the intervals.
GOAL, LEVEL = 0.90, 0.95


@dataclass(frozen=True)
class Scenario:
    """One simulated design: seeds per point, the transition's slope in log T, the sd of a seed's shared luck, the
    seeds added by the bracket stage, and the true T50 as a multiple of the search's max (0: drawn log-uniformly)."""

    seeds: int
    slope: float
    luck: float
    extra: int = 0
    at_max: float = 0.0


def visit(search: TSearch, seeds: int, extra: int, run: Callable[[int, range], list[tuple]]) -> list[tuple]:
    """A simulated line's rows as a T-search stage and then the bracket stage visit its T, each point's verdict by the
    workers' rule: ``run(T, seeds)`` gives one row per seed, its solved flag third (``extra``: the bracket seeds)."""
    verdicts: dict[int, bool] = {}
    rows = []
    while (T := next_T(search, verdicts)) is not None:
        ran = run(T, range(seeds))
        rows += ran
        verdicts[T] = solved(r[2] for r in ran)
    fresh: dict[int, bool] = {}
    while extra and (T := confirm(search, verdicts, fresh)) is not None:
        ran = run(T, range(seeds, seeds + extra))
        rows += ran
        fresh[T] = solved(r[2] for r in ran)
    return rows


def simulate(rng: np.random.Generator, scenario: Scenario, true_t50: float, search: TSearch = SEARCH) -> pd.DataFrame:
    """One line's runs (T, seed, solved, fresh) as the T search and the bracket stage visit them."""
    luck = rng.normal(0.0, scenario.luck, scenario.seeds + scenario.extra)

    def run(T: int, seeds: range) -> list[tuple[int, int, bool, bool]]:
        p = 1.0 / (1.0 + np.exp(scenario.slope * (math.log(T) - math.log(true_t50)) - luck[seeds.start : seeds.stop]))
        return [(T, seed, bool(f), seed >= scenario.seeds) for seed, f in zip(seeds, rng.random(len(seeds)) < p)]

    return pd.DataFrame(visit(search, scenario.seeds, scenario.extra, run), columns=["T", "seed", "solved", "fresh"])


def covers(estimate: T50, truth: float) -> bool:
    """Whether an estimate's claim holds the truth: its interval, or the side of its bound."""
    if estimate.censored is Censored.ABOVE:
        return truth > estimate.estimate
    if estimate.censored is Censored.BELOW:
        return truth < estimate.estimate
    return estimate.low <= truth <= estimate.high


#: Slopes (per unit of log T, negative: P(solved) falls with T) and log-T50 points the Firth profile is evaluated on.
_SLOPES = -np.exp(np.linspace(math.log(0.05), math.log(200.0), 120))


def firth_interval(runs: pd.DataFrame, level: float = LEVEL) -> tuple[float, float]:
    """T50's profile-likelihood interval under Firth's penalty (Jeffreys prior: finite under separation), for
    comparison: logit P(solved | T) = b (log T - log T50), the penalised log-likelihood maximised over b < 0 at each
    log T50 on a grid reaching 8x beyond the T tried; an end at the grid's edge is infinite (0 below)."""
    x = np.log(runs["T"].to_numpy(dtype=float))
    y = runs["solved"].to_numpy(dtype=float)
    m = np.linspace(x.min() - math.log(8.0), x.max() + math.log(8.0), 240)
    u = x[None, None, :] - m[:, None, None]  # (m, b, runs)
    eta = _SLOPES[None, :, None] * u
    log_p, log_q = -np.logaddexp(0, -eta), -np.logaddexp(0, eta)
    ll = np.sum(y * log_p + (1 - y) * log_q, axis=2)
    w = np.exp(log_p + log_q)  # p (1 - p)
    # Fisher information of (b0, b1) in logit = b0 + b1 x, at the point (b0, b1) = (-b m, b)
    s0, s1, s2 = w.sum(axis=2), (w * x).sum(axis=2), (w * x * x).sum(axis=2)
    profile = (ll + 0.5 * np.log(np.clip(s0 * s2 - s1 * s1, 1e-300, None))).max(axis=1)
    inside = m[profile >= profile.max() - stats.chi2.ppf(level, 1) / 2]
    low = 0.0 if inside.min() <= m[0] else math.exp(inside.min())
    high = math.inf if inside.max() >= m[-1] else math.exp(inside.max())
    return low, high


def coverage(scenario: Scenario, studies: int, seed: int = 0, search: TSearch = SEARCH) -> dict[str, float]:
    """Over ``studies`` simulated lines: the fraction whose claim covers the truth (the harness's, and the Firth
    interval's), the median width (high / low) of the estimated ones, the fraction estimated (not a bound), and the
    winner's curse: mean solved fraction at the search's last solved T of its own seeds and of the bracket seeds."""
    rng = np.random.default_rng(seed)
    hits, firth_hits, widths, estimated, own, fresh = 0, 0, [], 0, [], []
    for i in range(studies):
        if scenario.at_max:
            truth = search.max * scenario.at_max
        else:
            truth = math.exp(rng.uniform(math.log(search.start * 1.5), math.log(search.max / 1.5)))
        runs = simulate(rng, scenario, truth, search)
        estimate = t50(runs, seed=i)
        hits += covers(estimate, truth)
        low, high = firth_interval(runs)
        firth_hits += low <= truth <= high
        if estimate.censored is Censored.NONE:
            estimated += 1
            widths.append(estimate.high / estimate.low)
        search_runs = runs[~runs["fresh"]]
        verdicts = {T: solved(d["solved"]) for T, d in search_runs.groupby("T")}
        ends = bracket(search, verdicts)
        if ends and scenario.extra:
            at = runs[runs["T"] == ends[0]]
            own.append(at.loc[~at["fresh"], "solved"].mean())
            fresh.append(at.loc[at["fresh"], "solved"].mean())
    return {
        "coverage": hits / studies,
        "se": math.sqrt(hits / studies * (1 - hits / studies) / studies),
        "firth": firth_hits / studies,
        "width": float(np.median(widths)) if widths else math.nan,
        "estimated": estimated / studies,
        "own_at_last_solved": float(np.mean(own)) if own else math.nan,
        "fresh_at_last_solved": float(np.mean(fresh)) if fresh else math.nan,
    }


#: The designs the coverage table reports: the committed studies' seed counts (5, and 5 with 5 more at the bracket),
#: 10 seeds everywhere for comparison, shallow to steep, luck off and on, the truth anywhere inside the design; and at
#: its edge and beyond: T50 at half the search's max, at max and at twice max.
SCENARIOS = [Scenario(s, k, u, x) for s, x in ((5, 0), (5, 5), (10, 0)) for k in (2.0, 4.0, 8.0) for u in (0.0, 1.5)] + [
    Scenario(5, k, 1.5, 5, edge) for edge in (0.5, 1.0, 2.0) for k in (2.0, 8.0)
]


def table(studies: int, seed: int = 0) -> pd.DataFrame:
    """The coverage of every scenario, one row each."""
    return pd.DataFrame([{**asdict(sc), "studies": studies, **coverage(sc, studies, seed)} for sc in SCENARIOS])


def span(rows: pd.DataFrame) -> tuple[str, str]:
    """A coverage table's range for its statement: the lowest row with its simulation error, the highest, and whether
    every row holds :data:`GOAL`."""
    worst = rows.loc[rows["coverage"].idxmin()]
    under = rows[rows["coverage"] < GOAL]
    where = "every row holds the goal" if under.empty else f"{len(under)} rows fall below the goal of {GOAL:.2f}"
    return f"{worst['coverage']:.3f} ± {worst['se']:.3f} to {rows['coverage'].max():.3f}", where


def statement(rows: pd.DataFrame) -> str:
    """The one sentence every document uses for coverage, derived from the table: its lowest row with the simulation
    error, and the rows under the goal."""
    between, where = span(rows)
    return (f"T50's nominal {LEVEL:.0%} interval covered the truth in {between} of simulated lines through the "
            f"harness's own T search ({len(rows)} designs, {int(rows['studies'].iloc[0])} lines each, the true T50 "
            f"inside the design, at half its largest T, at it and at twice it); {where}")  # fmt: skip


def page_head(title: str, module: str) -> list[str]:
    """The first lines of a simulated coverage page: its title and the command that writes it and its rows."""
    name = module.rsplit(".", 1)[-1]
    return [f"# {title}", "", f"Generated by `python -m {module} --out docs/results` (numbers depend only on the seeded "
            f"simulation; the rows are in `{name}.csv`).", ""]  # fmt: skip


def markdown(rows: pd.DataFrame) -> str:
    """coverage.md: what was simulated, the statement, and the table."""
    lines = [
        *page_head("Coverage of T50's interval under the harness's own T search", __name__),
        f"T search: start {SEARCH.start}, x{SEARCH.factor:g} to {SEARCH.max}, {SEARCH.refine} bisection; a T counts as "
        "solved when at least half its seeds solve. A line has a known transition, P(solved | T) = sigmoid(slope x "
        "(ln T50 - ln T) + luck); *seed luck* is a seed's offset on the logit shared by every T it runs. *Truth*: "
        "drawn log-uniformly in [15, max/1.5], or held at a multiple of the search's max (the design's edge and "
        "beyond). *More at the bracket*: the bracket stage's seeds, at the two T around the crossing and onward while "
        "their own verdicts place it outside. A claim covers when it is true: an interval that holds the truth, a "
        "bound on its side. *Firth*: a Firth-penalised profile-likelihood interval on the same runs, for comparison. "
        "*Winner's curse*: the search's own seeds' mean solved fraction at the last T they solved, against the "
        "bracket seeds' at the same T.",
        "",
        f"**{statement(rows)}.**",
        "",
        "| seeds | more at the bracket | slope in ln T | seed luck | truth | coverage ± se | Firth profile "
        "| median width (high/low) | estimated, not a bound | winner's curse: search seeds / fresh seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples(index=False):
        truth = "inside" if not r.at_max else f"{r.at_max:g} x max"
        curse = "-" if math.isnan(r.own_at_last_solved) else f"{r.own_at_last_solved:.2f} / {r.fresh_at_last_solved:.2f}"
        lines.append(f"| {r.seeds} | {r.extra} | {r.slope:g} | {r.luck:g} | {truth} | {r.coverage:.3f} ± {r.se:.3f} "
                     f"| {r.firth:.3f} | {r.width:.2f} | {r.estimated:.2f} | {curse} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def command(module: ModuleType, count: str, default: int) -> None:
    """A simulated coverage table's command: ``--<count>`` simulated lines per design, written into ``--out`` as
    ``<module>.csv`` (the rows) and ``<module>.md`` (its page), its statement printed."""
    p = argparse.ArgumentParser(description=(module.__doc__ or "").splitlines()[0])
    p.add_argument(f"--{count}", type=int, default=default)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    rows = module.table(getattr(args, count))
    name = module.__name__.rsplit(".", 1)[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(args.out / f"{name}.csv", index=False)
    (args.out / f"{name}.md").write_text(module.markdown(rows))
    print(module.statement(rows))


def main() -> None:
    """Write coverage.csv and coverage.md for :data:`SCENARIOS` into ``--out``."""
    command(sys.modules[__name__], "studies", 400)


if __name__ == "__main__":
    main()
