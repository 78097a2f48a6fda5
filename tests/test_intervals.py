"""core.intervals: the one interval level and its formulas, against scipy.stats references."""

import math

import numpy as np
import pytest
from scipy import stats

from core import intervals
from core.intervals import INTERVAL_PROB, jeffreys, normal_interval, tails, z_value


def test_the_level_is_94_percent_equal_tailed():
    assert INTERVAL_PROB == 0.94
    assert tails() == pytest.approx((0.03, 0.97), abs=1e-15)
    assert tails(0.5) == (0.25, 0.75)


@pytest.mark.parametrize("prob", [0.5, 0.9, 0.94, 0.95, 0.99])
def test_the_normal_quantile_is_scipys(prob):
    assert z_value(prob) == pytest.approx(stats.norm.ppf(0.5 + prob / 2), rel=1e-14)


def test_the_reported_quantile_is_the_one_the_kappa_interval_used():
    # judges.py hard-coded this value before it had a home here: the numbers stay identical
    assert intervals.Z_INTERVAL == 1.8807936081512509 == z_value(INTERVAL_PROB)


def test_the_normal_interval_is_mean_plus_minus_z_se_on_arrays_too():
    lo, hi = normal_interval(0.2, 0.1)
    assert (lo, hi) == pytest.approx(stats.norm.interval(0.94, loc=0.2, scale=0.1), rel=1e-12)
    lo, hi = normal_interval(np.array([0.0, 1.0]), np.array([1.0, 2.0]), 0.95)
    assert lo == pytest.approx([-1.959964, 1 - 2 * 1.959964], rel=1e-6) and hi == pytest.approx([1.959964, 1 + 3.919928])


@pytest.mark.parametrize("prob", [0.9, 0.94])
@pytest.mark.parametrize("wins,n", [(1, 2), (3, 10), (7.5, 20), (50, 51), (0.5, 3), (400, 1000)])
def test_jeffreys_is_the_beta_quantiles_inside(wins, n, prob):
    lo, hi = jeffreys(wins, n, prob)
    dist = stats.beta(wins + 0.5, n - wins + 0.5)
    assert (lo, hi) == pytest.approx((dist.ppf((1 - prob) / 2), dist.ppf((1 + prob) / 2)), rel=1e-10)
    assert lo < wins / n < hi


@pytest.mark.parametrize("n", [1, 5, 40])
def test_jeffreys_reaches_the_end_at_no_wins_and_at_all_wins(n):
    """Brown, Cai and DasGupta's modification: at 0 wins the interval starts at 0 (the Beta quantile
    would exclude every rate below it, though 0 wins is what small rates produce), at n it ends at 1;
    the other end is the Beta quantile."""
    lo, hi = jeffreys(0, n)
    assert lo == 0.0 and hi == pytest.approx(stats.beta(0.5, n + 0.5).ppf(0.97), rel=1e-10)
    lo, hi = jeffreys(n, n)
    assert hi == 1.0 and lo == pytest.approx(stats.beta(n + 0.5, 0.5).ppf(0.03), rel=1e-10)


def test_jeffreys_of_nothing_is_nan():
    assert all(math.isnan(v) for v in jeffreys(0, 0))


def test_the_callers_share_it():
    """The bias card, the simulator and the experiment use this one function, and the
    kappa interval this one quantile (no second copy to drift)."""
    import inspect

    from core import bias, compare, experiment, fit, judges, simulate

    assert simulate.jeffreys is experiment.jeffreys is bias.jeffreys is jeffreys
    for mod in (bias, compare, experiment, fit, judges, simulate):
        src = inspect.getsource(mod)
        assert "betaincinv" not in src and "ndtri" not in src and "0.94" not in src, mod
