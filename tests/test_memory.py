"""Memory length as an estimate: T50 from simulated logistic outcomes with a known answer, censoring, Kaplan-Meier."""

import math

import numpy as np
import pandas as pd
import pytest

from rnnstudy.memory import steps_to_solve, t50

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
    estimate = t50(simulate(np.random.default_rng(0), true_t50=40.0, seeds=200), resamples=200)
    assert not estimate.censored and estimate.seeds == 200
    assert estimate.estimate == pytest.approx(40.0, rel=0.05)
    assert estimate.low < 40.0 < estimate.high and estimate.high / estimate.low < 1.2


def test_the_fit_is_the_maximum_likelihood_logistic_curve():
    from sklearn.linear_model import LogisticRegression

    data = simulate(np.random.default_rng(3), true_t50=30.0, seeds=30)
    x = np.log(data["T"].to_numpy(dtype=float))[:, None]
    fit = LogisticRegression(C=np.inf, max_iter=1000).fit(x, data["solved"].to_numpy())  # an independent fit
    expected = math.exp(-fit.intercept_[0] / fit.coef_[0, 0])
    assert t50(data, resamples=10).estimate == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_the_interval_covers_the_truth_at_about_its_nominal_rate():
    rng = np.random.default_rng(1)
    hits = [t50(simulate(rng, true_t50=30.0, seeds=10), resamples=300, seed=i) for i in range(200)]
    covered = np.mean([e.low <= 30.0 <= e.high for e in hits if not e.censored])
    assert 0.85 <= covered <= 1.0  # measured 0.89 for a nominal 0.95 (a percentile bootstrap over 10 seeds)


def test_censored_answers():
    every = pd.DataFrame({"T": [10, 20, 40] * 5, "seed": np.repeat(range(5), 3), "solved": True})
    none = every.assign(solved=False)
    assert (t50(every).censored, t50(every).estimate, t50(every).text()) == (">", 40.0, "T50 > 40")
    assert (t50(none).censored, t50(none).estimate, t50(none).text()) == ("<", 10.0, "T50 < 10")
    few = every.iloc[:6]
    assert t50(few).text() == "T50 > 40 (exploratory: 2 seeds)" and t50(few).exploratory


def test_a_curve_that_crosses_beyond_the_T_tried_is_censored():
    # 80% solved at the largest T: the fitted curve crosses one half beyond it, so T50 > 256, not "= 256"
    data = pd.DataFrame(
        {
            "T": [10, 80, 160, 256] * 5,
            "seed": np.repeat(range(5), 4),
            "solved": [True, True, True, True] * 4 + [True, True, True, False],
        }
    )
    estimate = t50(data)
    assert (estimate.censored, estimate.estimate, estimate.text()) == (">", 256.0, "T50 > 256")


def test_complete_separation_puts_t50_in_the_gap():
    data = pd.DataFrame({"T": [10, 20, 40, 80] * 5, "seed": np.repeat(range(5), 4), "solved": [True, True, False, False] * 5})
    estimate = t50(data, resamples=100)
    assert estimate.estimate == pytest.approx(math.sqrt(20 * 40)) and not estimate.censored
    assert estimate.low == pytest.approx(estimate.estimate) == pytest.approx(estimate.high)  # every resample: the same gap


def test_kaplan_meier_median_with_censored_runs():
    # Five runs, two never solved within 1000 steps: S drops by 1/5 at 100, 200, 300, and stays at 0.4 after
    km = steps_to_solve(pd.Series([100.0, 200.0, np.nan, 300.0, np.nan]), pd.Series([1000.0] * 5))
    assert (km.median, km.solved, km.runs) == (300.0, 3, 5)
    all_solved = steps_to_solve(pd.Series([50.0, 50.0, 80.0]), pd.Series([500.0] * 3))
    assert all_solved.median == 50.0 and all_solved.low <= 50.0 <= all_solved.high
    never = steps_to_solve(pd.Series([np.nan, np.nan]), pd.Series([500.0, 500.0]))
    assert math.isinf(never.median) and never.solved == 0
