"""Memory length as an estimate: T50 from simulated logistic outcomes with a known answer, censoring, Kaplan-Meier."""

import math

import numpy as np
import pandas as pd
import pytest

from rnnstudy.analysis.memory import steps_to_solve, t50

GRID = [10, 14, 20, 28, 40, 57, 80, 113, 160]


def simulate(rng, true_t50=40.0, slope=-4.0, seeds=5, grid=GRID):
    """Outcomes drawn from P(solved | T) = sigmoid(slope * (log T - log T50)), every seed at every T."""
    rows = []
    for seed in range(seeds):
        for T in grid:
            p = 1 / (1 + math.exp(-slope * (math.log(T) - math.log(true_t50))))
            rows.append((T, seed, rng.random() < p))
    return pd.DataFrame(rows, columns=["T", "seed", "solved"])


def test_t50_recovers_the_crossing_of_a_known_curve():
    estimate = t50(simulate(np.random.default_rng(0), true_t50=40.0, seeds=200), bags=50)
    assert not estimate.censored and estimate.seeds == 200 and not estimate.separated
    assert estimate.estimate == pytest.approx(40.0, rel=0.05)
    assert estimate.low < 40.0 < estimate.high and estimate.high / estimate.low < 1.2


def test_with_many_seeds_t50_is_the_maximum_likelihood_crossing():
    from sklearn.linear_model import LogisticRegression

    data = simulate(np.random.default_rng(3), true_t50=30.0, seeds=300)
    x = np.log(data["T"].to_numpy(dtype=float))[:, None]
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(x, data["solved"].to_numpy())  # an independent fit
    expected = math.exp(-fit.intercept_[0] / fit.coef_[0, 0])
    assert t50(data, bags=0).estimate == pytest.approx(expected, rel=0.01)  # the posterior concentrates on the MLE


def test_the_posterior_median_matches_an_independent_integration():
    """bags=0: T50's posterior median equals the median of the likelihood integrated by scipy's quad over the slope
    (flat prior in log slope over [0.3, 60]) and over log T50 (flat over the grid's reach)."""
    from scipy import integrate

    data = simulate(np.random.default_rng(5), true_t50=25.0, seeds=5, grid=[10, 20, 40, 28])
    x, y = np.log(data["T"].to_numpy(dtype=float)), data["solved"].to_numpy(dtype=float)

    def density(m: float) -> float:
        def integrand(log_s: float) -> float:
            z = math.exp(log_s) * (m - x)
            return math.exp(float(np.sum(-y * np.logaddexp(0, -z) - (1 - y) * np.logaddexp(0, z))))

        return integrate.quad(integrand, math.log(0.3), math.log(60.0), limit=200)[0]

    ms = np.linspace(math.log(10 / 8), math.log(40 * 8), 801)
    dens = np.array([density(m) for m in ms])
    cdf = integrate.cumulative_trapezoid(dens, ms, initial=0)
    median = math.exp(np.interp(0.5, cdf / cdf[-1], ms))
    assert t50(data, bags=0).estimate == pytest.approx(median, rel=0.02)


def test_seeds_are_the_resampling_unit():
    """A seed's luck shared across T (each seed solves up to its own T) widens the interval over the same outcomes
    dealt to seeds independently at each T; resampling runs instead of seeds would give both one width."""
    T = [10, 14, 20, 28, 40, 57, 80]
    reach = [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]  # seed i solves the first reach[i] T
    shared = pd.DataFrame([(t, s, i < reach[s]) for s in range(10) for i, t in enumerate(T)], columns=["T", "seed", "solved"])
    rng = np.random.default_rng(0)
    dealt = shared.assign(solved=shared.groupby("T")["solved"].transform(lambda v: rng.permutation(v.to_numpy())))
    assert (shared.groupby("T")["solved"].sum() == dealt.groupby("T")["solved"].sum()).all()
    width = {name: (e := t50(d)).high / e.low for name, d in (("shared", shared), ("dealt", dealt))}
    assert width["shared"] > 1.15 * width["dealt"]


@pytest.mark.slow
def test_the_interval_covers_under_the_adaptive_T_search():
    """Nominal 0.95 keeps >= 0.90 through the harness's own T search: shallow and steep, seeds independent or lucky,
    the truth inside the design, at its largest T and beyond it."""
    from rnnstudy.analysis.coverage import Scenario, coverage

    designs = (Scenario(5, 2.0, 1.5), Scenario(5, 8.0, 0.0), Scenario(10, 2.0, 1.5), Scenario(10, 8.0, 1.5),
               Scenario(5, 2.0, 1.5, extra=5), Scenario(5, 8.0, 0.0, extra=5),
               Scenario(5, 8.0, 1.5, extra=5, at_max=1.0), Scenario(5, 2.0, 1.5, extra=5, at_max=2.0))  # fmt: skip
    for scenario in designs:
        assert coverage(scenario, studies=150, seed=7)["coverage"] >= 0.90, scenario


def test_the_firth_comparison_interval_is_the_profile_likelihood_where_the_penalty_is_negligible():
    """Many runs, no separation: Firth's penalty is negligible against the likelihood, so the interval is the plain
    profile-likelihood one, here from an independent fit: statsmodels-free, scipy's optimiser at each fixed T50."""
    from scipy import optimize, stats

    from rnnstudy.analysis.coverage import firth_interval

    data = simulate(np.random.default_rng(2), true_t50=30.0, slope=-3.0, seeds=200)
    x, y = np.log(data["T"].to_numpy(float)), data["solved"].to_numpy(float)

    def nll(m: float, b: float) -> float:
        eta = b * (x - m)
        return float(np.sum(y * np.logaddexp(0, -eta) + (1 - y) * np.logaddexp(0, eta)))

    def profile(m: float) -> float:
        return optimize.minimize_scalar(lambda b: nll(m, b), bounds=(-50, -0.01), method="bounded").fun

    best = optimize.minimize_scalar(profile, bounds=(math.log(10), math.log(160)), method="bounded")
    cut = stats.chi2.ppf(0.95, 1) / 2
    low = optimize.brentq(lambda m: profile(m) - best.fun - cut, math.log(5), best.x)
    high = optimize.brentq(lambda m: profile(m) - best.fun - cut, best.x, math.log(320))
    firth = firth_interval(data)
    assert firth[0] == pytest.approx(math.exp(low), rel=0.03) and firth[1] == pytest.approx(math.exp(high), rel=0.03)
    separated = pd.DataFrame({"T": [10, 20, 40] * 5, "seed": np.repeat(range(5), 3), "solved": [True, True, False] * 5})
    assert 20 < firth_interval(separated)[1] < math.inf  # finite under separation, unlike the plain likelihood


def test_censored_answers():
    every = pd.DataFrame({"T": [10, 20, 40] * 5, "seed": np.repeat(range(5), 3), "solved": True})
    none = every.assign(solved=False)
    assert (t50(every).censored, t50(every).estimate) == (">", 40.0)
    assert t50(every).text() == "T50 > 40: every run solves every T tried, 5 of 5 solve 40"
    assert (t50(none).censored, t50(none).estimate) == ("<", 10.0)
    assert t50(none).text() == "T50 < 10: no run solves any T tried, 0 of 5 solve 10"
    few = every.iloc[:6]
    assert t50(few).text() == (
        "T50 > 40: every run solves every T tried, 2 of 2 solve 40 (not a 95% bound: too few runs) (exploratory: 2 seeds)"
    )


def test_every_T_solved_but_the_last_at_4_of_5_is_a_lower_bound_with_its_evidence():
    """The LSTM b_f = 1 pattern: every smaller T solved, 4 of 5 seeds at the largest. The data bound T50 from below
    only; a number there would come from the slope's prior (a rule that returns "not separated" whenever every T has
    a solve misses exactly this)."""
    data = pd.DataFrame(
        {
            "T": [10, 80, 160, 256] * 5,
            "seed": np.repeat(range(5), 4),
            "solved": [True, True, True, True] * 4 + [True, True, True, False],
        }
    )
    estimate = t50(data)
    assert estimate.separated and estimate.censored == ">" and not estimate.weak
    # 4 of 5 do not reject P(solved | 256) <= 1/2 (binomial p = 6/32); 5 of 5 at 160 do (1/32): the bound is 160
    assert estimate.estimate == 160 and estimate.text() == "T50 > 160: 5 of 5 solve 160, 4 of 5 solve 256"
    ten = pd.concat([data, data[data["T"] == 256].assign(seed=lambda d: d["seed"] + 5, solved=True)])
    assert t50(ten).text() == "T50 > 256: 9 of 10 solve 256"  # 9 of 10 reject it (p = 11/1024)
    one_T = pd.DataFrame({"T": [10] * 5, "seed": range(5), "solved": [True, False, False, False, False]})
    assert t50(one_T).text() == "T50 < 10: 1 of 5 solve 10 (not a 95% bound: too few runs)"  # not 4.65 [1.33, 39.8]


def test_an_interval_end_beyond_the_T_tried_says_so():
    # a shallow, noisy line whose failures scatter below its successes: an estimate, its upper end past 40
    data = pd.DataFrame(
        {
            "T": [10, 20, 40] * 5,
            "seed": np.repeat(range(5), 3),
            "solved": [True, True, False, True, False, True, False, True, True, True, True, False, True, False, False],
        }
    )
    estimate = t50(data)
    assert not estimate.separated and not estimate.censored and estimate.high > 40 * 1.05
    assert estimate.text().endswith("(upper end beyond the largest T tried, 40)")


def test_separation_is_marked_and_located_between_design_points():
    data = pd.DataFrame({"T": [10, 20, 40, 80] * 5, "seed": np.repeat(range(5), 4), "solved": [True, True, False, False] * 5})
    estimate = t50(data)
    assert estimate.separated and estimate.bracket == (20, 40) and not estimate.censored
    assert estimate.estimate == pytest.approx(math.sqrt(20 * 40), rel=0.02)  # symmetric data: the gap's middle
    assert 20 < estimate.low < estimate.estimate < estimate.high < 40  # not collapsed onto the midpoint
    assert estimate.text().startswith("T50 between 20 and 40 (quasi-separated: 5 of 5 solve 20, 0 of 5 solve 40; 95% [")
    mixed = data.assign(solved=data["solved"] | ((data["T"] == 40) & (data["seed"] < 2)))  # 2 of 5 at 40: still separated
    assert t50(mixed).separated and t50(mixed).bracket == (20, 40)  # fewer than half at 40: the crossing is below it
    low = data.assign(solved=(data["T"] == 10) & (data["seed"] == 0))  # 1 of 5 at 10, none above: below every T tried
    est = t50(low)
    assert est.separated and est.bracket[1] == 10 and math.isnan(est.bracket[0])
    assert (est.censored, est.estimate, est.weak) == ("<", 20, False)  # 1 of 5 at 10 rejects nothing; 0 of 5 at 20 does
    assert est.text() == "T50 < 20: 0 of 5 solve 20, 1 of 5 solve 10"
    top = data.assign(solved=data["T"] < 80)  # 20 of 20 below 80 but at 40 all solved, 80 none: a plain bracket
    assert t50(top).separated and t50(top).bracket == (40, 80)
    overlap = mixed.assign(solved=mixed["solved"] & ~((mixed["T"] == 20) & (mixed["seed"] == 4)))  # a failure below
    assert not t50(overlap).separated


def test_kaplan_meier_median_exactly_at_one_half_is_not_lost_to_rounding():
    """12 of 24 runs solved: S falls to exactly 1/2 at the 12th solve, which floating point puts at 0.5000000000000001
    (the median was printed "not reached"); and 5 of 10 at 1350 of 1500 steps: 1350, not the next step."""
    steps = pd.Series([75.0 * (i + 1) for i in range(12)] + [np.nan] * 12)
    assert steps_to_solve(steps, pd.Series([1500.0] * 24)).median == 900.0
    ten = pd.Series([75.0, 150.0, 300.0, 600.0, 1350.0] + [np.nan] * 5)
    assert steps_to_solve(ten, pd.Series([1500.0] * 10)).median == 1350.0


def test_kaplan_meier_median_with_censored_runs():
    # Five runs, two never solved within 1000 steps: S drops by 1/5 at 100, 200, 300, and stays at 0.4 after
    km = steps_to_solve(pd.Series([100.0, 200.0, np.nan, 300.0, np.nan]), pd.Series([1000.0] * 5))
    assert (km.median, km.solved, km.runs) == (300.0, 3, 5)
    all_solved = steps_to_solve(pd.Series([50.0, 50.0, 80.0]), pd.Series([500.0] * 3))
    assert all_solved.median == 50.0 and all_solved.low <= 50.0 <= all_solved.high
    never = steps_to_solve(pd.Series([np.nan, np.nan]), pd.Series([500.0, 500.0]))
    assert math.isinf(never.median) and never.solved == 0
