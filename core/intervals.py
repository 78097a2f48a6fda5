"""Intervals: the one reported interval level and the small formulas every estimate's interval uses.

Every interval the tool reports has probability :data:`INTERVAL_PROB` (94%, ArviZ's default and the
paper's figures), equal-tailed: posterior weights and win rates (quantiles of draws at
:func:`tails`), rates of counts (:func:`jeffreys`), and large-sample intervals of a difference or a
kappa (:func:`normal_interval`, with the normal quantile :data:`Z_INTERVAL`). A change of level is
one edit here. Bottom layer: numpy and scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy import special

#: Probability mass of every reported interval (ArviZ's default, and the paper's figures).
INTERVAL_PROB = 0.94


def tails(prob: float = INTERVAL_PROB) -> tuple[float, float]:
    """The quantile levels of the equal-tailed ``prob`` interval: (0.03, 0.97) for 94%."""
    return (1.0 - prob) / 2.0, 1.0 - (1.0 - prob) / 2.0


def z_value(prob: float = INTERVAL_PROB) -> float:
    """The two-sided standard normal quantile of a ``prob`` interval (1.8808 for 94%, 1.96 for 95%)."""
    return float(special.ndtri(tails(prob)[1]))


#: the two-sided normal quantile of the reported intervals (1.88 for INTERVAL_PROB = 0.94)
Z_INTERVAL = z_value()


def normal_interval(mean, se, prob: float = INTERVAL_PROB):
    """The large-sample (Wald) interval mean -/+ z * se (scalars or arrays, unclipped)."""
    z = z_value(prob)
    return mean - z * se, mean + z * se


def jeffreys(wins: float, n: int, prob: float = INTERVAL_PROB) -> tuple[float, float]:
    """Equal-tailed Jeffreys interval of a rate of ``wins`` in ``n`` (a tie-halved count may be fractional):
    the ``prob`` quantiles of Beta(wins + 1/2, n - wins + 1/2); NaNs when n = 0.

    At no wins the lower end is 0, and at all wins the upper end is 1, as Brown, Cai and DasGupta
    (2001, "Interval estimation for a binomial proportion") modify it: the plain Beta quantile there
    excludes rates next to the observed 0 (or 1), and its coverage falls towards 0 as the true rate does."""
    if n <= 0:
        return float("nan"), float("nan")
    a, b = wins + 0.5, n - wins + 0.5
    lo, hi = special.betaincinv(a, b, np.array(tails(prob)))
    return (0.0 if wins <= 0 else float(lo)), (1.0 if wins >= n else float(hi))
