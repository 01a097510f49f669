"""Memory length as an estimate with an interval: T50 from a logistic curve in log T, steps-to-solve as survival data.

Each (seed, T) run is one observation: solved within the budget or not. P(solved | T) is fitted as
a logistic curve in log T (maximum likelihood with scipy's optimiser), T50 is where it crosses 0.5,
and its interval is a percentile bootstrap over seeds (all T of a seed are resampled together). Where every T tried
was solved the answer is censored ("T50 > T_max"), where none was, "T50 < T_min"; where solved and
failed T do not overlap at all the likelihood has no maximum, and T50 is the geometric midpoint of
the gap (its interval then spans the gap at least). Steps-to-solve are a Kaplan-Meier curve (scipy),
unsolved runs censored at the budget.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from rnnstudy.names import SOLVED_FRACTION, Censored

#: Bootstrap resamples of the seeds for T50's interval.
BOOTSTRAP = 1000
#: Fewer seeds than this give an exploratory estimate, not a verdict.
MIN_SEEDS = 5


@dataclass(frozen=True)
class T50:
    """Where P(solved | T) crosses one half: a point estimate, its interval, or a censored bound."""

    estimate: float
    low: float
    high: float
    #: NONE (estimated), ABOVE (the curve stays at or above one half over the T tried: T50 > estimate),
    #: BELOW (it stays below: T50 < estimate); every T solved, or none, is the plainest case of each.
    censored: Censored
    seeds: int
    T_tried: tuple[int, ...]
    level: float = 0.95

    @property
    def exploratory(self) -> bool:
        """Too few seeds for a verdict."""
        return self.seeds < MIN_SEEDS

    def text(self) -> str:
        """How a report writes it: ``T50 = 57 [41, 80]``, ``T50 > 320``, ``T50 < 10``, with (exploratory) for few seeds."""
        if self.censored is not Censored.NONE:
            out = f"T50 {self.censored.value} {self.estimate:.0f}"
        else:
            out = f"T50 = {self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}]"
        return out + (f" (exploratory: {self.seeds} seeds)" if self.exploratory else "")


def _point(log_T: np.ndarray, solved: np.ndarray) -> tuple[float, Censored]:
    """T50 of one sample (log scale), or a censored bound with its direction."""
    if solved.all():
        return float(log_T.max()), Censored.ABOVE
    if not solved.any():
        return float(log_T.min()), Censored.BELOW
    top_solved, first_failed = log_T[solved].max(), log_T[~solved].min()
    if top_solved < first_failed:  # complete separation: no maximum-likelihood slope, T50 is in the gap
        return float((top_solved + first_failed) / 2), Censored.NONE
    intercept, slope = _logistic(*_binomial(log_T, solved))
    if slope >= 0:  # solved more often at larger T: no transition in this range
        mostly = solved.mean() >= SOLVED_FRACTION
        return (float(log_T.max()), Censored.ABOVE) if mostly else (float(log_T.min()), Censored.BELOW)
    crossing = -intercept / slope
    if crossing > log_T.max():  # the fitted curve is still above one half at the largest T tried
        return float(log_T.max()), Censored.ABOVE
    if crossing < log_T.min():
        return float(log_T.min()), Censored.BELOW
    return float(crossing), Censored.NONE


def _binomial(log_T: np.ndarray, solved: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs as (T, outcome, count) rows: the same likelihood, one row per distinct T and outcome."""
    keys, counts = np.unique(np.stack([log_T, solved.astype(float)]), axis=1, return_counts=True)
    return keys[0], keys[1].astype(int), counts.astype(float)


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (intercept, slope) of P(y=1) = sigmoid(a + b x) for weighted binomial rows (scipy's L-BFGS).

    Under quasi-separation the slope grows until the iteration limit; the crossing -a/b stays at the mixed T.
    """
    centre = float(np.average(x, weights=w))
    u = x - centre

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + theta[1] * u
        residual = w * (special.expit(z) - y)
        return float(np.sum(w * (np.logaddexp(0.0, z) - y * z))), np.array([residual.sum(), (residual * u).sum()])

    a, b = optimize.minimize(loss, np.zeros(2), jac=True, method="L-BFGS-B", options={"maxiter": 200}).x
    return float(a - b * centre), float(b)


def t50(runs: pd.DataFrame, level: float = 0.95, resamples: int = BOOTSTRAP, seed: int = 0) -> T50:
    """T50 of one cell x init x budget from its runs (columns T, seed, solved), with a bootstrap interval over seeds."""
    data = runs[["T", "seed", "solved"]].dropna()
    log_T = np.log(data["T"].to_numpy(dtype=float))
    solved = data["solved"].to_numpy(dtype=bool)
    tried = tuple(sorted({int(t) for t in data["T"]}))
    seeds = data["seed"].to_numpy()
    unique = np.unique(seeds)
    estimate, censored = _point(log_T, solved)
    if censored is not Censored.NONE:
        bound = max(tried) if censored == Censored.ABOVE else min(tried)
        return T50(float(bound), math.nan, math.nan, censored, len(unique), tried, level)
    rows = {s: np.flatnonzero(seeds == s) for s in unique}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = np.concatenate([rows[s] for s in rng.choice(unique, size=len(unique), replace=True)])
        draws.append(_point(log_T[idx], solved[idx])[0])
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return T50(math.exp(estimate), math.exp(low), math.exp(high), Censored.NONE, len(unique), tried, level)


@dataclass(frozen=True)
class StepsToSolve:
    """The Kaplan-Meier median of steps-to-solve with its interval; ``inf`` where fewer than half solved within the budget."""

    median: float
    low: float
    high: float
    solved: int
    runs: int


def steps_to_solve(steps: pd.Series, budget: pd.Series, level: float = 0.95) -> StepsToSolve:
    """Kaplan-Meier median of the step a run first met its solved bar; unsolved runs (NaN steps) are censored at their budget."""
    solved = steps.notna().to_numpy()
    times = np.where(solved, steps.fillna(0).to_numpy(dtype=float), budget.to_numpy(dtype=float))
    if not solved.any():
        return StepsToSolve(math.inf, math.nan, math.inf, 0, len(times))
    data = stats.CensoredData(uncensored=times[solved], right=times[~solved])
    sf = stats.ecdf(data).sf
    with warnings.catch_warnings():  # Greenwood's band is undefined where the curve is at 0 or 1; those points are NaN
        warnings.filterwarnings("ignore", "The confidence interval is undefined", RuntimeWarning)
        band = sf.confidence_interval(confidence_level=level)
    point = sf.probabilities  # where the band is undefined (the curve at 0 or 1) it collapses onto the curve
    return StepsToSolve(
        median=_crossing(sf.quantiles, point),
        low=_crossing(sf.quantiles, np.where(np.isnan(band.low.probabilities), point, band.low.probabilities)),
        high=_crossing(sf.quantiles, np.where(np.isnan(band.high.probabilities), point, band.high.probabilities)),
        solved=int(solved.sum()),
        runs=len(times),
    )


def _crossing(times: np.ndarray, survival: np.ndarray) -> float:
    """The first time a survival curve is at or below one half (inf where it never is)."""
    below = np.flatnonzero(survival <= 0.5)
    return float(times[below[0]]) if below.size else math.inf
