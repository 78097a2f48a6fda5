"""The sampler (core/sampler.py): its pieces, and the fast path against an independent reference."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from scipy import special

from core import sampler


# --------------------------------------------------------------------------- against a reference


def _newton_map(X: np.ndarray, y: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """MAP of logistic regression with a Laplace(0, b) prior by Newton's method (weights far from 0,
    where the prior's log density is linear), and the Hessian of the negative log posterior there."""
    w = np.zeros(X.shape[1])
    for _ in range(50):
        p = special.expit(X @ w)
        grad = X.T @ (p - y) + np.sign(w) / b
        H = X.T @ (X * (p * (1 - p))[:, None])
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-12:
            break
    return w, H


def test_fast_posterior_matches_an_independent_newton_map_and_the_inverse_hessian():
    # a small logistic problem with many samples: the posterior is close to Gaussian, so its mean is
    # the MAP (to O(1/n), well under a tenth of a posterior sd here) and its sd the square root of
    # the inverse Hessian's diagonal (the Laplace approximation), computed here without the sampler
    rng = np.random.default_rng(7)
    n, w_true, b = 4000, np.array([0.8, -0.5, 0.3]), 1.0
    X = rng.integers(-1, 2, size=(n, 3)).astype(float)
    y = (rng.random(n) < special.expit(X @ w_true)).astype(float)
    w_map, H = _newton_map(X, y, b)
    sd_laplace = np.sqrt(np.diag(np.linalg.inv(H)))
    post = sampler.fit_fast(X, y, prior_scale=b, draws=2000, tune=500, chains=4, seed=3)
    assert post.draws.shape == (1, 8000, 3) and post.sampler == sampler.FAST_SAMPLER
    mean, sd = post.mean[0], post.sd[0]
    np.testing.assert_allclose(mean, w_map, atol=0.1 * sd_laplace.min())
    np.testing.assert_allclose(sd, sd_laplace, rtol=0.08)
    # the 94% interval is as wide as the Gaussian one
    lo, hi = np.quantile(post.draws[0], [0.03, 0.97], axis=0)
    np.testing.assert_allclose(hi - lo, 2 * special.ndtri(0.97) * sd_laplace, rtol=0.1)


# --------------------------------------------------------------------------- pieces


def test_laplace_drift_is_the_exact_reversible_flow():
    rng = np.random.default_rng(0)
    x, v = rng.normal(0, 0.3, 500), rng.normal(0, 1, 500)
    alpha, tau = rng.uniform(0.1, 5, 500), rng.uniform(0.1, 2, 500)
    x1, v1 = sampler._laplace_drift(x, v, alpha, tau)
    # energy of the V-shaped potential is conserved exactly, and the flow reverses exactly
    assert np.allclose(0.5 * v1**2 + alpha * np.abs(x1), 0.5 * v**2 + alpha * np.abs(x), atol=1e-12)
    xb, vb = sampler._laplace_drift(x1, -v1, alpha, tau)
    assert np.allclose(xb, x, atol=1e-12) and np.allclose(-vb, v, atol=1e-12)
    # a particle sitting on the kink leaves it on the side its velocity points to
    x0, v0 = sampler._laplace_drift(np.zeros(2), np.array([-1.0, 1.0]), np.ones(2), np.full(2, 0.5))
    assert np.allclose(x0, [-0.375, 0.375]) and np.allclose(v0, [-0.5, 0.5])
    # and it is the limit of many tiny leapfrog steps (several crossings of 0 included)
    xs, vs, k = x.copy(), v.copy(), 20000
    h = tau / k
    for _ in range(k):
        vs -= 0.5 * h * alpha * np.sign(xs)
        xs += h * vs
        vs -= 0.5 * h * alpha * np.sign(xs)
    assert np.abs(xs - x1).max() < 5e-3 and np.abs(vs - v1).max() < 2e-2


@pytest.mark.parametrize("chains,draws", [(4, 500), (4, 7), (2, 5), (1, 100), (3, 51)])
@pytest.mark.parametrize("rho", [0.0, 0.9, -0.7])
def test_rhat_and_ess_are_arviz_numbers(chains, draws, rho):
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(abs(hash((chains, draws, rho))) % 2**32)
    a = np.zeros((chains, draws))
    e = rng.normal(size=(chains, draws))
    for t in range(1, draws):
        a[:, t] = rho * a[:, t - 1] + e[:, t]
    if draws > 8:
        a[:, 1::2] = a[:, 0::2][:, : draws // 2]  # ties, as rejected proposals make
    a += 0.2 * np.arange(chains)[:, None]  # some disagreement between chains
    r, s = sampler.rhat_ess(a[..., None])
    logging.disable(logging.WARNING)  # ArviZ logs that one chain has no R-hat
    try:
        with np.errstate(all="ignore"):
            ra, sa = az.rhat(a, method="rank"), az.ess(a, method="bulk")
    finally:
        logging.disable(logging.NOTSET)
    np.testing.assert_allclose([r[0], s[0]], [ra, sa], rtol=1e-8, equal_nan=True)


def test_rhat_and_ess_vectorise_over_judges_and_weights():
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 4, 300, 5))
    a[1] = np.cumsum(a[1], axis=1) * 0.1 + a[1]
    r, s = sampler.rhat_ess(a)
    assert r.shape == s.shape == (3, 5)
    for j in range(3):
        for k in range(5):
            assert r[j, k] == pytest.approx(az.rhat(a[j, :, :, k], method="rank"), rel=1e-8)
            assert s[j, k] == pytest.approx(az.ess(a[j, :, :, k], method="bulk"), rel=1e-8)
    ra, sa = sampler.rhat_ess(a, engine="arviz")
    np.testing.assert_allclose(ra, r, rtol=1e-8)
    np.testing.assert_allclose(sa, s, rtol=1e-8)


def test_buckets_pad_similar_sizes_together():
    sizes = [1418, 820, 820, 459, 400, 400, 121]
    one_judge = sampler._buckets(sizes, width=4)
    assert sorted(i for b in one_judge for i in b) == list(range(len(sizes)))
    assert len(one_judge) < len(sizes)  # small batches are merged
    many = sampler._buckets(sizes, width=132)
    assert all(len(b) * sizes[b[0]] * 132 <= sampler.BATCH_ELEMENTS or len(b) == 1 for b in many)


# ------------------------------------------------------------------ the expected score (one formula)


def _old_experiment_predicted(X, W, intercept, half_nu=None):
    """core.experiment.predicted as it was before the formula had one home (a copy, the reference)."""
    n = X.shape[0]
    off = 1 if intercept else 0
    z = X @ W[:, off:].T.astype(float)
    b = W[:, 0].astype(float) if intercept else np.zeros(W.shape[0])

    def prob(zz):
        a = zz / 2.0
        if half_nu is None:
            return 0.5 + 0.5 * np.tanh(a)
        return 0.5 + 0.5 * np.sinh(a) / (np.cosh(a) + half_nu.astype(float))

    p = 0.5 * (prob(z + b) + prob(z - b))
    return p.mean(axis=0), (p * (1 - p)).sum(axis=0) / n ** 2


@pytest.mark.parametrize("theta", [None, -1.5, 0.0, 1.2])
def test_expected_score_is_p_a_plus_half_p_tie(theta):
    from core.sampler import expected_score

    z = np.random.default_rng(3).normal(0, 3, 200)
    pa, _, pt = sampler.outcome_probabilities(z, theta)
    got = expected_score(z, None if theta is None else np.exp(theta) / 2)
    assert got == pytest.approx(pa + pt / 2, abs=1e-13)
    if theta is None:
        assert got == pytest.approx(special.expit(z), abs=1e-13)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("intercept", [False, True])
def test_the_experiment_and_the_simulator_use_it_with_the_old_numbers(ties, intercept):
    """experiment.predicted, simulate.subset_means and simulate.predicted_a all go through
    sampler.expected_score / score_margin: their numbers are the inlined formulas' they replaced."""
    from core import experiment, simulate

    rng = np.random.default_rng(7)
    n, d, D = 40, 5, 30
    X = rng.integers(-1, 2, size=(n, d)).astype(float)
    W = rng.normal(0, 0.8, size=(D, d + intercept)).astype(np.float32)
    half_nu = (0.5 * np.exp(rng.normal(0, 0.5, D))).astype(np.float32) if ties else None
    m, v = experiment.predicted(X, W, intercept, half_nu)
    m0, v0 = _old_experiment_predicted(X, W, intercept, half_nu)
    np.testing.assert_array_equal(m, m0)
    np.testing.assert_array_equal(v, v0)

    if intercept:
        return  # the simulator's kernel takes oriented features with the position column already in X
    Wd = W.astype(float)
    hn = None if half_nu is None else half_nu.astype(float)[None, :]
    want = (0.5 + 0.5 * (np.tanh(X @ Wd.T / 2) if hn is None
                         else np.sinh(X @ Wd.T / 2) / (np.cosh(X @ Wd.T / 2) + hn)))  # (n, D): the old kernel's P
    res = simulate.subset_means(X, W, np.zeros((n, 1)), [[]], [0], half_nu=half_nu)
    assert res.means[0] == pytest.approx(want.mean(axis=0), abs=1e-5)  # float32 kernel
    assert simulate.predicted_a(X, W, half_nu=half_nu) == pytest.approx(want.mean(axis=1), abs=1e-5)


# --------------------------------------------------------------------------- soft labels (issue 15, point 2)


def test_soft_targets_keep_ties_and_count_probabilities_that_contradict_the_choice():
    Y = np.array([[1.0], [0.0], [0.5], [np.nan], [1.0], [0.0], [1.0], [0.0]])
    P = np.array([[0.8], [0.3], [0.6], [0.9], [0.2], [0.7], [0.5], [np.nan]])
    T, conflicts = sampler.soft_targets(Y, P)
    # decisive: used; a tie stays a tie; no label: nothing; A chosen at P(A) 0.2 and B chosen at P(A) 0.7
    # contradict their choice: used as given (the choice may be a draw from it) and counted; 0.5 is neither
    np.testing.assert_array_equal(T[:, 0], [0.8, 0.3, np.nan, np.nan, 0.2, 0.7, 0.5, np.nan])
    assert conflicts == 2
    with pytest.raises(ValueError, match="shaped like"):
        sampler.soft_targets(Y, P[:3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sampler.soft_targets(Y, P + 1.0)


def test_soft_posterior_matches_an_independent_newton_map_of_the_expected_log_likelihood():
    # the soft likelihood sum p log sigmoid(z) + (1 - p) log sigmoid(-z): the same Newton MAP (its
    # gradient X'(sigmoid(z) - p) takes p as it takes 0/1) and inverse Hessian as the hard check above
    rng = np.random.default_rng(8)
    n, w_true, b = 4000, np.array([0.8, -0.5, 0.3]), 1.0
    X = rng.integers(-1, 2, size=(n, 3)).astype(float)
    p = special.expit(X @ w_true + rng.normal(0, 0.3, n))
    y = (p > 0.5).astype(float)  # the judge's choice: the side its own probability favours
    w_map, H = _newton_map(X, p, b)
    sd_laplace = np.sqrt(np.diag(np.linalg.inv(H)))
    post = sampler.fit_fast(X, y, prob=p, prior_scale=b, draws=2000, tune=300, chains=4, seed=3)
    np.testing.assert_allclose(post.mean[0], w_map, atol=0.1 * sd_laplace.min())
    np.testing.assert_allclose(post.sd[0], sd_laplace, rtol=0.08)


@pytest.mark.parametrize("ties", ["drop", "davidson"])
def test_soft_labels_of_zero_and_one_are_the_hard_labels(ties):
    rng = np.random.default_rng(4)
    X = rng.integers(-1, 2, size=(300, 5)).astype(float)
    y = (rng.random(300) < special.expit(X @ np.array([0.5, -0.3, 0, 0, 0.2]))).astype(float)
    if ties == "davidson":
        y[rng.random(300) < 0.2] = 0.5
    hard = sampler.fit_fast(X, y, draws=200, tune=100, chains=2, seed=1, ties=ties)
    soft = sampler.fit_fast(X, y, prob=np.where(y == 0.5, 0.5, y), draws=200, tune=100, chains=2, seed=1, ties=ties)
    np.testing.assert_allclose(soft.draws, hard.draws, rtol=0, atol=1e-12)


def test_soft_labels_recover_the_truth_with_intervals_no_wider_than_hard_ones():
    # a judge that reports the true model's probability P(A) and chooses the side it favours: the soft fit
    # covers the true weights and is at least as sharp as the fit on its choices alone
    rng = np.random.default_rng(11)
    n, d, b = 600, 8, 1.0
    w_true = np.array([0.9, -0.6, 0.4, 0.0, 0.0, -0.3, 0.2, 0.0])
    X = rng.integers(-1, 2, size=(n, d)).astype(float)
    p = special.expit(X @ w_true)
    y = np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, rng.integers(0, 2, n).astype(float)))
    soft = sampler.fit_fast(X, y, prob=p, prior_scale=b, draws=1000, tune=300, chains=4, seed=2)
    hard = sampler.fit_fast(X, y, prior_scale=b, draws=1000, tune=300, chains=4, seed=2)
    lo_s, hi_s = np.quantile(soft.draws[0], [0.03, 0.97], axis=0)
    lo_h, hi_h = np.quantile(hard.draws[0], [0.03, 0.97], axis=0)
    assert ((lo_s <= w_true) & (w_true <= hi_s)).all()
    assert ((hi_s - lo_s) <= (hi_h - lo_h) * 1.02).all()
    assert np.abs(soft.mean[0] - w_true).max() < np.abs(hard.mean[0] - w_true).max()


# --------------------------------------------------------------------------- compiled kernels


def _kernels():
    kern = sampler._compiled_kernels()
    if kern is None:
        pytest.skip(f"numba kernels unavailable: {sampler._kernel_state.get('error')}")
    return kern


def test_compiled_kick_and_drift_is_the_numpy_flow():
    kern = _kernels()
    rng = np.random.default_rng(3)
    K, d = 400, 6
    w, v, g = rng.normal(0, 0.3, (K, d)), rng.normal(0, 1, (K, d)), rng.normal(0, 1, (K, d))
    w[:5] = 0.0  # particles on the kink
    hs, alpha, tau = rng.uniform(0, 0.2, (K, d)), rng.uniform(0.1, 5, (K, d)), rng.uniform(0.1, 2, K)
    prior = np.ones(d, dtype=bool)
    prior[0] = False  # the position term: no Laplace prior, a straight line
    alpha[:, 0] = 0.0
    x1, v1 = np.empty_like(w), np.empty_like(w)
    kern["kick_drift"](w, v, g, hs, alpha, tau, prior, x1, v1)
    x0, v0 = sampler._laplace_drift(w, v + hs * g, alpha, tau[:, None], prior)
    np.testing.assert_allclose(x1, x0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(v1, v0, rtol=0, atol=1e-14)


def test_compiled_tie_terms_and_masked_sums_are_the_numpy_ones():
    kern = _kernels()
    rng = np.random.default_rng(4)
    R, n = 30, 257
    E = np.exp(rng.normal(0, 1.5, (R, n))).astype(np.float32)
    nu = np.exp(rng.normal(0, 1, R)).astype(np.float32)
    M = (rng.random((R, n)) < 0.8).astype(np.float32)
    for mask_q in (True, False):
        Q, D, p_tie = np.empty_like(E), np.empty_like(E), np.empty(R)
        kern["tie_terms"](E, nu, M, mask_q, Q, D, p_tie)
        D0 = E + np.reciprocal(E) + nu[:, None]
        Q0 = (E - np.reciprocal(E)) * np.reciprocal(D0) * (M if mask_q else 1.0)
        np.testing.assert_allclose(D, D0, rtol=1e-6)
        np.testing.assert_allclose(Q, Q0, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(p_tie, (M / D0.astype(float)).sum(-1), rtol=1e-5)
    out = np.empty(R)
    kern["masked_sum"](np.log(D), M, out)
    np.testing.assert_allclose(out, (np.log(D).astype(float) * M).sum(-1), rtol=1e-9)


def test_compiled_rank_normalisation_is_the_numpy_one_ties_included():
    _kernels()
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 4, 8, 150)).cumsum(-1)
    a[0, :, :, ::2] = np.round(a[0, :, :, ::2], 1)  # repeated values (rejected proposals) share ranks
    a[1] = rng.integers(-3, 4, a[1].shape)  # equal folded values from both sides of the median
    a[2, 0, 0] = 1.0  # a constant series
    z1, tail1 = sampler._z_scale_bulk_and_tail(a)
    state = dict(sampler._kernel_state)
    try:
        sampler._kernel_state["kernels"] = None  # the numpy path: two sorts
        z0, tail0 = sampler._z_scale_bulk_and_tail(a)
    finally:
        sampler._kernel_state.clear()
        sampler._kernel_state.update(state)
    np.testing.assert_array_equal(z1, z0)
    np.testing.assert_array_equal(tail1, tail0)
    # and the numpy path is ArviZ's rank normalisation (test_rhat_and_ess_are_arviz_numbers pins the rest)
    z, med = sampler._z_scale(a, return_median=True)
    np.testing.assert_array_equal(z0, z)
    np.testing.assert_array_equal(tail0, sampler._z_scale(np.abs(a - med[..., None, None])))


def test_kernels_compile_without_a_writable_cache_and_fall_back_without_numba(monkeypatch):
    numba = pytest.importorskip("numba")
    real = numba.njit

    def no_cache_dir(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")  # what numba says
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", no_cache_dir)
    kern = sampler._build_kernels()
    assert kern is not None and set(kern) == {"kick_drift", "tie_terms", "masked_sum", "z_ranks"}
    monkeypatch.setitem(sys.modules, "numba", None)  # numba missing: None, and the numpy code runs
    assert sampler._build_kernels() is None


def test_the_tie_model_samples_the_same_posterior_with_and_without_the_kernels(monkeypatch):
    _kernels()
    rng = np.random.default_rng(8)
    n = 600
    X = rng.integers(-1, 2, size=(n, 4)).astype(float)
    pos = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    z = X @ np.array([0.8, -0.4, 0.0, 0.3]) + 0.3 * pos
    pa, pb, pt = sampler.outcome_probabilities(z, -0.7)
    u = rng.random(n)
    y = np.where(u < pa, 1.0, np.where(u < pa + pb, 0.0, 0.5))
    y[rng.random(n) < 0.1] = np.nan  # masked rows
    kw = dict(prior_scale=0.5, draws=1500, tune=500, chains=4, intercept=True, position=pos, ties="davidson")
    with_k = sampler.fit_fast(X, y, seed=1, **kw)
    monkeypatch.setitem(sampler._kernel_state, "kernels", None)
    without = sampler.fit_fast(X, y, seed=2, **kw)
    se = np.hypot(with_k.sd[0], without.sd[0]) / np.sqrt(1000)  # Monte-Carlo error of a difference of means
    assert np.all(np.abs(with_k.mean[0] - without.mean[0]) < 5 * se)
    np.testing.assert_allclose(with_k.sd[0], without.sd[0], rtol=0.1)
