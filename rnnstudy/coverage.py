"""How often T50's nominal 95% interval covers the truth under the harness's own adaptive T search, by simulation.

A simulated line has a known transition, P(solved | T) = sigmoid(slope x (log T50 - log T) + luck of the seed): the
seeds visit T as a T-search stage visits them (:func:`rnnstudy.tsearch.next_T` on the stage's verdict rule), and
:func:`rnnstudy.memory.t50` estimates T50 from the runs. A seed's luck (normal, sd ``luck``) is shared by all T it
runs, as a lucky initialisation would be; luck 0 makes every run independent. The true T50 is drawn log-uniformly
between ``start x 1.5`` and ``max / 1.5``, so design points fall anywhere around it. A censored estimate covers when
its bound is on the right side of the truth. With ``extra`` seeds (``T_search.bracket_seeds``), once the search is done
that many new seeds run at the two T that bracket the crossing (:func:`rnnstudy.tsearch.bracket`), as the bracket
stage runs them: a design that depends on the data, which is why its coverage is measured here too.

    python -m rnnstudy.coverage                # the table in docs/results/coverage.md (about 10 minutes on one core)
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnstudy.memory import T50, t50
from rnnstudy.names import Censored
from rnnstudy.stages import solved
from rnnstudy.tsearch import TSearch, bracket, next_T

#: The T search the committed phase study uses.
SEARCH = TSearch(start=10, factor=2.0, max=256, refine=1)


@dataclass(frozen=True)
class Scenario:
    """One simulated design: seeds per point, the transition's slope in log T, the sd of a seed's shared luck, and the
    seeds added at the two T that bracket the crossing."""

    seeds: int
    slope: float
    luck: float
    extra: int = 0


def simulate(rng: np.random.Generator, scenario: Scenario, true_t50: float, search: TSearch = SEARCH) -> pd.DataFrame:
    """One line's runs (T, seed, solved) as the T search visits them, and its bracketing seeds."""
    luck = rng.normal(0.0, scenario.luck, scenario.seeds + scenario.extra)

    def run(T: int, seeds: range) -> list[tuple[int, int, bool]]:
        p = 1.0 / (1.0 + np.exp(scenario.slope * (math.log(T) - math.log(true_t50)) - luck[seeds.start : seeds.stop]))
        return [(T, seed, bool(f)) for seed, f in zip(seeds, rng.random(len(seeds)) < p)]

    verdicts: dict[int, bool] = {}
    rows = []
    while (T := next_T(search, verdicts)) is not None:
        ran = run(T, range(scenario.seeds))
        rows += ran
        verdicts[T] = solved(f for _, _, f in ran)
    for T in bracket(search, verdicts) if scenario.extra else []:
        rows += run(T, range(scenario.seeds, scenario.seeds + scenario.extra))
    return pd.DataFrame(rows, columns=["T", "seed", "solved"])


def covers(estimate: T50, truth: float) -> bool:
    """Whether an estimate's interval (or its censored bound) holds the truth."""
    if estimate.censored is Censored.ABOVE:
        return truth > estimate.estimate
    if estimate.censored is Censored.BELOW:
        return truth < estimate.estimate
    return estimate.low <= truth <= estimate.high


def coverage(scenario: Scenario, studies: int, seed: int = 0, search: TSearch = SEARCH) -> dict[str, float]:
    """The fraction of ``studies`` simulated lines whose interval covers the truth, the median width (high / low) of
    the estimated ones, and the fraction estimated (not censored)."""
    rng = np.random.default_rng(seed)
    hits, widths, estimated = 0, [], 0
    for i in range(studies):
        truth = math.exp(rng.uniform(math.log(search.start * 1.5), math.log(search.max / 1.5)))
        estimate = t50(simulate(rng, scenario, truth, search), seed=i)
        hits += covers(estimate, truth)
        if estimate.censored is Censored.NONE:
            estimated += 1
            widths.append(estimate.high / estimate.low)
    return {"coverage": hits / studies, "width": float(np.median(widths)) if widths else math.nan,
            "estimated": estimated / studies}  # fmt: skip


#: The designs the coverage table reports: the committed studies' seed counts (5, and 5 with 5 more at the bracket),
#: 10 seeds everywhere for comparison, shallow to steep, luck off and on.
SCENARIOS = [Scenario(s, k, u, x) for s, x in ((5, 0), (5, 5), (10, 0)) for k in (2.0, 4.0, 8.0) for u in (0.0, 1.5)]


def main() -> None:
    """Print the coverage table (Markdown) for :data:`SCENARIOS`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=400)
    args = p.parse_args()
    print(f"T search: start {SEARCH.start}, x{SEARCH.factor:g} to {SEARCH.max}, refine {SEARCH.refine}; "
          f"{args.studies} simulated lines per row; nominal level 0.95")  # fmt: skip
    print("| seeds | more at the bracket | slope in ln T | seed luck (sd, logit) | coverage | median width (high/low) "
          "| estimated, not censored |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for sc in SCENARIOS:
        r = coverage(sc, args.studies)
        print(f"| {sc.seeds} | {sc.extra} | {sc.slope:g} | {sc.luck:g} | {r['coverage']:.3f} | {r['width']:.2f} "
              f"| {r['estimated']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
