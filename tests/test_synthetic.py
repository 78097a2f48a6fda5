"""Synthetic comparison features and judges with known weights (used by tests and benchmarks)."""

import numpy as np
import pytest

from core import catalogue, synthetic
from core.profile import display_percent

D = len(catalogue.attribute_keys())


def test_simulated_features_look_like_comparisons():
    X = synthetic.simulate_features(2000, np.random.default_rng(0))
    assert X.shape == (2000, D) and set(np.unique(X)) <= {-1, 0, 1}
    assert 0.6 < (X == 0).mean() < 0.9  # mostly ties
    C = np.corrcoef(X.T.astype(float))
    assert np.nanmax(np.abs(C - np.eye(D))) > 0.2  # correlated columns
    Xc = synthetic.simulate_features(2000, np.random.default_rng(0), case="intent_unclear")
    k = catalogue.attribute_keys().index("clarifies_intent")
    assert (Xc[:, k] != 0).mean() > 5 * (X[:, k] != 0).mean()


def test_simulate_labels_follow_the_weights():
    rng = np.random.default_rng(1)
    X = synthetic.simulate_features(5000, rng)
    w = np.zeros(D)
    w[catalogue.attribute_keys().index("lengthy")] = 2.0
    y = synthetic.simulate_labels(X, w, rng)
    longer = X[:, -1] == 1
    assert y.shape == (5000,) and y[longer].mean() == pytest.approx(display_percent(2.0) / 100, abs=0.03)
    assert synthetic.simulate_labels(X, np.stack([w, -w]), rng).shape == (5000, 2)
