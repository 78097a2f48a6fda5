"""Fitting a judge's profile: the posterior of its attribute weights in one scenario group.

The model is the paper's: Bayesian logistic regression, label 1 when the judge preferred
response A, features the comparison values in {-1, 0, +1} (``catalogue.attribute_keys()``
order), no intercept by default, and an independent Laplace(0, b) prior on every weight
(b = 0.1 unless configured). Two samplers target the same posterior:

- :func:`fit_exact`: NUTS through PyMC (nutpie when it works, PyMC's own NUTS otherwise).
  The reference; a few seconds per judge.
- :func:`fit_fast`: batched split HMC in numpy over all judges (and chains, cross-validation
  folds and scenario groups) at once. Exact in the MCMC sense (a Metropolis-corrected,
  reversible integrator that solves the Laplace prior's part of the dynamics in closed form),
  checked against long NUTS runs in ``tests/test_fit.py``; fast because every judge of a
  group shares one feature matrix, so one matrix product moves hundreds of chains one step.
  ``fit_fast.__doc__`` says why this sampler and not another. Its per-sample arithmetic is
  float32 (the chain targets the float32 posterior, within ~1e-5 of the float64 one in log
  density, far below Monte-Carlo error).

:func:`fit_profiles` turns either posterior into :class:`Profile` records (summaries,
k-fold accuracy, convergence diagnostics, provenance); :func:`profile_row` shapes one for
``Store.save_profile``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import inspect
import json
import math
import os
import platform
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import special

from . import catalogue
from . import scopes as scope_rules
from .profile import (INTERCEPT, MIN_DIFFERING, TIE, display_percent, is_attribute_term, is_position,
                      load_published_profiles)

#: The paper's prior scale: Laplace(0, 0.1) on every weight.
DEFAULT_PRIOR_SCALE = 0.1
#: Probability mass of the reported interval (ArviZ's default, and the paper's figures).
INTERVAL_PROB = 0.94
INTERCEPT_SCALE = 1.0
#: The Davidson tie parameter (``profile.TIE``, log nu) gets a Normal(0, TIE_SCALE) prior.
TIE_SCALE = 2.0
#: How ties are modelled: dropped (the paper, binary logistic) or as an outcome (Davidson 1970).
TIE_MODELS = ("drop", "davidson")
#: Posterior draws kept on each Profile (thinned, float32) for judge-minus-judge intervals.
KEEP_DRAWS = 1000

FAST_SAMPLER = "batched-hmc"
METHODS = ("fast", "exact")


# --------------------------------------------------------------------------- synthetic data

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


# --------------------------------------------------------------------------- inputs


def _design(X: Any, intercept: bool, position: Any = None, ties: bool = False) -> np.ndarray:
    """The sampler's design: [position column,] features[, a zero column for the tie parameter].

    ``position`` (rows,) is +1 where A was shown first and -1 where B was (default: +1, A first)."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be (samples, features), not shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X has missing or infinite values")
    if intercept:
        if position is None:
            col = np.ones((X.shape[0], 1))
        else:
            col = np.asarray(position, dtype=float).reshape(-1, 1)
            if col.shape[0] != X.shape[0] or not np.isin(col, (-1.0, 1.0)).all():
                raise ValueError(f"position must be +1 (A shown first) or -1 (B first) for each of {X.shape[0]} rows")
        X = np.hstack([col, X])
    if ties:  # the tie parameter is a coordinate of the sampler with no column in X
        X = np.hstack([X, np.zeros((X.shape[0], 1))])
    return X


def _labels(Y: Any, n: int, ties: str = "drop") -> np.ndarray:
    """Labels as float (n, J): 1 = A preferred, 0 = B preferred, 0.5 = tie, NaN = no label.

    With ``ties="drop"`` (the binary model) a tie becomes NaN: no label."""
    Y = np.array(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"labels must be ({n},) or ({n}, judges), not shape {Y.shape}")
    ok = np.isnan(Y) | (Y == 0) | (Y == 1) | (Y == 0.5)
    if not ok.all():
        raise ValueError("labels must be 0 (B preferred), 1 (A preferred), 0.5 (tie) or NaN (no label)")
    if ties not in TIE_MODELS:
        raise ValueError(f"ties must be one of {TIE_MODELS}, not {ties!r}")
    if ties == "drop":
        Y[Y == 0.5] = np.nan
    return Y


def _prior_vectors(d: int, prior_scale: float, intercept: bool, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-weight Laplace rate 1/b and Gaussian precision (the latter only for the position term
    and the tie parameter, which is the last coordinate when ``ties``)."""
    if not prior_scale > 0:
        raise ValueError(f"prior_scale must be positive, not {prior_scale!r}")
    lap = np.full(d, 1.0 / prior_scale)
    gprec = np.zeros(d)
    if intercept:
        lap[0] = 0.0
        gprec[0] = 1.0 / INTERCEPT_SCALE**2
    if ties:
        lap[-1] = 0.0
        gprec[-1] = 1.0 / TIE_SCALE**2
    return lap, gprec


# --------------------------------------------------------------------------- results


@dataclass
class Posterior:
    """Posterior draws from one sampler run.

    ``draws`` is (S, d) from :func:`fit_exact` and (J, S, d) from :func:`fit_fast`, with
    S = chains * draws per chain, chain-major (``by_chain`` splits them back).
    """

    draws: np.ndarray
    chains: int
    sampler: str
    settings: dict[str, Any]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.draws, dtype=dtype)

    def by_chain(self) -> np.ndarray:
        """The draws as (..., chains, draws per chain, d)."""
        *lead, s, d = self.draws.shape
        return self.draws.reshape(*lead, self.chains, s // self.chains, d)

    @property
    def mean(self) -> np.ndarray:
        return self.draws.mean(axis=-2)

    @property
    def sd(self) -> np.ndarray:
        return self.draws.std(axis=-2, ddof=1)


# --------------------------------------------------------------------------- exact: NUTS

_compiled: dict[tuple, Any] = {}
_compile_lock = threading.Lock()


def _pymc_model(X: np.ndarray, y: np.ndarray, prior_scale: float, intercept: bool, ties: bool = False):
    """The model in PyMC. ``X`` is the sampler's design (``_design``: the position column first when
    ``intercept``, a zero column last when ``ties``); ``y`` is 1/0 (binary) or 0 A / 1 B / 2 tie (ties).

    Davidson's tie model is a softmax over (z/2, -z/2, log nu) with z the usual logit:
    P(A) = e^{z/2} / (e^{z/2} + e^{-z/2} + nu); with nu -> 0 it is the logistic model."""
    import pymc as pm

    Xf = X[:, :-1] if ties else X
    with pm.Model() as model:
        Xd = pm.Data("X", Xf[:, 1:] if intercept else Xf)
        yd = pm.Data("y", y)
        b = pm.Data("b", float(prior_scale))
        w = pm.Laplace("w", mu=0.0, b=b, shape=Xd.shape[1])
        eta = Xd @ w
        if intercept:
            pos = pm.Data("pos", Xf[:, 0])
            eta = eta + pos * pm.Normal("intercept", 0.0, INTERCEPT_SCALE)
        if ties:
            import pytensor.tensor as pt

            theta = pm.Normal("theta", 0.0, TIE_SCALE)
            logits = pt.stack([0.5 * eta, -0.5 * eta, pt.ones_like(eta) * theta], axis=1)
            pm.Categorical("obs", logit_p=logits, observed=yd)
        else:
            pm.Bernoulli("obs", logit_p=eta, observed=yd)
    return model


def _nutpie_compiled(X: np.ndarray, y: np.ndarray, prior_scale: float, intercept: bool, ties: bool = False):
    """A compiled nutpie model for this shape of problem, reused with new data.

    Compiling takes ~10 s (numba); ``with_data`` swaps X, y and b without recompiling.
    """
    import nutpie

    key = (X.shape[1], intercept, ties)
    with _compile_lock:
        if key not in _compiled:
            _compiled[key] = nutpie.compile_pymc_model(_pymc_model(X, y, prior_scale, intercept, ties))
    Xf = X[:, :-1] if ties else X
    data = dict(X=Xf[:, 1:] if intercept else Xf, y=y, b=float(prior_scale))
    if intercept:
        data["pos"] = Xf[:, 0]
    return _compiled[key].with_data(**data)


def fit_exact(
    X: Any,
    y: Any,
    *,
    prior_scale: float = DEFAULT_PRIOR_SCALE,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    intercept: bool = False,
    position: Any = None,
    ties: str = "drop",
    backend: str = "auto",
    cores: int | None = None,
) -> Posterior:
    """Reference posterior by NUTS: ``Posterior.draws`` is (chains * draws, d).

    ``backend``: ``"nutpie"`` (about 3x faster than PyMC's NUTS here), ``"pymc"``, or
    ``"auto"`` (nutpie, falling back to PyMC if nutpie fails). Rows without a label (NaN) are
    dropped: one judge, one design. ``intercept`` adds the position term (its column
    ``position``, default +1: A shown first); ``ties="davidson"`` keeps ties (label 0.5) as an
    outcome and appends the tie parameter log nu as the last coordinate of the draws.
    """
    tie_model = ties == "davidson"
    Xd = _design(X, intercept, position, tie_model)
    yv = _labels(y, Xd.shape[0], ties)
    if yv.shape[1] != 1:
        raise ValueError("fit_exact fits one judge: y must be a single column")
    keep = ~np.isnan(yv[:, 0])
    Xd, yv = Xd[keep], yv[keep, 0]
    yv = np.where(yv == 0.5, 2, np.where(yv == 1, 0, 1)).astype(np.int64) if tie_model else yv.astype(np.int64)
    cores = cores or min(chains, os.cpu_count() or 1)
    settings = dict(prior_scale=prior_scale, draws=draws, tune=tune, chains=chains, seed=seed, intercept=intercept,
                    ties=ties)
    t0 = time.perf_counter()
    trace, sampler, errors = None, None, []
    if backend in ("auto", "nutpie"):
        try:
            import nutpie

            compiled = _nutpie_compiled(Xd, yv, prior_scale, intercept, tie_model)
            trace = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                                  progress_bar=False)
            sampler = "nutpie-nuts"
        except Exception as exc:  # pragma: no cover - depends on the platform's numba
            if backend == "nutpie":
                raise
            errors.append(f"nutpie: {exc!r}")
    if trace is None:
        import pymc as pm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with _pymc_model(Xd, yv, prior_scale, intercept, tie_model):
                # cores=1: PyMC's multiprocessing does not mix with threads or Streamlit workers
                trace = pm.sample(draws=draws, tune=tune, chains=chains, cores=1, random_seed=seed,
                                  progressbar=False, compute_convergence_checks=False)
        sampler = "pymc-nuts"
    post = trace.posterior
    w = np.asarray(post["w"].values, dtype=float)  # (chains, draws, d)
    if intercept:
        w = np.concatenate([np.asarray(post["intercept"].values, dtype=float)[..., None], w], axis=-1)
    if tie_model:
        w = np.concatenate([w, np.asarray(post["theta"].values, dtype=float)[..., None]], axis=-1)
    stats_ = trace.sample_stats
    diagnostics = {
        "divergences": int(np.asarray(stats_["diverging"]).sum()),
        "seconds": time.perf_counter() - t0,
    }
    for name, key in (("mean_tree_size", "n_steps"), ("mean_tree_size", "tree_size"), ("step_size", "step_size")):
        if key in stats_ and name not in diagnostics:
            diagnostics[name] = float(np.asarray(stats_[key]).mean())
    if errors:
        diagnostics["fallback"] = errors
    return Posterior(draws=w.reshape(-1, w.shape[-1]), chains=chains, sampler=sampler, settings=settings,
                     diagnostics=diagnostics)


# --------------------------------------------------------------------------- fast: batched HMC

_FAST_DOC = """
Why this sampler and not another:

- The posterior is log-concave (logistic likelihood, Laplace prior) and nearly uncorrelated
  once scaled (posterior correlations mostly |r| < 0.25 on realistic features), but the prior's kink
  at 0 matters: with b = 0.1 most weights sit within a couple of posterior sds of 0, and plain
  leapfrog across the kink (a jump of 2/b in the gradient) forces tiny steps: NUTS takes ~30
  leapfrog steps per draw here, plain HMC needed ~11.
- So every leapfrog step splits the Hamiltonian: half a kick from the smooth log likelihood,
  then the *exact* flow of kinetic energy plus Laplace prior (per coordinate a particle in a
  V-shaped potential: parabolas joined at 0, closed form, see ``_laplace_drift``), then the
  other half kick. Each piece is an exact Hamiltonian flow, so the step is reversible and
  volume preserving and the Metropolis test keeps the chain exact; the energy error comes
  from the smooth likelihood alone. With a diagonal metric (the posterior variances) that
  gives step sizes ~0.7 and ~2 gradients per iteration, with 4000 draws giving a bulk ESS
  of ~1000-2000 per weight.
- All judges of a scope share X, so one (chains*judges, 29) x (29, n) product is a leapfrog
  step for every chain of every judge; the same trick stacks cross-validation folds (held-out
  rows are masked labels) and scopes (zero rows of X add nothing to the likelihood, so padding
  costs only arithmetic).
- A Polya-Gamma + Bayesian-lasso Gibbs sampler is also exact and tuning-free, but every sweep
  needs an (n, 29, 29) weighted Gram matrix per chain (29 times the work of a gradient),
  Polya-Gamma draws have no vectorised numpy sampler, and the scale-mixture updates mix slowly
  for weights near 0, which is most of them under a Laplace(0, 0.1) prior.
- MAP or Laplace approximations are biased here (the Laplace-prior mode is lasso-like, pulled
  to exactly 0), so they cannot meet the faithfulness bar.

Adaptation (step size per chain, metric per judge pooled over its chains): start from the
marginal variances of the curvature at w = 0 (X'X/4 plus the prior's variance 2b^2), adapt
the step size by dual averaging to an acceptance rate of 0.8, and replace the metric twice by
the warm-up draws' variances. Each iteration draws one integration time for the batch
(0.6-1.6 posterior sds: longer makes draws antithetic, which helps means but hurts variance
estimates) and jitters every chain's step size by +-10% so that no chain locks into a period.
"""


@dataclass
class _Batch:
    """Problems padded to one (G, n, d) design, J judges each."""

    X: np.ndarray  # (G, n, d), zero rows where a problem has fewer samples
    Y: np.ndarray  # (G, J, n), 0 where missing
    M: np.ndarray | None  # (G, J, n) 1 where labelled, None when every row is labelled


def _expit(Z: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.negative(Z, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _laplace_drift(x: np.ndarray, v: np.ndarray, alpha: np.ndarray, tau: np.ndarray,
                   has_prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact flow for time ``tau`` of a unit particle in the V-shaped potential of the Laplace prior.

    Per coordinate, with velocity v and acceleration -alpha*sign(x) (alpha = prior rate times
    the metric's variance): a parabola until x reaches 0, then excursions of length 2c/alpha
    alternating sides, where c is the speed at 0. Closed form for any number of crossings.
    Most coordinates do not reach 0 within one step, so the crossing branch is evaluated only
    for those that do. ``has_prior`` (bool per coordinate, None = all) exempts the intercept,
    which moves in a straight line (its alpha is 0). ``tau`` broadcasts against x (a trailing
    axis of 1 is one step per chain); ``alpha`` has x's shape or broadcasts to it.
    """
    pull = np.copysign(alpha * tau, x)  # alpha * tau * sign(x)
    v_new = v - pull
    x_new = v + v_new
    x_new *= 0.5 * tau
    x_new += x  # x + tau * (v - pull / 2): the parabola, were there no kink
    cross = x_new * x <= 0  # it would end beyond 0 (or starts on it): it reaches the kink
    if has_prior is not None:
        cross &= has_prior
    if cross.any():
        i = np.flatnonzero(cross)
        d = x.shape[-1]
        xi = x.ravel()[i]
        si = np.where(xi >= 0, 1.0, -1.0)
        al = alpha.ravel()[i] if alpha.shape == x.shape else np.broadcast_to(alpha, x.shape).ravel()[i]
        if tau.ndim == x.ndim and tau.shape[-1] == 1:  # one step per chain
            ta = tau.ravel()[i // d]
        else:
            ta = np.broadcast_to(tau, x.shape).ravel()[i]
        y = si * xi  # distance from the kink, >= 0
        u = si * v.ravel()[i]  # speed away from it
        c = np.sqrt(u * u + 2.0 * al * y)  # speed at 0
        r = ta - (u + c) / al  # time left after the first crossing
        half = 2.0 * c / al  # one excursion from 0 and back
        k = np.floor(r / np.where(half > 0, half, np.inf))
        r = r - k * half
        side = -si * np.where(np.fmod(k, 2.0) == 0, 1.0, -1.0)
        x_new.ravel()[i] = side * (c * r - 0.5 * al * r * r)
        v_new.ravel()[i] = side * (c - al * r)
    return x_new, v_new


def _hmc(
    batch: _Batch,
    *,
    lap: np.ndarray,
    gprec: np.ndarray,
    chains: int,
    draws: int,
    tune: int,
    rng: np.random.Generator,
    init_var: np.ndarray | None = None,
    adapt_metric: bool = True,
    target_accept: float = 0.8,
    max_steps: int = 64,
    ties: bool = False,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Batched split HMC over G problems x J judges x C chains. Returns draws (G, J, C, draws, d).

    Every leapfrog step is kick (likelihood) / exact drift under the Laplace prior / kick,
    so the integrator error comes from the smooth likelihood alone.

    ``ties``: Davidson's model. Labels 1 / 0 / 0.5 (tie), the last coordinate is the tie parameter
    theta = log nu (its column of X is zero), and with a = z/2 and D = e^a + e^-a + nu the log
    likelihood is s*a + [tie]*theta - log D (s = +1 A, -1 B, 0 tie), whose gradient is
    (s - (P(A) - P(B))) / 2 per unit of z and [tie] - P(tie) for theta. It needs the mask ``M``
    (padded rows would otherwise count as observations of z = 0).
    """
    X, Y, M = batch.X, batch.Y, batch.M
    G, n, d = X.shape
    J, C = Y.shape[1], chains
    if ties:
        if M is None:
            raise ValueError("the tie model needs the batch's mask")
        S = np.where(Y == 0.5, 0.0, 2.0 * Y - 1.0) * M
        XtY = 0.5 * (S @ X)[:, :, None, :]  # (G, J, 1, d): 0.5 * sum_i s_i x_i
        n_tie = ((Y == 0.5) * M).sum(-1)[:, :, None]  # (G, J, 1)
        n_lab = M.sum(-1)  # (G, J)
    else:
        XtY = (Y @ X)[:, :, None, :]  # (G, J, 1, d): the only place the labels enter, in float64
    # The (chains x samples) work runs in float32, which halves the cost of the matrix
    # products and of exp/log. The chain then targets the posterior computed in float32:
    # a deterministic perturbation of the log density of ~1e-5, far below Monte-Carlo error.
    X32 = X.astype(np.float32)
    if ties:  # the tie model works with a = z / 2: halving X once halves z and the gradient's X'(...)
        X32 *= 0.5
    XT32 = np.ascontiguousarray(X32.transpose(0, 2, 1))  # (G, d, n)
    Mrep = None if M is None else np.repeat(M, C, axis=1).astype(np.float32)  # (G, J*C, n)
    # Under the tie model a padded row (X = 0) has a = 0, so P(A) - P(B) = 0 there without a mask;
    # the mask is needed in the gradient only where a real row lacks a judge's label.
    qmask = ties and bool(((M == 0) & (X != 0).any(-1)[:, None, :]).any())
    Zbuf = np.empty((G, J * C, n), dtype=np.float32)
    Pbuf = np.empty_like(Zbuf)
    Lbuf = np.empty_like(Zbuf)
    W32 = np.empty((G, J * C, d), dtype=np.float32)
    Dbuf = np.empty_like(Zbuf) if ties else None
    n_grad = 0
    gauss = bool(gprec.any())  # only the position term and the tie parameter have a Gaussian prior
    has_prior = (lap > 0) if gauss else None

    @np.errstate(over="ignore", divide="ignore", invalid="ignore")
    def smooth(W: np.ndarray, want_lp: bool):
        """Log likelihood (+ the intercept's Gaussian prior) and its gradient.

        A wild warm-up proposal can push float32 exp past its range: the log density becomes
        -inf or NaN there and the Metropolis test rejects the move, so the warnings are muted."""
        nonlocal n_grad
        n_grad += 1
        W32[...] = W.reshape(G, J * C, d)
        np.matmul(W32, XT32, out=Zbuf)
        if ties:
            return smooth_ties(W, want_lp)
        P = _expit(Zbuf, Pbuf)
        lp = None
        if want_lp:
            # log(1 + e^z) = z - log(sigmoid(z)), reusing the sigmoid (numpy's logaddexp and
            # log1p are ~10x slower than exp and log here); the absolute error is ~1e-7 * |z|.
            np.log(P, out=Lbuf)
            np.subtract(Zbuf, Lbuf, out=Lbuf)
            if Mrep is not None:
                np.multiply(Lbuf, Mrep, out=Lbuf)
            lp = (W * XtY).sum(-1) - Lbuf.sum(axis=-1, dtype=np.float64).reshape(G, J, C)
            if gauss:
                lp -= 0.5 * (gprec * W * W).sum(-1)
        if Mrep is not None:
            P *= Mrep
        grad = XtY - (P @ X32).reshape(G, J, C, d)
        if gauss:
            grad -= gprec * W
        return lp, grad

    @np.errstate(over="ignore", divide="ignore", invalid="ignore")
    def smooth_ties(W: np.ndarray, want_lp: bool):
        """Davidson's log likelihood and its gradient, from a = z / 2 in Zbuf (X32 is halved)."""
        E = np.exp(Zbuf, out=Pbuf)
        Einv = np.reciprocal(E, out=Lbuf)
        theta = W[..., -1]  # (G, J, C)
        nu = np.exp(theta).astype(np.float32).reshape(G, J * C, 1)
        D = np.add(E, Einv, out=Dbuf)
        D += nu
        lp = None
        if want_lp:
            logD = np.log(D, out=Zbuf)  # a is not needed any more
            masked = np.einsum("gkn,gkn->gk", logD, Mrep, dtype=np.float64)
            lp = (W * XtY).sum(-1) + theta * n_tie - masked.reshape(G, J, C)
            lp -= 0.5 * (gprec * W * W).sum(-1)
        R = np.reciprocal(D, out=D)  # P(tie) / nu
        Q = np.subtract(E, Einv, out=Pbuf)  # P(A) - P(B) = (e^a - e^-a) / D
        Q *= R
        if qmask:
            Q *= Mrep
        grad = XtY - (Q @ X32).reshape(G, J, C, d)  # X32 holds X / 2
        # a gradient term: float32 accumulation (4x faster here than float64's) changes no density, only
        # the integrator's path, which the Metropolis test corrects; the log density above sums in float64
        p_tie = np.einsum("gkn,gkn->gk", R, Mrep).astype(np.float64).reshape(G, J, C) * np.exp(theta)
        grad[..., -1] += n_tie - p_tie
        grad -= gprec * W
        return lp, grad

    def prior_lap(W: np.ndarray) -> np.ndarray:
        return (lap * np.abs(W)).sum(-1)

    # Initial metric: marginal variances from the curvature at w = 0, where every p(1-p) is
    # 1/4; the prior adds the precision of a normal with the Laplace's variance 2b^2.
    if init_var is None:
        if M is None:
            prec = np.broadcast_to((XT32 @ X32).astype(float)[:, None] * ((1.0 if ties else 0.25)), (G, J, d, d)).copy()
        else:
            prec = (X.transpose(0, 2, 1)[:, None] * (M[:, :, None, :] / 4.0)) @ X[:, None]
        prec += np.diag(np.where(lap > 0, 0.5 * lap**2, gprec))
        if ties:  # the tie parameter's curvature at nu = 1, z = 0: P(tie)(1 - P(tie)) = 2/9 per label
            prec[..., -1, -1] += n_lab * 2.0 / 9.0
        var = np.einsum("gjii->gji", np.linalg.inv(prec))[:, :, None, :]
    else:
        var = np.broadcast_to(np.asarray(init_var, dtype=float).reshape(G, J, 1, d), (G, J, 1, d)).copy()
    sig = np.sqrt(var)
    alpha = np.broadcast_to(lap * var, (G, J, C, d)).copy()  # the prior's pull in the metric's units

    # Chains start dispersed around 0 on the scale of the initial metric.
    W = rng.standard_normal((G, J, C, d)) * sig * 0.5
    lp_s, grad = smooth(W, True)
    lp = lp_s - prior_lap(W)

    shape = (G, J, C, 1)
    eps = np.full(shape, 0.5)

    # Dual averaging (Hoffman & Gelman 2014, as in Stan).
    def da_reset(eps0):
        return {"mu": np.log(10 * eps0), "hbar": np.zeros(shape), "xbar": np.zeros(shape), "t": 0}

    da = da_reset(eps)
    gamma, t0, kappa = 0.05, 10.0, 0.75
    w1 = int(round(0.15 * tune))
    windows = sorted({int(round(0.40 * tune)), int(round(0.85 * tune))} - {0, w1}) if tune >= 20 else []
    if not adapt_metric:
        windows = []
    win_start = w1
    win_sum = np.zeros((G, J, 1, d))
    win_sq = np.zeros((G, J, 1, d))
    win_k = 0

    out = np.empty((G, J, C, draws, d))
    accept_sum = np.zeros(shape[:-1])
    divergent = np.zeros(shape[:-1], dtype=np.int64)
    steps_total = 0
    for it in range(tune + draws):
        warm = it < tune
        # One integration time for the whole batch, in units of posterior sds; each chain's
        # step is jittered so that no chain locks into a periodic orbit.
        T = rng.uniform(_T_RANGE[0], _T_RANGE[1])
        step = eps * rng.uniform(0.9, 1.1, size=shape)
        if warm or it == tune:
            eps_typical = float(np.median(eps))
        L = int(min(max_steps, max(1, math.ceil(T / eps_typical))))
        steps_total += L
        z = rng.standard_normal((G, J, C, d))
        v = z * sig  # velocity = metric variance x momentum
        w = W
        g = grad
        hs = 0.5 * step * var
        for s_ in range(L):
            v += hs * g
            w, v = _laplace_drift(w, v, alpha, step, has_prior)
            lp_s_new, g = smooth(w, s_ == L - 1)
            v += hs * g
        lp_new = lp_s_new - prior_lap(w)
        log_ratio = (lp_new - 0.5 * (v * v / var).sum(-1)) - (lp - 0.5 * (z * z).sum(-1))
        log_ratio = np.where(np.isfinite(log_ratio), log_ratio, -np.inf)
        acc = np.exp(np.minimum(log_ratio, 0.0))
        take = np.log(rng.random(log_ratio.shape)) < log_ratio
        W = np.where(take[..., None], w, W)
        grad = np.where(take[..., None], g, grad)
        lp = np.where(take, lp_new, lp)
        if warm:
            da["t"] += 1
            tt = da["t"]
            da["hbar"] = (1 - 1 / (tt + t0)) * da["hbar"] + (target_accept - acc[..., None]) / (tt + t0)
            log_eps = da["mu"] - math.sqrt(tt) / gamma * da["hbar"]
            eta = tt ** (-kappa)
            da["xbar"] = eta * log_eps + (1 - eta) * da["xbar"]
            eps = np.exp(log_eps)
            if windows and it >= win_start:
                win_sum += W.sum(axis=2, keepdims=True)
                win_sq += (W * W).sum(axis=2, keepdims=True)
                win_k += C
            if windows and it + 1 == windows[0]:
                # New metric: the judge's warm-up variances pooled over its chains, shrunk a
                # little toward the previous metric (Stan's regularisation, in relative terms).
                mean = win_sum / win_k
                est = np.maximum(win_sq / win_k - mean * mean, 0.0) * win_k / max(win_k - 1, 1)
                var = (win_k * est + 5.0 * var) / (win_k + 5.0)
                var = np.maximum(var, 1e-12)
                sig = np.sqrt(var)
                alpha = np.broadcast_to(lap * var, (G, J, C, d)).copy()
                win_sum[:] = 0.0
                win_sq[:] = 0.0
                win_k, win_start = 0, it + 1
                windows.pop(0)
                da = da_reset(eps)
            if it + 1 == tune:
                eps = np.exp(da["xbar"])
        else:
            out[:, :, :, it - tune] = W
            accept_sum += acc
            divergent += (~np.isfinite(lp_new)) | (-log_ratio > 1000)
    diagnostics = {
        "accept_rate": (accept_sum / max(draws, 1)).mean(axis=2),  # (G, J)
        "step_size": eps[..., 0].mean(axis=2),  # (G, J)
        "divergences": divergent.sum(axis=2),  # (G, J)
        "metric_var": var[:, :, 0, :],  # (G, J, d)
        "mean_steps": steps_total / max(tune + draws, 1),
        "gradients": n_grad,
    }
    return out, diagnostics


#: range of the integration time per iteration, in posterior sds (measured: best ESS of the
#: variance per gradient; 1.5-3 doubles the means' ESS but halves the variances')
_T_RANGE = (0.6, 1.6)


def _pad(problems: Sequence[tuple[np.ndarray, np.ndarray]], mask: bool = False) -> _Batch:
    n = max(X.shape[0] for X, _ in problems)
    d = problems[0][0].shape[1]
    J = problems[0][1].shape[1]
    G = len(problems)
    Xb = np.zeros((G, n, d))
    Yb = np.zeros((G, J, n))
    Mb = np.zeros((G, J, n))
    for g, (X, Y) in enumerate(problems):
        m = X.shape[0]
        Xb[g, :m] = X
        lab = ~np.isnan(Y)
        Yb[g, :, :m] = np.where(lab, Y, 0.0).T
        Mb[g, :, :m] = lab.T
    # The mask is only needed when a judge lacks some labels of its problem's real rows: padded
    # rows of X are zero and contribute nothing either way.
    complete = not mask and all(not np.isnan(Y).any() for _, Y in problems)
    return _Batch(X=Xb, Y=Yb, M=None if complete else Mb)


#: Largest batch (problems x judges x chains x padded samples) sampled as one array. Bigger
#: batches amortise Python's per-step overhead, but past the CPU cache the matrix products
#: slow down more than that saves (measured on the 2-core CI machine: ~1e5 is the knee).
BATCH_ELEMENTS = 120_000
#: Python's cost per leapfrog step of one batch, in padded elements (measured: one judge's 16
#: scopes run fastest as 2 batches, [1418, 820, 820] and the 13 scopes of 121-459 samples,
#: ~1.7 s of CPU against ~2.5 s as 1 batch (too much padding) or 3-7 (too many calls)).
_CALL_OVERHEAD = 3_000
#: Below this many elements per batch a step is mostly Python (holding the GIL): threads only
#: contend, so small workloads run on one thread whatever ``workers`` says.
_THREAD_MIN_ELEMENTS = 30_000


def _buckets(sizes: Sequence[int], width: int, budget: int | None = None) -> list[list[int]]:
    """Group problem indices (n samples each, ``width`` = judges x chains) into padded batches.

    Largest first; a problem joins the current batch while the batch stays within the
    element budget and padding it to the batch's largest n costs less than a batch of its own.
    """
    budget = BATCH_ELEMENTS if budget is None else budget
    order = sorted(range(len(sizes)), key=lambda i: sizes[i], reverse=True)
    out: list[list[int]] = []
    for i in order:
        if out:
            cur = out[-1]
            top = sizes[cur[0]]
            if (len(cur) + 1) * top * width <= budget and width * (top - sizes[i]) <= _CALL_OVERHEAD:
                cur.append(i)
                continue
        out.append([i])
    return out


def _sample_many(
    prepped: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    lap: np.ndarray,
    gprec: np.ndarray,
    draws: int,
    tune: int,
    chains: int,
    seed: int | Sequence[int],
    settings: dict[str, Any],
    init_var: Sequence[np.ndarray] | None = None,
    adapt_metric: bool = True,
    workers: int | None = None,
    consume: Callable[[int, Posterior], Any] | None = None,
    ties: bool = False,
) -> list[Any]:
    """Sample prepared problems (design, labels) in padded batches; see :func:`fit_fast_many`."""
    if not prepped:
        return []
    workers = (os.cpu_count() or 1) if workers is None else workers
    d = prepped[0][0].shape[1]
    if any(X.shape[1] != d for X, _ in prepped) or len({Y.shape[1] for _, Y in prepped}) != 1:
        raise ValueError("all problems need the same features and the same number of judges")
    buckets = _buckets([X.shape[0] for X, _ in prepped], prepped[0][1].shape[1] * chains)
    seeds = np.random.SeedSequence(seed).spawn(len(buckets))
    results: list[Any] = [None] * len(prepped)

    def run(b: int) -> None:
        idx = buckets[b]
        t0 = time.perf_counter()
        var0 = None if init_var is None else np.stack([np.asarray(init_var[i], dtype=float) for i in idx])
        out, diag = _hmc(_pad([prepped[i] for i in idx], mask=ties), lap=lap, gprec=gprec, chains=chains,
                         draws=draws, tune=tune, rng=np.random.default_rng(seeds[b]), init_var=var0,
                         adapt_metric=adapt_metric or var0 is None, ties=ties)
        secs = time.perf_counter() - t0
        J = out.shape[1]
        for g, i in enumerate(idx):
            post = Posterior(
                draws=out[g].reshape(J, chains * draws, d),
                chains=chains,
                sampler=FAST_SAMPLER,
                settings=settings,
                diagnostics={
                    "accept_rate": diag["accept_rate"][g].tolist(),
                    "step_size": diag["step_size"][g].tolist(),
                    "divergences": diag["divergences"][g].tolist(),
                    "metric_var": diag["metric_var"][g],
                    "mean_steps": diag["mean_steps"],
                    "gradients": diag["gradients"],
                    "batch_problems": len(idx),
                    "seconds": secs,
                },
            )
            results[i] = consume(i, post) if consume is not None else post

    width = prepped[0][1].shape[1] * chains
    largest = max(len(b) * prepped[b[0]][0].shape[0] * width for b in buckets)
    if workers > 1 and len(buckets) > 1 and largest >= _THREAD_MIN_ELEMENTS:
        try:  # threadpoolctl comes with PyMC; without it BLAS threads just compete a little
            from threadpoolctl import threadpool_limits

            one_blas_thread = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover
            one_blas_thread = contextlib.nullcontext()
        # one BLAS thread per worker: the workers are the parallelism
        with one_blas_thread, ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, range(len(buckets))))
    else:
        for b in range(len(buckets)):
            run(b)
    return results


def fit_fast_many(
    problems: Sequence[tuple[Any, Any]],
    *,
    prior_scale: float = DEFAULT_PRIOR_SCALE,
    draws: int = 1000,
    tune: int = 500,
    chains: int = 4,
    seed: int | Sequence[int] = 0,
    intercept: bool = False,
    ties: str = "drop",
    workers: int | None = None,
) -> list[Posterior]:
    """:func:`fit_fast` for several problems (X_g, Y_g) at once, each with the same number of judges.

    A problem may be (X_g, Y_g, position_g): the position column for ``intercept`` (+1 A shown
    first, -1 B first; default +1). ``ties="davidson"`` appends the tie parameter (log nu) as the
    last coordinate of the draws.

    Problems of similar size are padded into one batch and sampled together (zero rows of X
    change nothing), so one judge's 16 groups cost about as much as its largest group. With
    ``workers`` > 1 (default: one per core), batches run on threads (numpy releases the GIL
    in its kernels).
    Results are reproducible for the same call; the random streams are per batch, so the
    same problem sampled in a different company gets different (equally valid) draws.
    """
    prepped = []
    tie_model = ties == "davidson"
    for problem in problems:
        X, Y, position = (*problem, None)[:3]
        Xd = _design(X, intercept, position, tie_model)
        prepped.append((Xd, _labels(Y, Xd.shape[0], ties)))
    d = prepped[0][0].shape[1] if prepped else 0
    lap, gprec = _prior_vectors(d, prior_scale, intercept, tie_model)
    settings = dict(prior_scale=prior_scale, draws=draws, tune=tune, chains=chains, seed=seed, intercept=intercept,
                    ties=ties)
    return _sample_many(prepped, lap=lap, gprec=gprec, draws=draws, tune=tune, chains=chains, seed=seed,
                        settings=settings, workers=workers, ties=tie_model)


def fit_fast(
    X: Any,
    Y: Any,
    *,
    prior_scale: float = DEFAULT_PRIOR_SCALE,
    draws: int = 1000,
    tune: int = 500,
    chains: int = 4,
    seed: int = 0,
    intercept: bool = False,
    position: Any = None,
    ties: str = "drop",
) -> Posterior:
    """Posterior for J judges sharing one feature matrix: ``Posterior.draws`` is (J, S, d).

    Y is (n, J) (or (n,) for one judge): 1 = A preferred, 0 = B preferred, 0.5 = tie (an outcome
    with ``ties="davidson"``, else dropped), NaN = no label. ``intercept`` adds the position term
    first (column ``position``: +1 A shown first, -1 B first; default +1).
    ``Posterior.diagnostics`` holds per-judge acceptance rates, step sizes, divergences and
    the adapted metric. The sampler is batched split HMC, for these reasons:
    """
    return fit_fast_many([(X, Y, position)], prior_scale=prior_scale, draws=draws, tune=tune, chains=chains,
                         seed=seed, intercept=intercept, ties=ties)[0]


if fit_fast.__doc__:  # None under python -OO
    fit_fast.__doc__ = inspect.cleandoc(fit_fast.__doc__) + "\n" + _FAST_DOC


# --------------------------------------------------------------------------- diagnostics


def _average_ranks(a: np.ndarray, return_sorted: bool = False):
    """Ranks 1..N along the last axis, ties sharing their average rank (scipy's "average").

    Ties are common in MCMC output (a rejected proposal repeats the draw). Written out because
    ``scipy.stats.rankdata`` with an axis is several times slower on (1000 series x 4000).
    """
    shape = a.shape
    N = shape[-1]
    a = np.ascontiguousarray(a).reshape(-1, N)
    order = np.argsort(a, axis=-1)
    srt = np.take_along_axis(a, order, axis=-1)
    first = np.empty(a.shape, dtype=bool)  # first of its run of equal values
    first[:, 0] = True
    np.not_equal(srt[:, 1:], srt[:, :-1], out=first[:, 1:])
    starts = np.flatnonzero(first)
    sizes = np.diff(np.append(starts, a.size))
    ranks_sorted = np.repeat(starts % N + (sizes - 1) / 2.0 + 1.0, sizes).reshape(a.shape)
    ranks = np.empty(a.shape)
    np.put_along_axis(ranks, order, ranks_sorted, axis=-1)
    if return_sorted:
        return ranks.reshape(shape), srt.reshape(shape)
    return ranks.reshape(shape)


def _z_scale(a: np.ndarray, return_sorted: bool = False):
    """Rank-normalise each series (last two axes: chains x draws) as ArviZ does (Blom, c=3/8).

    Average ranks are whole or half numbers, so the normal quantiles come from a table of 2N
    values instead of N evaluations of the inverse normal per series.
    """
    k = a.shape[:-2]
    flat = a.reshape(*k, -1)
    N = flat.shape[-1]
    ranks, srt = _average_ranks(flat, return_sorted=True)
    table = special.ndtri((np.arange(2 * N - 1) / 2.0 + 1.0 - 0.375) / (N + 0.25))
    z = table[(2.0 * ranks - 2.0).astype(np.intp)].reshape(a.shape)
    return (z, srt) if return_sorted else z


def _split(a: np.ndarray) -> np.ndarray:
    half = a.shape[-1] // 2
    return np.concatenate([a[..., :half], a[..., a.shape[-1] - half:]], axis=-2)


def _rhat_basic(a: np.ndarray) -> np.ndarray:
    n = a.shape[-1]
    chain_mean = a.mean(axis=-1)
    within = a.var(axis=-1, ddof=1).mean(axis=-1)
    between = n * chain_mean.var(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _ess_basic(a: np.ndarray) -> np.ndarray:
    """ArviZ's ``_ess`` (Geyer's initial monotone sequence), vectorised over leading axes."""
    m, n = a.shape[-2:]
    N = m * n
    centred = a - a.mean(axis=-1, keepdims=True)
    size = 1 << int(2 * n - 1).bit_length()
    f = np.fft.rfft(centred, n=size, axis=-1)
    acov = np.fft.irfft(f * np.conjugate(f), n=size, axis=-1)[..., :n] / n
    mean_var = acov[..., 0].mean(axis=-1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + a.mean(axis=-1).var(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[..., None] - acov.mean(axis=-2)) / var_plus[..., None]
    rho[..., 0] = 1.0
    n_pairs = n // 2
    pairs = rho[..., 0 : 2 * n_pairs : 2] + rho[..., 1 : 2 * n_pairs : 2]  # P_m = rho_2m + rho_2m+1
    m_cap = (n - 3) // 2  # the last pair ArviZ's loop may read
    idx = np.arange(n_pairs)
    nonpos = (pairs <= 0) & (idx >= 1)
    first = np.where(nonpos.any(axis=-1), np.argmax(nonpos, axis=-1), n_pairs)
    m_star = np.minimum(first, m_cap)
    m_star = np.where((pairs[..., 0] <= 0) | (m_cap < 1), 0, m_star)
    mono = np.minimum.accumulate(pairs, axis=-1)
    body = np.where(idx < m_star[..., None], mono, 0.0).sum(axis=-1)
    even = np.take_along_axis(rho, (2 * m_star)[..., None], axis=-1)[..., 0]
    p_star = np.take_along_axis(pairs, np.minimum(m_star, n_pairs - 1)[..., None], axis=-1)[..., 0]
    extra = np.where((even > 0) | (p_star >= 0) | (m_star == 0), even, 0.0)
    tau = np.maximum(-1.0 + 2.0 * body + extra, 1.0 / np.log10(N))
    ess = N / tau
    ess = np.where(np.isnan(rho).any(axis=-1), np.nan, ess)
    flat = a.reshape(*a.shape[:-2], -1)
    constant = (flat.max(axis=-1) - flat.min(axis=-1)) < np.finfo(float).resolution
    return np.where(constant, float(N), ess)


def rhat_ess(by_chain: np.ndarray, *, engine: str = "numpy") -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat and bulk ESS (Vehtari et al. 2021) per weight.

    ``by_chain`` is (..., chains, draws, d); both results are (..., d). ``engine="arviz"``
    asks ArviZ for every weight (``az.rhat(method="rank")``, ``az.ess(method="bulk")``);
    ``"numpy"`` computes the same numbers in one vectorised pass (a test pins the match to
    1e-8). ArviZ 0.23 loops in Python over every scalar (~2 ms each), which alone would take
    ~35 s of a paper-scale dissection (528 x 29 weights), so the fast path uses numpy and the
    exact path, where NUTS takes seconds per judge anyway, uses ArviZ. Leading entries are
    processed in chunks to bound the temporaries (ranks, FFTs) at ~0.1 GB.
    """
    arr = np.asarray(by_chain, dtype=float)
    lead = arr.shape[:-3]
    chains, draws, d = arr.shape[-3:]
    flat = arr.reshape(-1, chains, draws, d)
    if engine == "arviz":
        import arviz as az

        rhat = np.empty((flat.shape[0], d))
        ess = np.empty((flat.shape[0], d))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(flat.shape[0]):
                for k in range(d):
                    rhat[i, k] = az.rhat(flat[i, :, :, k], method="rank")
                    ess[i, k] = az.ess(flat[i, :, :, k], method="bulk")
        return rhat.reshape(*lead, d), ess.reshape(*lead, d)
    if engine != "numpy":
        raise ValueError(f"engine must be 'numpy' or 'arviz', not {engine!r}")
    rhat = np.full((flat.shape[0], d), np.nan)
    ess = np.full((flat.shape[0], d), np.nan)
    step = max(1, (1 << 21) // max(chains * draws * d, 1))
    for i in range(0, flat.shape[0], step):
        rhat[i:i + step], ess[i:i + step] = _rhat_ess_chunk(flat[i:i + step])
    return rhat.reshape(*lead, d), ess.reshape(*lead, d)


def _rhat_ess_chunk(by_chain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.ascontiguousarray(np.moveaxis(by_chain, -1, -3))  # (k, d, chains, draws)
    chains, draws = a.shape[-2:]
    nan = np.full(a.shape[:-2], np.nan)
    if draws < 4:
        return nan, nan.copy()
    split = _split(a)
    z, srt = _z_scale(split, return_sorted=True)
    ess = _ess_basic(z)
    if chains < 2:
        return nan, ess
    bulk = _rhat_basic(z)
    N = srt.shape[-1]
    med = (0.5 * (srt[..., (N - 1) // 2] + srt[..., N // 2]))[..., None, None]
    tail = _rhat_basic(_z_scale(np.abs(split - med)))
    return np.maximum(bulk, tail), ess


# --------------------------------------------------------------------------- profiles


@dataclass
class Profile:
    """One judge's posterior summary in one scope (scenario group), with its provenance.

    ``lo``/``hi`` bound the equal-tailed interval named in ``interval`` ("eti94": the 3% and
    97% quantiles). Equal-tailed rather than HDI because it is invariant under monotone maps,
    so it maps exactly onto the displayed 100*sigmoid(w), and its end points are plain
    quantiles, stable with a thousand draws. ``n`` is the number of labelled samples the
    fit used; ``draws`` the number of posterior draws summarised; ``accuracy`` and
    ``log_loss`` are out of fold (k-fold, each fold predicted by the posterior-mean weights
    of a fit on the other folds; a prediction of exactly 0.5 counts as half right).
    """

    judge: str
    attributes: list[str]
    mean: list[float]
    sd: list[float]
    lo: list[float]
    hi: list[float]
    interval: str
    p_pos: list[float]
    n: int
    draws: int
    accuracy: float | None
    log_loss: float | None
    folds: int
    rhat: list[float]
    ess: list[float]
    method: str
    sampler: str
    prior_scale: float
    seed: int
    versions: dict[str, str]
    fingerprint: str
    settings: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    fitted_at: str = ""
    #: thinned posterior draws (draws, d), float32, for judge-minus-judge intervals
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: held-out accuracy and log loss of the obvious predictors on the same folds (see ``baselines``)
    baselines: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: per term of ``attributes``: labelled samples on which A and B differ (None for non-attributes)
    differing: list[int | None] = field(default_factory=list)
    #: "drop" (binary model, ties left out) or "davidson" (ties an outcome; the last term is TIE)
    tie_model: str = "drop"
    #: labelled observations that were ties, and all labelled observations (both orders count)
    ties: int = 0
    observations: int = 0

    @property
    def percent(self) -> list[float]:
        """The posterior-mean weights on the paper's display scale, 100 * sigmoid(w)."""
        return [float(v) for v in display_percent(np.asarray(self.mean))]

    def weights(self) -> dict[str, float]:
        return dict(zip(self.attributes, self.mean))


_VERSIONED = ("numpy", "scipy", "arviz", "pymc", "pytensor", "nutpie")


def library_versions() -> dict[str, str]:
    """Versions of the numerical stack (read from package metadata: no slow imports)."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def inputs_key(X: np.ndarray, y: np.ndarray, requested: Mapping[str, Any]) -> str:
    """What a fit of one judge in one scope rests on (stored as ``provenance["inputs"]``): the
    design, the judge's labels (1 A, 0 B, NaN tie or none) and the fit's requested settings. The
    dissection refits only when it changed; the simulator flags a profile stale when it did."""
    x_digest = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float64).tobytes()).hexdigest()
    return fingerprint(np.frombuffer(x_digest.encode(), dtype=np.uint8), y, requested)


def fingerprint(X: np.ndarray, y: np.ndarray, settings: Mapping[str, Any]) -> str:
    """sha256 over the design, one judge's labels and the settings that shape the posterior.

    Two profiles with the same fingerprint were fitted to the same data the same way; a
    changed label, feature, prior or sampler setting gives a new one, so stale results show.
    """
    h = hashlib.sha256()
    X = np.asarray(X)
    h.update(f"X{X.shape}".encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    y = np.asarray(y, dtype=np.float64)
    h.update(f"y{y.shape}".encode())
    h.update(np.where(np.isnan(y), -1.0, y).tobytes())
    h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    return h.hexdigest()


def _fold_index(n: int, folds: int, seed: int, sample: np.ndarray | None = None) -> list[np.ndarray]:
    """Rows of each fold. With ``sample`` (the sample index of each row) the folds split samples,
    so the two presentation orders of one sample are held out together."""
    if sample is None:
        perm = np.random.default_rng([seed, 2]).permutation(n)
        return [np.sort(f) for f in np.array_split(perm, min(folds, n))]
    uniq, inv = np.unique(sample, return_inverse=True)
    perm = np.random.default_rng([seed, 2]).permutation(len(uniq))
    out = []
    for part in np.array_split(perm, min(folds, len(uniq))):
        out.append(np.flatnonzero(np.isin(inv, part)))
    return out


def outcome_probabilities(z: np.ndarray, theta: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(A), P(B), P(tie)) for logits z: the logistic model, or Davidson's with log nu = ``theta``."""
    z = np.asarray(z, dtype=float)
    if theta is None:
        pa = special.expit(z)
        return pa, 1.0 - pa, np.zeros_like(pa)
    logits = np.stack([0.5 * z, -0.5 * z, np.broadcast_to(np.asarray(theta, dtype=float), z.shape)], axis=0)
    p = special.softmax(logits, axis=0)
    return p[0], p[1], p[2]


def _score(pa: np.ndarray, pb: np.ndarray, pt: np.ndarray, y: np.ndarray, ties: bool) -> tuple[np.ndarray, ...]:
    """Per (row, judge): a hit (1, 0, or 1/2 when A and B are predicted alike) on decisive labels,
    whether the row counts for accuracy, -log p(label), and whether it counts for log loss.

    Accuracy is over decisive labels (A or B): the side predicted more likely. The log loss is
    over every label the model describes (ties too, under Davidson's model)."""
    lab = ~np.isnan(y)
    yv = np.where(lab, y, 0.0)
    decisive = lab & (yv != 0.5)
    right = np.where(pa == pb, 0.5, ((pa > pb) == (yv > 0.5)).astype(float))
    with np.errstate(divide="ignore"):
        p_obs = np.where(yv == 1.0, pa, np.where(yv == 0.0, pb, pt))
        nll = -np.log(np.clip(p_obs, 1e-12, 1.0))
    counted = lab if ties else decisive
    return np.where(decisive, right, 0.0), decisive, np.where(counted, nll, 0.0), counted


def _out_of_fold(Xd: np.ndarray, Y: np.ndarray, folds: list[np.ndarray], means: list[np.ndarray],
                 ties: bool = False):
    """Accuracy and log loss per judge from fold-wise posterior means (J, d) per fold."""
    J = Y.shape[1]
    hits = np.zeros(J)
    loss = np.zeros(J)
    n_acc = np.zeros(J)
    n_loss = np.zeros(J)
    for test, mean in zip(folds, means):
        z = Xd[test] @ mean.T  # (m, J); the tie column of Xd is zero
        pa, pb, pt = outcome_probabilities(z, mean[:, -1] if ties else None)
        h, dec, nll, cnt = _score(pa, pb, pt, Y[test], ties)
        hits += h.sum(axis=0)
        n_acc += dec.sum(axis=0)
        loss += nll.sum(axis=0)
        n_loss += cnt.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / n_acc, loss / n_loss


#: The obvious predictors a profile is held against (same folds, same labels, same outcome space):
#: "majority" the training folds' most frequent verdict, "position" the verdict's frequencies by
#: presentation slot (the shown-first response wins), "length" the frequencies by which response
#: is longer (the longer response wins), the majority's where lengths do not differ.
BASELINES = ("majority", "position", "length")
LENGTH_ATTRIBUTE = "lengthy"


def _frequency_predictor(key_train: np.ndarray, y_train: np.ndarray, key_test: np.ndarray,
                         fallback: tuple[float, float, float] | None = None):
    """Outcome frequencies (A, B, tie; add-one smoothed) per value of an orientation key in {-1, 0, +1},
    oriented so that +1 means "the keyed side is A": a key of -1 swaps A and B. Rows with key 0 get
    ``fallback`` (or the key-free frequencies)."""
    lab = ~np.isnan(y_train)
    k, y = key_train[lab], y_train[lab]
    sel = k != 0
    # oriented outcome: 1 keyed side wins, 0 it loses, 0.5 tie
    yo = np.where(k[sel] > 0, y[sel], np.where(y[sel] == 0.5, 0.5, 1.0 - y[sel]))
    counts = np.array([(yo == 1).sum(), (yo == 0).sum(), (yo == 0.5).sum()], dtype=float)
    allc = np.array([(y == 1).sum(), (y == 0).sum(), (y == 0.5).sum()], dtype=float)
    tie_seen = allc[2] > 0
    m = 3 if tie_seen else 2
    oriented = (counts[:m] + 1.0) / (counts[:m].sum() + m)
    plain = (allc[:m] + 1.0) / (allc[:m].sum() + m)
    if m == 2:
        oriented, plain = np.append(oriented, 0.0), np.append(plain, 0.0)
    if fallback is not None:
        plain = np.asarray(fallback)
    pw, pl, pt = oriented
    pa = np.where(key_test > 0, pw, np.where(key_test < 0, pl, plain[0]))
    pb = np.where(key_test > 0, pl, np.where(key_test < 0, pw, plain[1]))
    ptt = np.where(key_test == 0, plain[2], pt)
    return pa, pb, ptt, plain


def baseline_scores(X: np.ndarray, Y: np.ndarray, folds: list[np.ndarray], *, position: np.ndarray | None = None,
                    length: np.ndarray | None = None, ties: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{baseline: (accuracy (J,), log loss (J,))} on the same folds and labels as a profile's.

    ``position`` is each row's slot column (+1 A shown first; default all +1), ``length`` each
    row's length comparison (+1 A clearly longer, -1 B, 0 neither; None: no length baseline)."""
    n, J = Y.shape
    pos = np.ones(n) if position is None else np.asarray(position, dtype=float)
    keys = {"majority": np.zeros(n), "position": pos}
    if length is not None:
        keys["length"] = np.asarray(length, dtype=float)
    out = {}
    for name, key in keys.items():
        hits, n_acc, loss, n_loss = np.zeros(J), np.zeros(J), np.zeros(J), np.zeros(J)
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            for j in range(J):
                fb = None
                if name == "length":
                    fb = tuple(_frequency_predictor(np.zeros(len(train)), Y[train, j], np.zeros(0))[3])
                pa, pb, pt, _ = _frequency_predictor(key[train], Y[train, j], key[test], fb)
                h, dec, nll, cnt = _score(pa, pb, pt, Y[test, j], ties)
                hits[j] += h.sum()
                n_acc[j] += dec.sum()
                loss[j] += nll.sum()
                n_loss[j] += cnt.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (hits / n_acc, loss / n_loss)
    return out


def _summarise(
    by_chain: np.ndarray,
    *,
    judges: Sequence[str],
    attributes: list[str],
    interval_prob: float,
    keep_draws: int,
    engine: str = "numpy",
) -> list[dict[str, Any]]:
    """Per-judge summaries from (J, chains, draws, d) posterior draws."""
    J, C, S, d = by_chain.shape
    flat = by_chain.reshape(J, C * S, d)
    tail = (1.0 - interval_prob) / 2.0
    lo, hi = np.quantile(flat, [tail, 1.0 - tail], axis=1)
    rhat, ess = rhat_ess(by_chain, engine=engine)
    mean = flat.mean(axis=1)
    sd = flat.std(axis=1, ddof=1)
    p_pos = (flat > 0).mean(axis=1)
    keep = np.unique(np.linspace(0, C * S - 1, min(keep_draws, C * S)).astype(int)) if keep_draws else None
    out = []
    for j in range(J):
        out.append(
            dict(
                judge=judges[j],
                attributes=list(attributes),
                mean=mean[j].tolist(),
                sd=sd[j].tolist(),
                lo=lo[j].tolist(),
                hi=hi[j].tolist(),
                interval=f"eti{round(interval_prob * 100)}",
                p_pos=p_pos[j].tolist(),
                draws=C * S,
                rhat=rhat[j].tolist(),
                ess=ess[j].tolist(),
                samples=None if keep is None else flat[j, keep].astype(np.float32),
            )
        )
    return out


def _attribute_names(d: int, intercept: bool, attributes: Sequence[str] | None, ties: bool = False) -> list[str]:
    names = list(attributes) if attributes is not None else catalogue.attribute_keys()
    if intercept:
        names = [INTERCEPT] + names
    if ties:
        names = names + [TIE]
    if len(names) != d:
        raise ValueError(f"{d} weights but {len(names)} attribute names")
    return names


@dataclass
class FitInput:
    """One scope's rows for :func:`fit_groups`: a row is one verdict's presentation of a sample.

    ``X`` (rows, d) comparison features in A/B orientation; ``Y`` (rows, J) 1 A preferred, 0 B,
    0.5 tie, NaN none; ``position`` (rows,) +1 where A was shown first, -1 where B was (None: A
    first); ``sample`` (rows,) which sample a row is (folds keep a sample's rows together;
    None: every row its own sample)."""

    X: Any
    Y: Any
    position: Any = None
    sample: Any = None


def _as_input(task: Any) -> FitInput:
    if isinstance(task, FitInput):
        return task
    return FitInput(*task)


def fit_groups(
    tasks: Mapping[Any, Any],
    judges: Sequence[str],
    *,
    method: str = "fast",
    prior_scale: float = DEFAULT_PRIOR_SCALE,
    draws: int | None = None,
    tune: int | None = None,
    chains: int = 4,
    seed: int = 0,
    folds: int = 5,
    intercept: bool = False,
    position: bool | None = None,
    ties: str = "drop",
    attributes: Sequence[str] | None = None,
    interval_prob: float = INTERVAL_PROB,
    keep_draws: int = KEEP_DRAWS,
    workers: int | None = None,
) -> dict[Any, list[Profile]]:
    """Profiles for the same judges in several scopes: {scope: (X, Y) or FitInput} -> {scope: [Profile per judge]}.

    Y is (n, J) with columns in the order of ``judges`` (1 = A preferred, 0 = B, 0.5 = tie,
    NaN = no label). ``position`` (or its old name ``intercept``) adds the "shown first" term
    (:data:`POSITION`, first of the terms), whose column is the task's ``position``; ``ties``
    is "drop" (binary logistic, the paper) or "davidson" (ties an outcome; :data:`TIE`, log nu,
    is the last term). ``method="fast"`` samples every scope, judge and fold in a few padded batches
    (defaults: 4 chains x 1000 draws after 500 warm-up); ``"exact"`` runs NUTS per judge
    and fold (defaults 4 x 2000 after 1000). ``folds`` = 0 or 1 skips cross-validation.
    The fast path's fold fits run one chain of a quarter of the draws: they only need a
    posterior mean, whose Monte-Carlo error (sd/15) is then far below its sampling error.
    Held-out accuracy and log loss come with the :data:`BASELINES` on the same folds.
    ``workers`` threads share the fast path's batches (default: one per core; workloads too
    small to gain from threads run on one).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if ties not in TIE_MODELS:
        raise ValueError(f"ties must be one of {TIE_MODELS}, not {ties!r}")
    intercept = bool(intercept if position is None else position)
    tie_model = ties == "davidson"
    draws = draws if draws is not None else (1000 if method == "fast" else 2000)
    tune = tune if tune is not None else (500 if method == "fast" else 1000)
    keys = list(tasks)
    data = []
    for key in keys:
        t = _as_input(tasks[key])
        Xd = _design(t.X, intercept, t.position, tie_model)
        Yl = _labels(t.Y, Xd.shape[0], ties)
        if Yl.shape[1] != len(judges):
            raise ValueError(f"scope {key!r}: {Yl.shape[1]} label columns for {len(judges)} judges")
        pos = np.ones(Xd.shape[0]) if t.position is None else np.asarray(t.position, dtype=float)
        sample = np.arange(Xd.shape[0]) if t.sample is None else np.asarray(t.sample)
        data.append((np.asarray(t.X, dtype=float), Xd, Yl, pos, sample))
    if not data:
        return {}
    d = data[0][1].shape[1]
    names = _attribute_names(d, intercept, attributes, tie_model)
    attr_names = [k for k in names if is_attribute_term(k)]
    J = len(judges)
    fold_sets = [_fold_index(Xd.shape[0], folds, seed, None if sample is None else sample) if folds >= 2 else []
                 for _, Xd, _, _, sample in data]
    fold_draws, fold_tune, fold_chains = max(250, draws // 4), max(100, tune // 5), 1
    settings = dict(method=method, prior_scale=prior_scale, draws=draws, tune=tune, chains=chains, seed=seed,
                    folds=folds, intercept=intercept, interval_prob=interval_prob, ties=ties)
    if method == "fast":
        settings.update(sampler=FAST_SAMPLER, fold_draws=fold_draws, fold_tune=fold_tune, fold_chains=fold_chains)

    def summarise(by_chain: np.ndarray) -> list[dict[str, Any]]:
        return _summarise(by_chain, judges=judges, attributes=names, interval_prob=interval_prob,
                          keep_draws=keep_draws, engine="numpy" if method == "fast" else "arviz")

    t0 = time.perf_counter()
    summaries: list[list[dict[str, Any]]] = []
    post_info: list[list[dict[str, Any]]] = []
    fold_means: list[list[np.ndarray]] = []
    if method == "fast":
        lap, gprec = _prior_vectors(d, prior_scale, intercept, tie_model)

        def consume_main(g: int, post: Posterior) -> tuple:
            # Summarise in the worker as soon as a batch is done, so that the draws of all
            # scopes never sit in memory together (528 profiles x 4000 draws is ~0.5 GB).
            dg = post.diagnostics
            info = [{"accept_rate": dg["accept_rate"][j], "step_size": dg["step_size"][j],
                     "divergences": int(dg["divergences"][j]), "mean_steps": dg["mean_steps"]} for j in range(J)]
            return summarise(post.by_chain()), info, dg["metric_var"]

        # Missing labels in a judge's column are passed as NaN and masked inside the sampler.
        main = _sample_many([(Xd, Yl) for _, Xd, Yl, _, _ in data], lap=lap, gprec=gprec, draws=draws, tune=tune,
                            chains=chains, seed=seed, settings=settings, workers=workers, consume=consume_main,
                            ties=tie_model)
        summaries = [m[0] for m in main]
        post_info = [m[1] for m in main]
        # Cross-validation: each (judge, fold) pair is a pseudo-judge on the same X whose
        # held-out rows are unlabelled (NaN), so all of a scope's fold fits are one batch.
        # They start from the full-data metric, widened for the smaller training set, and
        # adapt only their step size.
        fold_problems, fold_init, owners = [], [], []
        for g, (_, Xd, Yl, _, _) in enumerate(data):
            k = len(fold_sets[g])
            if not k:
                continue
            Yf = np.repeat(Yl, k, axis=1)  # column j * k + f: judge j without fold f
            for f, test in enumerate(fold_sets[g]):
                Yf[np.ix_(test, np.arange(J) * k + f)] = np.nan
            fold_problems.append((Xd, Yf))
            fold_init.append(np.repeat(main[g][2], k, axis=0) * k / (k - 1))
            owners.append(g)
        means = _sample_many(fold_problems, lap=lap, gprec=gprec, draws=fold_draws, tune=fold_tune,
                             chains=fold_chains, seed=[seed, 1], settings=settings, init_var=fold_init,
                             adapt_metric=False, workers=workers, consume=lambda i, post: post.mean, ties=tie_model)
        fold_means = [[] for _ in data]
        for g, m in zip(owners, means):
            k = len(fold_sets[g])
            m = m.reshape(J, k, d)
            fold_means[g] = [m[:, f] for f in range(k)]
    else:
        for g, (X_raw, Xd, Yl, pos, _) in enumerate(data):
            per_judge, info, means = [], [], [np.zeros((J, d)) for _ in fold_sets[g]]
            for j in range(J):
                p = fit_exact(X_raw, Yl[:, j], prior_scale=prior_scale, draws=draws, tune=tune, chains=chains,
                              seed=seed, intercept=intercept, position=pos, ties=ties)
                settings["sampler"] = p.sampler
                per_judge.append(p.by_chain())
                info.append(dict(p.diagnostics))
                for f, test in enumerate(fold_sets[g]):
                    train = np.setdiff1d(np.arange(Xd.shape[0]), test)
                    means[f][j] = fit_exact(X_raw[train], Yl[train, j], prior_scale=prior_scale, draws=draws,
                                            tune=tune, chains=chains, seed=seed + 1 + f, intercept=intercept,
                                            position=pos[train], ties=ties).mean
            summaries.append(summarise(np.stack(per_judge)))
            post_info.append(info)
            fold_means.append(means)
    seconds = time.perf_counter() - t0
    versions = library_versions()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result: dict[Any, list[Profile]] = {}
    length_col = attr_names.index(LENGTH_ATTRIBUTE) if LENGTH_ATTRIBUTE in attr_names else None
    for g, key in enumerate(keys):
        X_raw, Xd, Yl, pos, sample = data[g]
        if fold_sets[g]:
            acc, loss = _out_of_fold(Xd, Yl, fold_sets[g], fold_means[g], tie_model)
            base = baseline_scores(X_raw, Yl, fold_sets[g], position=pos,
                                   length=None if length_col is None else X_raw[:, length_col], ties=tie_model)
        else:
            acc = loss = np.full(J, np.nan)
            base = {}
        # samples (not rows: both orders of a sample count once) on which each attribute differs
        _, first = np.unique(sample, return_index=True)
        labelled = np.zeros((len(first), J), dtype=bool)
        _, inv = np.unique(sample, return_inverse=True)
        np.logical_or.at(labelled, inv, ~np.isnan(Yl))
        diff_counts = labelled.T.astype(np.int64) @ (X_raw[first] != 0).astype(np.int64)  # (J, attributes)
        profiles = []
        for j, s in enumerate(summaries[g]):
            rh = np.asarray(s["rhat"], dtype=float)
            es = np.asarray(s["ess"], dtype=float)
            diag = dict(post_info[g][j])
            diag.update(max_rhat=float(np.nanmax(rh)) if np.isfinite(rh).any() else None,
                        min_ess=float(np.nanmin(es)) if np.isfinite(es).any() else None,
                        batch_seconds=seconds)
            counts = iter(diff_counts[j].tolist())
            lab = ~np.isnan(Yl[:, j])
            profiles.append(
                Profile(
                    **s,
                    n=int(labelled[:, j].sum()),
                    accuracy=None if np.isnan(acc[j]) else float(acc[j]),
                    log_loss=None if np.isnan(loss[j]) else float(loss[j]),
                    folds=len(fold_sets[g]),
                    method=method,
                    sampler=settings["sampler"],
                    prior_scale=prior_scale,
                    seed=seed,
                    versions=versions,
                    fingerprint=fingerprint(Xd, Yl[:, j], settings),
                    settings=dict(settings),
                    diagnostics=diag,
                    fitted_at=stamp,
                    baselines={k: {"accuracy": _clean(v[0][j]), "log_loss": _clean(v[1][j])} for k, v in base.items()},
                    differing=[next(counts) if is_attribute_term(k) else None for k in names],
                    tie_model=ties,
                    ties=int((Yl[lab, j] == 0.5).sum()),
                    observations=int(lab.sum()),
                )
            )
        result[key] = profiles
    return result


def fit_profiles(
    X: Any,
    Y: Any,
    judges: Sequence[str],
    *,
    method: str = "fast",
    prior_scale: float = DEFAULT_PRIOR_SCALE,
    draws: int | None = None,
    tune: int | None = None,
    chains: int = 4,
    seed: int = 0,
    folds: int = 5,
    intercept: bool = False,
    position: Any = None,
    ties: str = "drop",
    attributes: Sequence[str] | None = None,
    interval_prob: float = INTERVAL_PROB,
    keep_draws: int = KEEP_DRAWS,
    workers: int | None = None,
) -> list[Profile]:
    """One Profile per judge, for judges sharing the feature matrix X (one scope).

    Y is (n, J), one column per judge in ``judges`` (or (n,) for one judge); ``position`` is
    the rows' slot column (+1 A shown first, -1 B first), which adds the position term; the
    other options are :func:`fit_groups`'s.
    """
    task = FitInput(X, Y, None if position is None else position)
    return fit_groups(
        {None: task}, judges, method=method, prior_scale=prior_scale, draws=draws, tune=tune, chains=chains,
        seed=seed, folds=folds, intercept=intercept or position is not None, ties=ties, attributes=attributes,
        interval_prob=interval_prob, keep_draws=keep_draws, workers=workers,
    )[None]


def _clean(values: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None."""
    if values is None:
        return None
    if isinstance(values, (list, tuple, np.ndarray)):
        return [_clean(v) for v in values]
    v = float(values)
    return v if math.isfinite(v) else None


def profile_row(profile: Profile, dataset: str, scope: str, judge: str, feature_source: str) -> dict[str, Any]:
    """A ``profiles`` row for ``Store.save_profile`` (lists stay Python lists; the store encodes them)."""
    diag = {k: (_clean(v) if isinstance(v, (float, np.floating)) else v) for k, v in profile.diagnostics.items()}
    return {
        "dataset": dataset,
        "scope": scope,
        "judge": judge,
        "feature_source": feature_source,
        "method": profile.method,
        "attributes": list(profile.attributes),
        "mean": _clean(profile.mean),
        "sd": _clean(profile.sd),
        "lo": _clean(profile.lo),
        "hi": _clean(profile.hi),
        "interval": profile.interval,
        "p_pos": _clean(profile.p_pos),
        "n": int(profile.n),
        "accuracy": _clean(profile.accuracy),
        "log_loss": _clean(profile.log_loss),
        "rhat": _clean(profile.rhat),
        "ess": _clean(profile.ess),
        "fingerprint": profile.fingerprint,
        "provenance": {
            "sampler": profile.sampler,
            "prior": {"family": "laplace", "scale": profile.prior_scale},
            "seed": profile.seed,
            "draws": profile.draws,
            "folds": profile.folds,
            "settings": profile.settings,
            "diagnostics": diag,
            "versions": profile.versions,
            "fitted_at": profile.fitted_at,
            "model": {"position": bool(profile.attributes and is_position(profile.attributes[0])),
                      "ties": profile.tie_model},
            "baselines": profile.baselines,
            "differing": profile.differing,
            "min_differing": MIN_DIFFERING,
            "ties": {"observed": profile.ties, "observations": profile.observations},
        },
        "imported": 0,
    }


@dataclass(frozen=True)
class Contributions:
    """How one profile's posterior-mean weights add up to its predicted choice on one sample.

    For the logistic model logit P(A preferred) = sum_k w_k x_k (+ the intercept, when the profile
    has one: it multiplies a constant 1), so ``terms`` (w_k x_k, in ``attributes`` order) add up
    exactly to ``logit``. ``x`` are the sample's comparison features (+1 A better, -1 B better, 0
    equal); attributes the sample has no feature for count as 0 and are listed in ``missing``."""

    attributes: list[str]
    weights: list[float]
    x: list[float]
    terms: list[float]
    logit: float
    missing: list[str] = field(default_factory=list)

    @property
    def p_a(self) -> float:
        """Predicted probability that the judge prefers A."""
        return float(special.expit(self.logit))

    @property
    def predicted(self) -> str:
        return "A" if self.logit > 0 else "B" if self.logit < 0 else "tie"


def contributions(attributes: Sequence[str], weights: Sequence[float],
                  features: Mapping[str, float]) -> Contributions:
    """Per-attribute contributions w_k x_k of a profile (its ``attributes`` and ``mean``) to the
    logit of P(A) on a sample with comparison features ``features`` (attribute key -> -1/0/+1).

    Swapping A and B negates every x_k, so every attribute's term flips sign; an intercept's term
    does not (it is the judge's preference for the first position, whatever is shown there: the
    sample as stored shows A first). A tie parameter (Davidson's model) is not a term of the logit
    and is left out."""
    if len(attributes) != len(weights):
        raise ValueError(f"{len(weights)} weights for {len(attributes)} attributes")
    xs, terms, missing = [], [], []
    pairs = [(k, w) for k, w in zip(attributes, weights) if k != TIE]  # the tie parameter is no term of z
    attributes, weights = [k for k, _ in pairs], [w for _, w in pairs]
    for name, w in pairs:
        if w is None or not math.isfinite(float(w)):
            raise ValueError(f"the profile has no finite weight for {name!r}")
        if is_position(name):
            x = 1.0
        elif name in features and features[name] is not None:
            x = float(features[name])
        else:
            x = 0.0
            missing.append(name)
        xs.append(x)
        terms.append(float(w) * x if x else 0.0)  # no -0.0 where the attribute is equal
    return Contributions(attributes=list(attributes), weights=[float(w) for w in weights], x=xs, terms=terms,
                         logit=float(math.fsum(terms)), missing=missing)


# ---------------------------------------------------------------------------------------------
# From the store: the dissection of a dataset, saved as profiles


#: fewer labelled samples than this in a scope and a judge gets no profile there
MIN_SAMPLES = 20


@dataclass
class DissectionReport:
    fitted: list[tuple[str, str]] = field(default_factory=list)  # (scope, judge)
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (scope, reason)
    seconds: float = 0.0


def _check_dissect_inputs(store, dataset: str, feature_source: str, scopes: Sequence[str],
                          judges: Sequence[str] | None, folds: int) -> None:
    """Name what is wrong before any work: a typo must not fit nothing and report success."""
    from .store import category_scope  # the user's own categories are scopes too

    known = set(scope_rules.to_fit()) | {category_scope(c) for c in store.categories(dataset)}
    unknown = [s for s in scopes if s not in known]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(map(repr, unknown))}; scopes are 'all', the scenario groups "
                         f"({', '.join(catalogue.group_keys())}), the query cases ({', '.join(catalogue.case_keys())})"
                         " and category:NAME for the dataset's own categories")
    sources = [r["source"] for r in store.feature_sources(dataset)]
    if feature_source not in sources:
        raise ValueError(f"dataset {dataset!r} has no features from {feature_source!r}"
                         + (f" (it has: {', '.join(sources)})" if sources else "; annotate it first"))
    if judges:
        labelled = set(store.judge_names(dataset))
        missing = [j for j in judges if j not in labelled]
        if missing:
            raise ValueError(f"no labels from judge(s) {', '.join(map(repr, missing))} on dataset {dataset!r}"
                             + (f" (judges: {', '.join(sorted(labelled))})" if labelled else ""))
    if folds < 0:
        raise ValueError(f"folds must be 0 (no held-out accuracy) or more, not {folds}")


def dissect(store, dataset: str, feature_source: str, *, scopes: Sequence[str] | None = None,
            judges: Sequence[str] | None = None, method: str = "fast", prior_scale: float = DEFAULT_PRIOR_SCALE,
            draws: int | None = None, tune: int | None = None, chains: int = 4, seed: int = 0, folds: int = 5,
            include_excluded: bool = False, force: bool = False, position: bool = True, ties: str = "davidson",
            on_progress: Callable[[str, int, int], None] | None = None) -> DissectionReport:
    """Fit and store a profile for every (scope, judge) of a dataset with enough labels.

    The model (see :func:`scope_input`): by default every profile carries the position term
    ("shown first"), a judge's verdicts in both orders enter as two observations, and ties are an
    outcome (Davidson) in scopes where the judge tied; ``position=False, ties="drop"`` is the
    paper's model (the combined verdict, no position term, ties dropped).

    A profile whose inputs (features, labels, prior and sampler settings) are unchanged since it
    was stored is not fitted again unless ``force``. Scopes that need the same judges are fitted
    in one batch (``fit_groups``), which is what makes a whole dissection, or one new judge
    across every scope, take seconds. ``on_progress(stage, done, total)`` counts the scopes
    prepared, then the batches fitted.
    """
    report = DissectionReport()
    t0 = time.perf_counter()
    scopes = list(scopes or scope_rules.to_fit())
    _check_dissect_inputs(store, dataset, feature_source, scopes, judges, folds)
    if ties not in TIE_MODELS:
        raise ValueError(f"ties must be one of {TIE_MODELS}, not {ties!r}")
    # the model is part of the key: a profile fitted before the position term and ties existed (its
    # key has neither) is fitted again; the simulator recomputes each key from its own "requested"
    requested = dict(method=method, prior_scale=prior_scale, draws=draws, tune=tune, chains=chains, seed=seed,
                     folds=folds, include_excluded=include_excluded, position=bool(position), ties=ties)
    steps = len(scopes)
    batches: dict[tuple[str, ...], dict[str, tuple[Any, list[str]]]] = {}
    designs = store.designs(dataset, feature_source, scopes, judges=list(judges) if judges else None,
                            include_excluded=include_excluded)
    for i, scope in enumerate(scopes):
        if on_progress:
            on_progress(f"checking {scope}", i, steps)
        d = designs[scope]
        if not d.judges or not d.sample_ids:
            report.skipped.append((scope, f"no labelled samples with {feature_source!r} features"))
            continue
        counts = (~np.isnan(d.Y_y if d.Y_y is not None and ties == "davidson" else d.Y)).sum(axis=0)
        stored = {p["judge"]: (p.get("provenance") or {}).get("inputs") for p in
                  store.profiles(dataset=dataset, scope=scope, feature_source=feature_source, method=method)}
        todo, keys = [], []
        for j, judge in enumerate(d.judges):
            if counts[j] < MIN_SAMPLES:
                report.skipped.append((scope, f"{judge}: {int(counts[j])} labelled samples (< {MIN_SAMPLES})"))
                continue
            key = inputs_key(d.X, d.Y[:, j], requested)
            if not force and stored.get(judge) == key:
                report.unchanged.append((scope, judge))
            else:
                todo.append(j)
                keys.append(key)
        if todo:
            names = tuple(d.judges[j] for j in todo)
            task, tie_model = scope_input(d, todo, position=position, ties=ties)
            batches.setdefault((names, tie_model), {})[scope] = (d, keys, todo, task)
    steps += len(batches)
    for b, ((names, tie_model), tasks) in enumerate(batches.items()):
        if on_progress:
            on_progress(f"fitting {len(tasks)} scopes x {len(names)} judges", len(scopes) + b, steps)
        fitted = fit_groups({scope: t[3] for scope, t in tasks.items()}, list(names),
                            method=method, prior_scale=prior_scale, draws=draws, tune=tune, chains=chains,
                            seed=seed, folds=folds, position=position, ties=tie_model,
                            attributes=next(iter(tasks.values()))[0].attributes)
        rows = []
        for scope, profiles in fitted.items():
            d, keys, _, _ = tasks[scope]
            for judge, key, prof in zip(names, keys, profiles):
                row = profile_row(prof, dataset, scope, judge, feature_source)
                row["provenance"]["inputs"] = key
                row["provenance"]["requested"] = requested  # so the key can be recomputed on later data
                row["provenance"]["excluded_samples"] = d.excluded
                if prof.samples is not None:
                    row["draws"] = np.ascontiguousarray(prof.samples, dtype=np.float32).tobytes()
                rows.append(row)
                report.fitted.append((scope, judge))
        with store.writing():
            for row in rows:
                store.save_profile(row)
    if on_progress:
        on_progress("done", steps, steps)
    report.seconds = time.perf_counter() - t0
    return report


def scope_input(design, judges: Sequence[int], *, position: bool = True, ties: str = "davidson") -> tuple[FitInput, str]:
    """The rows a scope's fit rests on, and the tie model it uses, from a ``Store.designs`` Design.

    With ``position``: a row per presentation order that has verdicts. The A-first verdicts (or
    the label itself, where no per-order verdicts were stored) with the position column +1; where
    any of these judges has B-first verdicts, a second copy of the samples with those verdicts
    and the position column -1 (in the A/B orientation the features stay; in the shown-first
    orientation they are negated and the position term stays). Without: one row per sample, the
    combined verdict (the paper's model). ``ties="davidson"`` keeps ties as an outcome where one
    of these judges tied in the scope, else the binary model is used ("drop")."""
    X = np.asarray(design.X, dtype=float)
    n = X.shape[0]
    idx = list(judges)
    if position and design.Y_ab is not None:
        y_ab, y_ba = design.Y_ab[:, idx], design.Y_ba[:, idx]
        if (~np.isnan(y_ba)).any():
            task = FitInput(np.vstack([X, X]), np.vstack([y_ab, y_ba]), np.r_[np.ones(n), -np.ones(n)],
                            np.r_[np.arange(n), np.arange(n)])
        else:
            task = FitInput(X, y_ab, np.ones(n), np.arange(n))
    else:
        y = design.Y_y[:, idx] if design.Y_y is not None else design.Y[:, idx]
        task = FitInput(X, y, None, np.arange(n))
    tie_model = "davidson" if ties == "davidson" and bool((np.asarray(task.Y) == 0.5).any()) else "drop"
    return task, tie_model


def import_published(store, directory: str | Path, *, dataset: str = "published",
                     feature_source: str = "published") -> int:
    """Profiles in the seed repository's layout (one ``model_<group>_fitted_paras.jsonl`` per scope,
    rows of a judge name and its weights) as external profiles: means only, marked imported."""
    data = load_published_profiles(directory)
    keys = catalogue.attribute_keys()
    rows = []
    for scope, judges in data.items():
        for judge, weights in judges.items():
            w = [float(x) for x in weights]
            if len(w) != len(keys):
                raise ValueError(f"{directory}: scope {scope!r}, judge {judge!r}: {len(w)} weights, expected {len(keys)}")
            rows.append({"dataset": dataset, "scope": scope, "judge": judge, "feature_source": feature_source,
                         "method": "imported", "attributes": keys, "mean": w, "imported": 1,
                         "provenance": {"source": str(directory), "imported": True}})
    with store.writing():
        for row in rows:
            store.save_profile(row)
    return len(rows)
