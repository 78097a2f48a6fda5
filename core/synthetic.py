"""Synthetic comparison features and judges: data with known weights, for tests and benchmarks.

Features are drawn like real annotated pairs (per-attribute rates of differing, two latent traits
of a pair that move quality-like and verbosity-like attributes together); labels and outcomes
follow given weights (with a position term and Davidson ties when asked), so a fit can be checked
against the truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

from .sampler import DEFAULT_PRIOR_SCALE, INTERCEPT_SCALE, TIE_SCALE, outcome_probabilities


# Per-attribute rate of non-zero comparisons and loadings on two latent traits of a pair
# (overall quality difference q, verbosity difference v). Rough reading of real annotated
# pairs: richness and length differ in most pairs, humour, slang and the query-conditional
# attributes in few; quality-like attributes move together, verbosity-like ones too, and
# admitting limits (refusing) goes against both; and pairs of very different responses differ
# on many attributes at once. This makes the columns correlated, as real comparison features
# are, which is what stresses a sampler's mass matrix.
_SIM_RATE = (0.10, 0.15, 0.30, 0.25, 0.15, 0.35, 0.08, 0.15, 0.40, 0.30, 0.45, 0.20, 0.30, 0.30, 0.08,
             0.15, 0.40, 0.12, 0.30, 0.60, 0.25, 0.20, 0.20, 0.03, 0.02, 0.10, 0.03, 0.03, 0.55)
_SIM_Q = (1.0, 0.8, 0.5, 0.5, 0.3, 0.8, 0.0, 0.3, 0.5, 0.9, 1.0, -1.2, 0.6, 0.9, 0.0,
          0.8, 1.3, 1.5, 0.6, 1.2, 1.0, 1.3, 1.5, 0.8, 0.6, 1.2, 0.6, 1.0, 0.5)
_SIM_V = (0.0, 0.0, 0.3, 0.2, 0.2, 0.5, 0.2, 0.6, 1.0, 0.8, 1.0, -0.8, 0.5, 1.2, 0.1,
          -0.3, 0.2, 0.3, 0.5, 1.5, -0.3, -0.2, 0.0, 0.3, 0.3, 0.3, 0.0, 0.2, 2.0)
#: query-specific case -> index of the attribute that only applies there
_CASE_ATTRIBUTE = {"intent_unclear": 23, "express_feeling": 24, "w_constraints": 25, "w_stances": 26, "w_mistakes": 27}


def simulate_features(n: int, rng: np.random.Generator, *, case: str | None = None) -> np.ndarray:
    """(n, 29) comparison features that look like real ones: mostly 0, some +-1, correlated.

    ``case`` names a query-specific group (``intent_unclear`` ...): its conditional
    attribute is then non-zero in about half of the pairs instead of a few percent.
    """
    rate = np.array(_SIM_RATE)
    if case is not None:
        rate[_CASE_ATTRIBUTE[case]] = 0.5
    q = rng.standard_normal((n, 1))
    v = rng.standard_normal((n, 1))
    # how different the two responses are overall: very different pairs differ on many attributes
    spread = np.exp(0.7 * rng.standard_normal((n, 1)) - 0.245)
    p_plus = special.expit(q * np.array(_SIM_Q) + v * np.array(_SIM_V))
    nonzero = rng.random((n, rate.size)) < np.minimum(rate * spread, 0.95)
    sign = np.where(rng.random((n, rate.size)) < p_plus, 1, -1)
    return (nonzero * sign).astype(np.int8)


def simulate_labels(X: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels (1 = A preferred) drawn from the logistic model with the given weights.

    ``weights`` of shape (d,) gives (n,) labels; of shape (J, d) gives (n, J), one column per judge.
    """
    X = np.asarray(X, dtype=float)
    W = np.asarray(weights, dtype=float)
    p = special.expit(X @ W.T)
    return (rng.random(p.shape) < p).astype(np.int8)


def simulate_outcomes(X: np.ndarray, weights: np.ndarray, rng: np.random.Generator, *, position: Any = None,
                      bias: Any = 0.0, theta: Any = None) -> np.ndarray:
    """Verdicts (n, J): 1 A preferred, 0 B, 0.5 tie, drawn from the full model: logit z = x . w +
    bias * position (``position`` per row, +1 A shown first, -1 B first; default +1), and with
    ``theta`` (log nu per judge) Davidson's ties, P(A) = e^{z/2} / (e^{z/2} + e^{-z/2} + nu)."""
    X = np.asarray(X, dtype=float)
    W = np.atleast_2d(np.asarray(weights, dtype=float))
    pos = np.ones(X.shape[0]) if position is None else np.asarray(position, dtype=float)
    z = X @ W.T + pos[:, None] * np.broadcast_to(np.asarray(bias, dtype=float), (W.shape[0],))
    pa, pb, pt = outcome_probabilities(z, None if theta is None else np.broadcast_to(theta, (W.shape[0],)))
    u = rng.random(z.shape)
    return np.where(u < pa, 1.0, np.where(u < pa + pt, 0.5, 0.0))


def prior_judges_in_both_orders(n: int, judges: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Judges drawn from the full model's prior (attribute weights Laplace(0, b), a position bias N(0, 1),
    log nu N(0, 2)) judging n synthetic pairs shown in both orders (rows: the n pairs A first, then the
    same n B first), half of them in both orders and the others in one: the coverage checks' setup, where
    truth drawn from the prior makes the nominal 94% the expected rate. X, Y (rows x judges, NaN where
    a judge gave no verdict), position (+1 / -1 per row), rows' pair index ``sample``, and ``truth``
    (judges x [position, weights..., log nu], the fitted profile's order)."""
    X = simulate_features(n, rng)
    W = rng.laplace(0.0, DEFAULT_PRIOR_SCALE, (judges, X.shape[1]))
    bias = rng.normal(0.0, INTERCEPT_SCALE, judges)
    theta = rng.normal(0.0, TIE_SCALE, judges)
    pos = np.r_[np.ones(n), -np.ones(n)]
    Y = simulate_outcomes(np.vstack([X, X]), W, rng, position=pos, bias=bias, theta=theta)
    Y[n:, judges // 2:] = np.nan  # the second half of the judges gave one order only
    return {"X": np.vstack([X, X]), "Y": Y, "position": pos, "sample": np.r_[np.arange(n), np.arange(n)],
            "truth": np.column_stack([bias, W, theta])}
