"""Memory length as an estimate with an interval: T50 from a logistic curve in log T, steps-to-solve as survival data.

Each (seed, T) run is one observation: solved within the budget or not. P(solved | T) is a logistic curve in log T;
T50, where it crosses one half, is the median of its posterior (flat priors in log T50 and log slope, evaluated on a
grid), and its interval the posterior's equal-tailed one, averaged over resamples of the seeds (all T of a seed
together), so that a seed's luck shared across T widens it. Unlike a maximum-likelihood fit with a percentile
bootstrap, it has an answer under separation (every failure above every success: the posterior spreads over the gap)
and it keeps its coverage under the adaptive T search (measured by :mod:`rnnstudy.analysis.coverage`). Where every T tried was
solved the answer is censored ("T50 > T_max"), where none was, "T50 < T_min". Steps-to-solve are a Kaplan-Meier curve
(scipy), unsolved runs censored at the budget, and their growth with T a censored log-normal regression.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from rnnstudy.names import SOLVED_FRACTION, Censored

#: Slopes of P(solved | T) per unit of log T over which T50's posterior is marginalised, flat in log slope: from a
#: transition spread over two decades of T to one sharper than a doubling design resolves.
SLOPES = np.exp(np.linspace(math.log(0.3), math.log(60.0), 48))
#: Points of the log-T50 grid, which reaches this factor below the smallest T tried and above the largest.
GRID, REACH = 400, 8.0
#: Resamples of the seeds (all T of a seed together) whose posteriors are averaged: the interval then widens where a
#: seed's luck is shared across T, which a posterior of independent runs would miss.
BAGS = 200
#: An estimate further than this factor outside the T tried is said to lie beyond them (the grid's own step is 1.5%).
BEYOND = 1.05
#: Fewer seeds than this give an exploratory estimate, not a verdict.
MIN_SEEDS = 5
#: A bound "T50 > T" needs the runs at T to reject P(solved | T) <= 1/2 at this one-sided level (a binomial test; 5 of
#: 5, 9 of 10), and "T50 < T" P(solved | T) >= 1/2: a bound drawn at the edge from 4 of 5 seeds is false about half
#: the time the truth sits at that edge (measured in docs/results/coverage.md).
BOUND_LEVEL = 0.05


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
    #: design points (``bracket``: the largest T solved by at least half the seeds, the smallest T solved by fewer; NaN
    #: where there is none) and the slope only from below; the interval then leans on the slope's prior. Where the
    #: bracket is open on one side the data bound T50 from that side only, and the estimate is that bound (censored).
    separated: bool = False
    bracket: tuple[float, float] = (math.nan, math.nan)
    #: The evidence per T tried, in T order: (T, runs solved, runs).
    counts: tuple[tuple[int, int, int], ...] = ()
    #: A bound whose runs pass no one-sided test at :data:`BOUND_LEVEL`: the edge of the T tried, said to be weak.
    weak: bool = False

    @property
    def exploratory(self) -> bool:
        """Too few seeds for a verdict."""
        return self.seeds < MIN_SEEDS

    def evidence(self, T: float) -> str:
        """The runs at one T tried, in words: ``4 of 5 solve 256``."""
        won, ran = next((w, n) for t, w, n in self.counts if t == T)
        return f"{won} of {ran} solve {T:.0f}"

    def text(self) -> str:
        """How a report writes it: ``T50 = 57 [41, 80]``, a bound with its evidence (``T50 > 256: 4 of 5 solve 256``),
        a quasi-separated bracket, each interval end beyond the T tried said to be so; (exploratory) for few seeds."""
        lo_T, hi_T = min(self.T_tried), max(self.T_tried)
        if self.censored is not Censored.NONE:
            edge = hi_T if self.censored is Censored.ABOVE else lo_T
            every = "every run solves every T tried" if self.censored is Censored.ABOVE else "no run solves any T tried"
            why = [every] if not self.separated else []
            why += [self.evidence(self.estimate)] + ([self.evidence(edge)] if edge != self.estimate else [])
            out = f"T50 {self.censored.value} {self.estimate:.0f}: {', '.join(why)}"
            if self.weak:
                out += f" (not a {1 - BOUND_LEVEL:.0%} bound: too few runs)"
        elif self.separated:
            low, high = self.bracket
            out = (f"T50 between {low:.0f} and {high:.0f} (quasi-separated: {self.evidence(low)}, {self.evidence(high)}; "
                   f"95% [{self.low:.2g}, {self.high:.2g}])")  # fmt: skip
        else:
            out = f"T50 = {self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}]"
            if not lo_T / BEYOND <= self.estimate <= hi_T * BEYOND:
                out += " (beyond the T tried)"
            elif self.high > hi_T * BEYOND:
                out += f" (upper end beyond the largest T tried, {hi_T})"
            elif self.low < lo_T / BEYOND:
                out += f" (lower end below the smallest T tried, {lo_T})"
        return out + (f" (exploratory: {self.seeds} seeds)" if self.exploratory else "")


def t50(runs: pd.DataFrame, level: float = 0.95, bags: int = BAGS, seed: int = 0) -> T50:
    """T50 of one cell x init x budget from its runs (columns T, seed, solved): the median of its bagged posterior, with
    the equal-tailed interval; ``bags=0``: the plain posterior of the runs as they are."""
    data = runs[["T", "seed", "solved"]].dropna()
    tried = tuple(sorted({int(t) for t in data["T"]}))
    solved = data["solved"].to_numpy(dtype=bool)
    n_seeds = data["seed"].nunique()
    separated, (up, down) = _separation(data)
    counts = tuple((T, int(d["solved"].sum()), len(d)) for T, d in data.assign(solved=solved).groupby("T"))
    for side, is_side in ((Censored.ABOVE, solved.all() or separated and math.isnan(down)),
                          (Censored.BELOW, not solved.any() or separated and math.isnan(up))):  # fmt: skip
        if is_side:
            bound, weak = _bound(counts, side)
            return T50(bound, math.nan, math.nan, side, n_seeds, tried, level, separated, (up, down), counts, weak)
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
    return T50(math.exp(estimate), math.exp(low), math.exp(high), Censored.NONE, n_seeds, tried, level, separated,
               (up, down), counts)  # fmt: skip


def _bound(counts: tuple[tuple[int, int, int], ...], side: Censored) -> tuple[float, bool]:
    """The bound the runs support on one side: the largest T (ABOVE) whose runs reject P(solved | T) <= 1/2, or the
    smallest (BELOW) whose runs reject P >= 1/2, each by a one-sided binomial test at :data:`BOUND_LEVEL`; where no T
    passes, the edge of the T tried, weak."""
    above = side is Censored.ABOVE
    passing = [T for T, won, ran in counts
               if (stats.binom.sf(won - 1, ran, 0.5) if above else stats.binom.cdf(won, ran, 0.5)) <= BOUND_LEVEL]  # fmt: skip
    if passing:
        return float(max(passing) if above else min(passing)), False
    return float(counts[-1][0] if above else counts[0][0]), True


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
    bracket runs from the largest T at least half the seeds solved to the smallest T fewer than half did (NaN on a
    side with no such T: the crossing lies beyond the design there).
    """
    frac = data.groupby("T")["solved"].mean().sort_index()
    solved_T, failed_T = frac.index[frac > 0], frac.index[frac < 1]
    if solved_T.empty or failed_T.empty or solved_T.max() > failed_T.min():
        return False, (math.nan, math.nan)
    up, down = frac.index[frac >= SOLVED_FRACTION], frac.index[frac < SOLVED_FRACTION]
    return True, (float(up.max()) if len(up) else math.nan, float(down.min()) if len(down) else math.nan)


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
        log_T = (math.log(budget) - self.intercept) / self.alpha
        return math.exp(log_T) if log_T < 700 else math.inf  # a law with almost no growth reaches any T


def _log_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(Phi(b) - Phi(a)) for a < b, in whichever tail keeps it accurate."""
    upper = a > 0
    small = np.where(upper, special.log_ndtr(-b), special.log_ndtr(a))
    large = np.where(upper, special.log_ndtr(-a), special.log_ndtr(b))
    return large + np.log1p(-np.exp(small - large))


def _censored_normal(
    x: np.ndarray, y: np.ndarray, event: np.ndarray, y_low: np.ndarray, alpha: float | None = None
) -> tuple[float, np.ndarray]:
    """The largest log-likelihood of y = a + alpha x + sigma e (e normal) for runs that solved between ``y_low`` and
    ``y`` (``y_low`` -inf: exactly at y) or, ``event`` False, had not solved by y; and its (a, alpha, log sigma). With
    ``alpha`` given, maximised over the other two only.

    Fitted in Olsen's parameters (a/sigma, alpha/sigma, 1/sigma), where the log-likelihood is concave, so scipy's
    L-BFGS-B finds the one maximum (fixing alpha is the linear constraint alpha/sigma = alpha x 1/sigma).
    """
    exact, between = event & np.isneginf(y_low), event & ~np.isneginf(y_low)

    def nll(theta: np.ndarray) -> float:
        g0, h = theta[0], theta[-1]
        mean = g0 + (theta[1] if alpha is None else alpha * h) * x
        z = h * y - mean
        ll = np.where(exact, stats.norm.logpdf(z) + np.log(h), special.log_ndtr(-z))
        if between.any():
            ll[between] = _log_between(h * y_low[between] - mean[between], z[between])
        return -float(np.sum(ll))

    slope, intercept = np.polyfit(x, y, 1) if len(np.unique(x)) > 1 else (0.0, float(y.mean()))
    h = 1.0 / max(float(np.std(y - intercept - slope * x)), 0.1)
    start = np.array([intercept * h, slope * h, h]) if alpha is None else np.array([float(np.mean(y - alpha * x)) * h, h])
    bounds = [(None, None)] * (len(start) - 1) + [(1e-6, None)]
    fit = optimize.minimize(nll, start, method="L-BFGS-B", bounds=bounds, options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9})
    g0, h = fit.x[0], fit.x[-1]
    g1 = fit.x[1] if alpha is None else alpha * h
    return -float(fit.fun), np.array([g0 / h, g1 / h, -math.log(h)])


def growth_law(
    T: pd.Series, steps: pd.Series, budget: pd.Series, resolution: pd.Series | None = None, level: float = 0.95
) -> GrowthLaw:
    """Steps-to-solve against T for one line's runs; NaN where fewer than two T had a run solve.

    ``resolution``: how finely each run's solve was observed (its validation interval): a run first seen solved at
    step s solved after s - resolution, so its time is interval-censored; None: exactly at s.
    """
    solved = steps.notna().to_numpy()
    x = np.log(T.to_numpy(dtype=float))
    seen = np.where(solved, steps.fillna(1).clip(lower=1).to_numpy(dtype=float), budget.to_numpy(dtype=float))
    y = np.log(seen)
    if resolution is None:
        y_low = np.full_like(y, -np.inf)
    else:  # a solve seen at the first validation lies anywhere in (0, s]
        y_low = np.where(solved, np.log(np.clip(seen - resolution.to_numpy(dtype=float), 1e-3, None)), -np.inf)
    if len(np.unique(x[solved])) < 2:
        return GrowthLaw(math.nan, math.nan, math.nan, math.nan, math.nan, len(x), int(solved.sum()))
    best, (a, alpha, log_s) = _censored_normal(x, y, solved, y_low)
    best = max(best, _censored_normal(x, y, solved, y_low, alpha)[0])  # the profile's top, as the fixed-alpha fit finds it
    cut = stats.chi2.ppf(level, 1) / 2

    def drop(b: float) -> float:
        return best - _censored_normal(x, y, solved, y_low, b)[0] - cut

    def end(direction: int) -> float:
        if not drop(alpha) < 0:  # no finite maximum (every solve at one step, timed exactly): no profile to read
            return math.nan
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
        median=_exact_median(times, solved),
        low=_crossing(sf.quantiles, np.where(np.isnan(band.low.probabilities), point, band.low.probabilities)),
        high=_crossing(sf.quantiles, np.where(np.isnan(band.high.probabilities), point, band.high.probabilities)),
        solved=int(solved.sum()),
        runs=len(times),
    )


def _exact_median(times: np.ndarray, solved: np.ndarray) -> float:
    """The first time the Kaplan-Meier curve is at or below one half, in exact rational arithmetic: a curve that
    reaches one half exactly (5 of 10 solved) must not miss it by a rounding error."""
    survival, at_risk = Fraction(1), len(times)
    for t in np.unique(times):
        here = times == t
        events = int((here & solved).sum())
        if events:
            survival *= Fraction(at_risk - events, at_risk)
            if survival <= Fraction(1, 2):
                return float(t)
        at_risk -= int(here.sum())
    return math.inf


def _crossing(times: np.ndarray, survival: np.ndarray) -> float:
    """The first time a survival curve is at or below one half (inf where it never is)."""
    below = np.flatnonzero(survival <= 0.5)
    return float(times[below[0]]) if below.size else math.inf
