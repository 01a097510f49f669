"""Memory length as an estimate with an interval: T50 from a logistic curve in log T, steps-to-solve as survival data.

Each (seed, T) run is one observation: solved within the budget or not. P(solved | T) is a logistic curve in log T;
T50, where it crosses one half, is the median of its posterior (flat priors in log T50 and log slope, evaluated on a
grid), and its interval the posterior's equal-tailed one, averaged over resamples of the seeds (all T of a seed
together), so that a seed's luck shared across T widens it. Unlike a maximum-likelihood fit with a percentile
bootstrap, it has an answer under separation (every failure above every success: the posterior spreads over the gap)
and it keeps its coverage under the adaptive T search (measured by :mod:`rnnstudy.coverage`). Where every T tried was
solved the answer is censored ("T50 > T_max"), where none was, "T50 < T_min". Steps-to-solve are a Kaplan-Meier curve
(scipy), unsolved runs censored at the budget, and their growth with T a censored log-normal regression.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from rnnstudy.names import Censored

#: Slopes of P(solved | T) per unit of log T over which T50's posterior is marginalised, flat in log slope: from a
#: transition spread over two decades of T to one sharper than a doubling design resolves.
SLOPES = np.exp(np.linspace(math.log(0.3), math.log(60.0), 48))
#: Points of the log-T50 grid, which reaches this factor below the smallest T tried and above the largest.
GRID, REACH = 400, 8.0
#: Resamples of the seeds (all T of a seed together) whose posteriors are averaged: the interval then widens where a
#: seed's luck is shared across T, which a posterior of independent runs would miss.
BAGS = 200
#: Fewer seeds than this give an exploratory estimate, not a verdict.
MIN_SEEDS = 5


@dataclass(frozen=True)
class T50:
    """Where P(solved | T) crosses one half: a point estimate, its interval, or a censored bound."""

    estimate: float
    low: float
    high: float
    #: NONE (estimated), ABOVE (every T tried solved: T50 > estimate), BELOW (none solved: T50 < estimate).
    censored: Censored
    seeds: int
    T_tried: tuple[int, ...]
    level: float = 0.95
    #: Quasi-separated: no failure at a T below a success except at one mixed T, so the data locate T50 only between
    #: design points (``bracket``) and the slope only from below; the interval then leans on the slope's prior.
    separated: bool = False
    bracket: tuple[float, float] = (math.nan, math.nan)

    @property
    def exploratory(self) -> bool:
        """Too few seeds for a verdict."""
        return self.seeds < MIN_SEEDS

    def text(self) -> str:
        """How a report writes it: ``T50 = 57 [41, 80]``, ``T50 > 320``, ``T50 < 10``, with (exploratory) for few seeds."""
        if self.censored is not Censored.NONE:
            out = f"T50 {self.censored.value} {self.estimate:.0f}"
        elif self.separated:
            low, high = self.bracket
            out = f"T50 between {low:.0f} and {high:.0f} (quasi-separated; 95% [{self.low:.2g}, {self.high:.2g}])"
        else:
            out = f"T50 = {self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}]"
            if not min(self.T_tried) <= self.estimate <= max(self.T_tried):
                out += " (beyond the T tried)"
        return out + (f" (exploratory: {self.seeds} seeds)" if self.exploratory else "")


def t50(runs: pd.DataFrame, level: float = 0.95, bags: int = BAGS, seed: int = 0) -> T50:
    """T50 of one cell x init x budget from its runs (columns T, seed, solved): the median of its bagged posterior, with
    the equal-tailed interval; ``bags=0``: the plain posterior of the runs as they are."""
    data = runs[["T", "seed", "solved"]].dropna()
    tried = tuple(sorted({int(t) for t in data["T"]}))
    solved = data["solved"].to_numpy(dtype=bool)
    n_seeds = data["seed"].nunique()
    separated = _separation(data)
    if solved.all() or not solved.any():
        censored = Censored.ABOVE if solved.all() else Censored.BELOW
        bound = max(tried) if solved.all() else min(tried)
        return T50(float(bound), math.nan, math.nan, censored, n_seeds, tried, level, *separated)
    by_seed = data.assign(solved=solved).pivot_table(index="seed", columns="T", values="solved", aggfunc=["sum", "count"])
    wins = by_seed["sum"].reindex(columns=list(tried)).fillna(0).to_numpy(dtype=float)  # (seeds, T)
    runs_at = by_seed["count"].reindex(columns=list(tried)).fillna(0).to_numpy(dtype=float)
    if bags:  # each replicate: the seeds drawn with replacement, as multiplicities
        picks = np.random.default_rng(seed).integers(0, n_seeds, size=(bags, n_seeds))
        weights = np.stack([np.bincount(p, minlength=n_seeds) for p in picks]).astype(float)
    else:
        weights = np.ones((1, n_seeds))
    log_T = np.log(np.asarray(tried, dtype=float))
    grid = np.linspace(log_T[0] - math.log(REACH), log_T[-1] + math.log(REACH), GRID)
    cdf = np.cumsum(_posterior(log_T, weights @ wins, weights @ (runs_at - wins), grid).mean(axis=0))
    estimate, low, high = (float(np.interp(q, cdf, grid)) for q in (0.5, (1 - level) / 2, (1 + level) / 2))
    return T50(math.exp(estimate), math.exp(low), math.exp(high), Censored.NONE, n_seeds, tried, level, *separated)


def _posterior(log_T: np.ndarray, wins: np.ndarray, losses: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Posterior of log T50 on ``grid`` for each replicate's solved and failed counts per T, ``(replicates, T)``.

    P(solved | T) = sigmoid(slope x (log T50 - log T)); flat prior in log T50 over the grid and in log slope over
    :data:`SLOPES`, the slope marginalised. Returns ``(replicates, grid)``, each row summing to one.
    """
    z = SLOPES[None, :, None] * (grid[:, None, None] - log_T[None, None, :])  # (grid, slopes, T)
    log_p, log_q = -np.logaddexp(0.0, -z), -np.logaddexp(0.0, z)
    ll = np.einsum("gst,bt->bgs", log_p, wins) + np.einsum("gst,bt->bgs", log_q, losses)
    post = np.exp(ll - ll.max(axis=(1, 2), keepdims=True)).sum(axis=2)
    return post / post.sum(axis=1, keepdims=True)


def _separation(data: pd.DataFrame) -> tuple[bool, tuple[float, float]]:
    """Whether the outcomes are quasi-separated in T, and the design points that bracket the crossing then.

    Separated: every failure is at a T at or above every success's T except at most one T where both occur. The
    bracket runs from the largest T below it that every seed solved (or the mixed T) to the smallest above it that
    none did (or the mixed T).
    """
    frac = data.groupby("T")["solved"].mean().sort_index()
    mixed = frac[(frac > 0) & (frac < 1)]
    if len(mixed) > 1 or frac.all() or not frac.any():
        return False, (math.nan, math.nan)
    solved_T, failed_T = frac.index[frac > 0], frac.index[frac < 1]
    if solved_T.max() > failed_T.min():  # a failure below a success: the fit has a finite slope
        return False, (math.nan, math.nan)
    low = frac.index[(frac == 1) & (frac.index <= failed_T.min())]
    high = frac.index[(frac == 0) & (frac.index >= solved_T.max())]
    return True, (float(low.max() if len(low) else failed_T.min()), float(high.min() if len(high) else solved_T.max()))


#: Fractions of a study's budget at which memory length is read again from the same runs (a run solved within b steps
#: iff it first met its bar at or before b).
BUDGET_LADDER = (0.25, 0.5, 0.75, 1.0)


def solved_within(steps: pd.Series, budget: float) -> pd.Series:
    """Whether each run had met its solved bar by ``budget`` steps (NaN steps: never)."""
    return steps.notna() & (steps <= budget)


@dataclass(frozen=True)
class GrowthLaw:
    """How training time grows with T: median steps-to-solve = exp(intercept) x T^alpha, with alpha's profile interval.

    Fitted as a censored log-normal regression of log steps on log T (unsolved runs right-censored at their budget):
    the budget-free summary of a line, and the T50 it implies at any budget.
    """

    alpha: float
    low: float
    high: float
    intercept: float
    sigma: float
    runs: int
    solved: int

    def T_at(self, budget: float) -> float:
        """The T at which half the runs would solve within ``budget`` steps under this law."""
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            return math.nan
        return math.exp((math.log(budget) - self.intercept) / self.alpha)


def _censored_normal(x: np.ndarray, y: np.ndarray, event: np.ndarray, alpha: float | None = None) -> tuple[float, np.ndarray]:
    """The largest log-likelihood of y = a + alpha x + sigma e (e normal; ``event`` False: right-censored at y), and
    its (a, alpha, log sigma); with ``alpha`` given, maximised over the other two only."""

    def nll(theta: np.ndarray) -> float:
        a, b, log_s = (theta[0], theta[1], theta[2]) if alpha is None else (theta[0], alpha, theta[1])
        z = (y - a - b * x) / math.exp(log_s)
        return -float(np.sum(np.where(event, stats.norm.logpdf(z) - log_s, stats.norm.logsf(z))))

    slope, intercept = np.polyfit(x, y, 1) if len(np.unique(x)) > 1 else (0.0, float(y.mean()))
    start = np.array([intercept, slope, math.log(max(float(np.std(y)), 0.1))])
    if alpha is not None:
        start = np.array([float(np.mean(y - alpha * x)), start[2]])
    fit = optimize.minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    return -float(fit.fun), fit.x


def growth_law(T: pd.Series, steps: pd.Series, budget: pd.Series, level: float = 0.95) -> GrowthLaw:
    """Steps-to-solve against T for one line's runs; NaN where fewer than two T had a run solve."""
    solved = steps.notna().to_numpy()
    x = np.log(T.to_numpy(dtype=float))
    y = np.log(np.where(solved, steps.fillna(1).clip(lower=1).to_numpy(dtype=float), budget.to_numpy(dtype=float)))
    if len(np.unique(x[solved])) < 2:
        return GrowthLaw(math.nan, math.nan, math.nan, math.nan, math.nan, len(x), int(solved.sum()))
    best, (a, alpha, log_s) = _censored_normal(x, y, solved)
    cut = stats.chi2.ppf(level, 1) / 2

    def drop(b: float) -> float:
        return best - _censored_normal(x, y, solved, b)[0] - cut

    def end(direction: int) -> float:
        step = max(abs(alpha), 0.25)
        for _ in range(12):  # widen until the profile has fallen below the cut, then find the crossing
            far = alpha + direction * step
            if drop(far) > 0:
                return float(optimize.brentq(drop, min(alpha, far), max(alpha, far), xtol=1e-6))
            step *= 2
        return direction * math.inf

    return GrowthLaw(float(alpha), end(-1), end(1), float(a), math.exp(log_s), len(x), int(solved.sum()))


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
