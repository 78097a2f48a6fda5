"""The sampler: the posterior of a judge's weights under the paper's model, in numpy.

Bayesian logistic regression (label 1 when the judge preferred A) with an independent Laplace(0, b)
prior on every attribute weight, optionally a position term (Normal prior) and a Davidson tie
parameter. This module is the numerical core and nothing else: design matrices and outcome
vectors, the prior, the batched split-HMC sampler (``fit_fast``: every judge, chain, fold and
scenario group at once, exact in the MCMC sense) and the convergence diagnostics (R-hat, ESS).
No store, no pandas, no PyMC: ``core.fit`` runs NUTS (the reference), turns posteriors into
profiles and drives both samplers from the store. ``tests/test_sampler.py`` checks it against an
independent Newton MAP and the inverse Hessian, and ``tests/test_fit.py`` against long NUTS runs.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import special

#: The paper's prior scale: Laplace(0, 0.1) on every weight.
DEFAULT_PRIOR_SCALE = 0.1
INTERCEPT_SCALE = 1.0
#: The Davidson tie parameter (``profile.TIE``, log nu) gets a Normal(0, TIE_SCALE) prior.
TIE_SCALE = 2.0
#: How ties are modelled: dropped (the paper, binary logistic) or as an outcome (Davidson 1970).
TIE_MODELS = ("drop", "davidson")

FAST_SAMPLER = "batched-hmc"


# --------------------------------------------------------------------------- inputs


def design_matrix(X: Any, intercept: bool, position: Any = None, ties: bool = False) -> np.ndarray:
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


def label_vector(Y: Any, n: int, ties: str = "drop") -> np.ndarray:
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


#: How a label's own probability P(A) (``Label.prob_a``) enters: "soft" (the expected log likelihood
#: under it, where the judge gave one) or "hard" (its choice alone, as the paper).
LABEL_MODES = ("soft", "hard")


def soft_targets(Y: np.ndarray, prob: Any) -> tuple[np.ndarray, int]:
    """Soft targets (n, J) for labels ``Y`` (``label_vector``'s coding) and the judge's P(A) ``prob``.

    A row gets its P(A) where the label is decisive (A or B); elsewhere NaN (the hard label, or
    nothing). A tie stays a tie outcome whatever its P(A): the soft weight falls on the A and B
    outcomes only, so P(A) is read as the probability that A wins given that the judge decided.
    A probability on the other side of its choice (A chosen at P(A) < 0.5, or B at > 0.5) is used
    as given, and counted: where the choice is a draw from the judge's probability (a sampled
    verdict, a vote), keeping the probability only where it agrees with the draw would pull every
    target toward 1/2 (a row at P(A) = 0.8 would enter as 0.8 w.p. 0.8 and as 0 w.p. 0.2: 0.64 on
    average); the count goes to the profile's provenance, where a swapped column (every
    probability contradicting) shows. Returns the targets and that count."""
    Y = np.asarray(Y, dtype=float)
    P = np.array(prob, dtype=float)
    if P.ndim == 1:
        P = P[:, None]
    if P.shape != Y.shape:
        raise ValueError(f"label probabilities must be shaped like the labels {Y.shape}, not {P.shape}")
    has = np.isfinite(P)
    if ((P[has] < 0) | (P[has] > 1)).any():
        raise ValueError("label probabilities must lie in [0, 1]")
    decisive = (Y == 0) | (Y == 1)
    conflict = has & decisive & (((Y == 1) & (P < 0.5)) | ((Y == 0) & (P > 0.5)))
    return np.where(has & decisive, P, np.nan), int(conflict.sum())


def prior_vectors(d: int, prior_scale: float, intercept: bool, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
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


def outcome_probabilities(z: np.ndarray, theta: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(A), P(B), P(tie)) for logits z: the logistic model, or Davidson's with log nu = ``theta``."""
    z = np.asarray(z, dtype=float)
    if theta is None:
        pa = special.expit(z)
        return pa, 1.0 - pa, np.zeros_like(pa)
    logits = np.stack([0.5 * z, -0.5 * z, np.broadcast_to(np.asarray(theta, dtype=float), z.shape)], axis=0)
    p = special.softmax(logits, axis=0)
    return p[0], p[1], p[2]


def score_margin(a: np.ndarray, half_nu: Any = None, *, out: np.ndarray | None = None,
                 work: np.ndarray | None = None) -> np.ndarray:
    """2 * :func:`expected_score` - 1 at half-logits ``a`` = z / 2: tanh(a) under the logistic model,
    sinh(a) / (cosh(a) + nu / 2) under Davidson's (``half_nu`` = nu / 2 = exp(theta) / 2, broadcast
    against ``a``: one per draw in the simulator). ``out`` and ``work`` (``a``'s shape and dtype) take
    the result and the denominator in place, for the simulator's float32 kernel."""
    if half_nu is None:
        return np.tanh(a, out=out)
    den = np.cosh(a, out=work)
    den += half_nu
    num = np.sinh(a, out=out)
    num /= den
    return num


def expected_score(z: np.ndarray, half_nu: Any = None) -> np.ndarray:
    """A's expected score for logits z with a tie counting 1/2, P(A) + P(tie) / 2: sigmoid(z) under
    the logistic model; under Davidson's (``half_nu`` = nu / 2) the share of
    e^(z/2) + nu / 2 in e^(z/2) + e^(-z/2) + nu, i.e. 1/2 + sinh(z/2) / (2 (cosh(z/2) + nu / 2)),
    which is the simulator's and the experiment's predicted win rate (:func:`outcome_probabilities`
    gives the three outcomes apart)."""
    return 0.5 + 0.5 * score_margin(np.asarray(z) / 2.0, half_nu)


# --------------------------------------------------------------------------- results


@dataclass
class Posterior:
    """Posterior draws from one sampler run.

    ``draws`` is (S, d) from ``fit.fit_exact`` (NUTS) and (J, S, d) from :func:`fit_fast`, with
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
    Y: np.ndarray  # (G, J, n) P(A) targets: 1 A, 0 B, a soft label's P(A), 0 where missing (and for ties)
    M: np.ndarray | None  # (G, J, n) 1 where labelled, None when every row is labelled
    T: np.ndarray | None = None  # (G, J, n) 1 where the label is a tie (the tie model only)


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

    ``ties``: Davidson's model. Labels 1 / 0 / a tie (``T``), the last coordinate is the tie parameter
    theta = log nu (its column of X is zero), and with a = z/2 and D = e^a + e^-a + nu the log
    likelihood is s*a + [tie]*theta - log D (s = +1 A, -1 B, 0 tie), whose gradient is
    (s - (P(A) - P(B))) / 2 per unit of z and [tie] - P(tie) for theta. It needs the mask ``M``
    (padded rows would otherwise count as observations of z = 0).

    Soft labels: a non-tie label with the judge's probability p = P(A) has the target p in ``Y``;
    its log likelihood is the expectation under it, p log P(A) + (1 - p) log P(B), which is linear
    in p: the binary model's y z - log(1 + e^z) and the tie model's s = 2p - 1 above, unchanged
    otherwise (the soft weight falls on the A and B outcomes only; a tie stays a tie).
    """
    X, Y, M = batch.X, batch.Y, batch.M
    G, n, d = X.shape
    J, C = Y.shape[1], chains
    if ties:
        if M is None or batch.T is None:
            raise ValueError("the tie model needs the batch's mask and tie indicator")
        S = np.where(batch.T > 0, 0.0, 2.0 * Y - 1.0) * M  # 2 P(A) - 1: +1 A, -1 B, in between soft
        XtY = 0.5 * (S @ X)[:, :, None, :]  # (G, J, 1, d): 0.5 * sum_i s_i x_i
        n_tie = (batch.T * M).sum(-1)[:, :, None]  # (G, J, 1)
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
    kern = _compiled_kernels()
    if ties and kern is not None:
        Mflat = Mrep.reshape(G * J * C, n)
        ptie_buf = np.empty(G * J * C)
        lsum_buf = np.empty(G * J * C)
    n_grad = 0
    gauss = bool(gprec.any())  # only the position term and the tie parameter have a Gaussian prior
    has_prior = (lap > 0) if gauss else None
    prior_k = np.ones(d, dtype=bool) if has_prior is None else np.ascontiguousarray(has_prior)

    def smooth(W: np.ndarray, want_lp: bool):
        """Log likelihood (+ the intercept's Gaussian prior) and its gradient.

        A wild warm-up proposal can push float32 exp past its range: the log density becomes
        -inf or NaN there and the Metropolis test rejects the move, so the warnings are muted
        (once, around the whole run: entering ``np.errstate`` per call cost ~2% of a run)."""
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

    def smooth_ties(W: np.ndarray, want_lp: bool):
        """Davidson's log likelihood and its gradient, from a = z / 2 in Zbuf (X32 is halved)."""
        if kern is not None:
            return smooth_ties_compiled(W, want_lp)
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

    def smooth_ties_compiled(W: np.ndarray, want_lp: bool):
        """:func:`smooth_ties` with its elementwise passes fused in one compiled kernel."""
        E = np.exp(Zbuf, out=Pbuf)
        theta = W[..., -1]  # (G, J, C)
        nu = np.exp(theta).astype(np.float32).reshape(-1)
        Q = Lbuf
        kern["tie_terms"](E.reshape(-1, n), nu, Mflat, qmask, Q.reshape(-1, n), Dbuf.reshape(-1, n), ptie_buf)
        lp = None
        if want_lp:
            logD = np.log(Dbuf, out=Dbuf)
            kern["masked_sum"](logD.reshape(-1, n), Mflat, lsum_buf)
            lp = (W * XtY).sum(-1) + theta * n_tie - lsum_buf.reshape(G, J, C)
            lp -= 0.5 * (gprec * W * W).sum(-1)
        grad = XtY - (Q @ X32).reshape(G, J, C, d)  # X32 holds X / 2
        grad[..., -1] += n_tie - ptie_buf.reshape(G, J, C) * np.exp(theta)
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

    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
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
            if kern is not None:  # the kernel reads (chains, d) rows
                hs = np.ascontiguousarray(np.broadcast_to(hs, (G, J, C, d))).reshape(-1, d)
                tau_k = np.ascontiguousarray(step.reshape(-1))
                alpha_k = alpha.reshape(-1, d)
            for s_ in range(L):
                if kern is not None:  # v += hs * g, then the drift, in one pass
                    w_new, v_new = np.empty((G, J, C, d)), np.empty((G, J, C, d))
                    kern["kick_drift"](w.reshape(-1, d), v.reshape(-1, d), g.reshape(-1, d), hs, alpha_k, tau_k,
                                       prior_k, w_new.reshape(-1, d), v_new.reshape(-1, d))
                    w, v = w_new, v_new
                    lp_s_new, g = smooth(w, s_ == L - 1)
                    v += (hs * g.reshape(-1, d)).reshape(G, J, C, d)
                    continue
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


def _pad(problems: Sequence[tuple], mask: bool = False) -> _Batch:
    """Problems (X, Y[, P]) padded into one batch: Y as ``label_vector`` codes it, P (optional) the
    soft targets of ``soft_targets`` (NaN where the hard label holds)."""
    n = max(p[0].shape[0] for p in problems)
    d = problems[0][0].shape[1]
    J = problems[0][1].shape[1]
    G = len(problems)
    Xb = np.zeros((G, n, d))
    Yb = np.zeros((G, J, n))
    Mb = np.zeros((G, J, n))
    Tb = np.zeros((G, J, n)) if mask else None
    for g, (X, Y, *rest) in enumerate(problems):
        m = X.shape[0]
        Xb[g, :m] = X
        lab = ~np.isnan(Y)
        target = np.where(lab, Y, 0.0)
        if Tb is not None:
            Tb[g, :, :m] = (target == 0.5).T
        if rest and rest[0] is not None:
            soft = lab & np.isfinite(rest[0])
            target = np.where(soft, rest[0], target)
        Yb[g, :, :m] = target.T
        Mb[g, :, :m] = lab.T
    # The mask is only needed when a judge lacks some labels of its problem's real rows: padded
    # rows of X are zero and contribute nothing either way.
    complete = not mask and all(not np.isnan(p[1]).any() for p in problems)
    return _Batch(X=Xb, Y=Yb, M=None if complete else Mb, T=Tb)


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


def sample_many(
    prepped: Sequence[tuple],
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
    """Sample prepared problems (design, labels[, soft targets]) in padded batches; see :func:`fit_fast_many`."""
    if not prepped:
        return []
    workers = (os.cpu_count() or 1) if workers is None else workers
    d = prepped[0][0].shape[1]
    if any(p[0].shape[1] != d for p in prepped) or len({p[1].shape[1] for p in prepped}) != 1:
        raise ValueError("all problems need the same features and the same number of judges")
    buckets = _buckets([p[0].shape[0] for p in prepped], prepped[0][1].shape[1] * chains)
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
    try:  # threadpoolctl comes with PyMC; without it BLAS threads just compete a little
        from threadpoolctl import threadpool_limits

        one_blas_thread = threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover
        one_blas_thread = contextlib.nullcontext()
    # One BLAS thread, always: the workers are the parallelism, and a (chains, d) x (d, n) product
    # is too small to split (on a busy 2-core machine two BLAS threads made it ~100x slower, 5 ms
    # instead of 50 us, which is what held one judge's 16 scopes, run on one worker, at 4-6 s).
    with one_blas_thread:
        if workers > 1 and len(buckets) > 1 and largest >= _THREAD_MIN_ELEMENTS:
            with ThreadPoolExecutor(workers) as pool:
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

    A problem may be (X_g, Y_g, position_g[, prob_g]): the position column for ``intercept`` (+1 A
    shown first, -1 B first; default +1), and the judges' own P(A) per label (NaN where none; see
    :func:`soft_targets`), used as soft labels. ``ties="davidson"`` appends the tie parameter
    (log nu) as the last coordinate of the draws.

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
        X, Y, position, prob = (*problem, None, None)[:4]
        Xd = design_matrix(X, intercept, position, tie_model)
        Yl = label_vector(Y, Xd.shape[0], ties)
        prepped.append((Xd, Yl, None if prob is None else soft_targets(Yl, prob)[0]))
    d = prepped[0][0].shape[1] if prepped else 0
    lap, gprec = prior_vectors(d, prior_scale, intercept, tie_model)
    settings = dict(prior_scale=prior_scale, draws=draws, tune=tune, chains=chains, seed=seed, intercept=intercept,
                    ties=ties)
    return sample_many(prepped, lap=lap, gprec=gprec, draws=draws, tune=tune, chains=chains, seed=seed,
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
    prob: Any = None,
) -> Posterior:
    """Posterior for J judges sharing one feature matrix: ``Posterior.draws`` is (J, S, d).

    Y is (n, J) (or (n,) for one judge): 1 = A preferred, 0 = B preferred, 0.5 = tie (an outcome
    with ``ties="davidson"``, else dropped), NaN = no label. ``intercept`` adds the position term
    first (column ``position``: +1 A shown first, -1 B first; default +1). ``prob`` (like Y; NaN
    where none) is the judges' own P(A) per label, used as a soft label (see :func:`soft_targets`).
    ``Posterior.diagnostics`` holds per-judge acceptance rates, step sizes, divergences and
    the adapted metric. The sampler is batched split HMC, for these reasons:
    """
    return fit_fast_many([(X, Y, position, prob)], prior_scale=prior_scale, draws=draws, tune=tune, chains=chains,
                         seed=seed, intercept=intercept, ties=ties)[0]


if fit_fast.__doc__:  # None under python -OO
    fit_fast.__doc__ = inspect.cleandoc(fit_fast.__doc__) + "\n" + _FAST_DOC


# --------------------------------------------------------------------------- compiled kernels
#
# Three pieces of the fast path are many small numpy calls over the same few arrays: the kick and
# the exact drift under the Laplace prior (~15 calls on (chains x d) arrays, ~25% of a leapfrog step,
# most of it Python overhead holding the GIL), the tie model's elementwise terms (7 passes over the
# (chains x samples) array) and the rank normalisation of R-hat / ESS (gathers and scatters after the
# sort: ~15% of a paper-scale dissection). Compiled with numba (nutpie's dependency, pinned), each is
# one pass and releases the GIL, so the batches' threads overlap. Measured on the paper-scale
# benchmark (back to back on a busy machine): 74 -> 50-54 CPU-s. The numpy code stays as the
# reference (``tests/test_sampler.py`` checks the kernels against it) and runs where numba is
# missing or fails to compile.


def _kick_drift_kernel(w, v, g, hs, alpha, tau, prior, x_out, v_out):  # pragma: no cover - compiled
    """``v += hs * g`` then :func:`_laplace_drift` for time ``tau[k]``, per row k of (K, d) arrays."""
    K, d = w.shape
    for k in range(K):
        ta = tau[k]
        for j in range(d):
            x0 = w[k, j]
            u0 = v[k, j] + hs[k, j] * g[k, j]
            al = alpha[k, j]
            pull = math.copysign(al * ta, x0)
            vn = u0 - pull
            xn = (u0 + vn) * (0.5 * ta) + x0
            if prior[j] and xn * x0 <= 0.0:
                si = 1.0 if x0 >= 0.0 else -1.0
                y = si * x0
                u = si * u0
                c = math.sqrt(u * u + 2.0 * al * y)
                r = ta - (u + c) / al
                half = 2.0 * c / al
                kk = math.floor(r / half) if half > 0.0 else math.floor(r / math.inf)
                r = r - kk * half
                side = -si * (1.0 if np.fmod(kk, 2.0) == 0.0 else -1.0)
                xn = side * (c * r - 0.5 * al * r * r)
                vn = side * (c - al * r)
            x_out[k, j] = xn
            v_out[k, j] = vn


def _tie_terms_kernel(E, nu, M, mask_q, Q, D, p_tie):  # pragma: no cover - compiled
    """Davidson's elementwise terms from E = e^a (R, n), float32: D = e^a + e^-a + nu (kept for the
    log density), Q = (e^a - e^-a) / D (times the mask ``M`` if ``mask_q``) and, per row, the
    masked sum of 1 / D (P(tie) / nu) in float64."""
    R, n = E.shape
    for r in range(R):
        nr = nu[r]
        s = 0.0
        for i in range(n):
            e = E[r, i]
            ei = np.float32(1.0) / e
            dd = e + ei + nr
            rr = np.float32(1.0) / dd
            m = M[r, i]
            q = (e - ei) * rr
            Q[r, i] = q * m if mask_q else q
            D[r, i] = dd
            s += rr * m
        p_tie[r] = s


def _z_ranks_kernel(rows, order, table, z, med, zf):  # pragma: no cover - compiled
    """Per row of (R, N) values with ``order`` its argsort: z = table[2 * average rank - 2] (equal
    values share their average rank, as scipy's "average"), the row's median, and zf the same for
    the folded values |x - median| (tail R-hat), whose order is a merge of the two halves of
    ``order`` walked outward from the median: no second sort."""
    R, N = rows.shape
    vals = np.empty(N)
    idx = np.empty(N, dtype=np.intp)
    for r in range(R):
        for i in range(N):
            idx[i] = order[r, i]
            vals[i] = rows[r, idx[i]]
        m = 0.5 * (vals[(N - 1) // 2] + vals[N // 2])
        med[r] = m
        for fold in range(2):
            out = zf[r] if fold else z[r]
            i = 0
            while i < N:  # runs of equal sorted values share their average rank
                v = vals[i]
                j = i + 1
                while j < N and vals[j] == v:
                    j += 1
                t = table[i + j - 1]  # ranks i+1 .. j share (i + j + 1) / 2
                for q in range(i, j):
                    out[idx[q]] = t
                i = j
            if fold:
                break
            lo = 0  # the first sorted position at or above the median
            while lo < N and vals[lo] < m:
                lo += 1
            a, b = lo - 1, lo  # walk down from a and up from b, the nearer to the median first
            for k in range(N):
                if b >= N or (a >= 0 and m - rows[r, order[r, a]] <= rows[r, order[r, b]] - m):
                    idx[k] = order[r, a]
                    a -= 1
                else:
                    idx[k] = order[r, b]
                    b += 1
            for k in range(N):
                vals[k] = abs(rows[r, idx[k]] - m)


def _masked_sum_kernel(L, M, out):  # pragma: no cover - compiled
    """Per row of (R, n) float32 arrays: sum of L * M in float64."""
    R, n = L.shape
    for r in range(R):
        s = 0.0
        for i in range(n):
            s += L[r, i] * M[r, i]
        out[r] = s


_kernel_lock = threading.Lock()
_kernel_state: dict[str, Any] = {}


def _compiled_kernels() -> dict[str, Callable] | None:
    """The numba-compiled kernels (compiled on first use, ~2 s; then cached on disk where numba finds a
    writable cache directory: ``__pycache__`` beside this file, else ``NUMBA_CACHE_DIR`` or the user's
    cache), or None where numba cannot be imported or compile (the numpy code runs instead)."""
    if "kernels" in _kernel_state:
        return _kernel_state["kernels"]
    with _kernel_lock:
        if "kernels" not in _kernel_state:
            _kernel_state["kernels"] = _build_kernels()
    return _kernel_state["kernels"]


def _build_kernels() -> dict[str, Callable] | None:
    try:
        import numba
    except Exception as exc:  # pragma: no cover - numba comes with nutpie
        _kernel_state["error"] = repr(exc)
        return None

    def jit(f, **kw):
        try:
            return numba.njit(cache=True, nogil=True, error_model="numpy", **kw)(f)
        except Exception:  # no writable cache directory anywhere: compile in memory
            return numba.njit(cache=False, nogil=True, error_model="numpy", **kw)(f)

    sums = dict(fastmath={"reassoc"})  # reassociating a row's sum lets it vectorise
    kernels = {
        "kick_drift": jit(_kick_drift_kernel),
        "tie_terms": jit(_tie_terms_kernel, **sums),
        "masked_sum": jit(_masked_sum_kernel, **sums),
        "z_ranks": jit(_z_ranks_kernel),
    }
    try:  # compile now, on tiny inputs of the types the sampler passes, so a failure falls back here
        f64, f32 = np.zeros((1, 1)), np.ones((1, 1), dtype=np.float32)
        kernels["kick_drift"](f64, f64, f64, f64, f64, np.zeros(1), np.ones(1, dtype=np.bool_),
                              np.empty((1, 1)), np.empty((1, 1)))
        kernels["tie_terms"](f32, np.ones(1, dtype=np.float32), f32, True, np.empty_like(f32), np.empty_like(f32),
                             np.empty(1))
        kernels["masked_sum"](f32, f32, np.empty(1))
        kernels["z_ranks"](f64, np.zeros((1, 1), dtype=np.intp), np.zeros(1), np.empty((1, 1)), np.empty(1),
                           np.empty((1, 1)))
    except Exception as exc:  # pragma: no cover - depends on the platform's LLVM
        _kernel_state["error"] = repr(exc)
        return None
    return kernels


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


def _z_scale(a: np.ndarray, return_median: bool = False):
    """Rank-normalise each series (last two axes: chains x draws) as ArviZ does (Blom, c=3/8);
    with ``return_median`` also each series' median.

    Average ranks are whole or half numbers, so the normal quantiles come from a table of 2N
    values instead of N evaluations of the inverse normal per series.
    """
    k = a.shape[:-2]
    flat = a.reshape(*k, -1)
    N = flat.shape[-1]
    ranks, srt = _average_ranks(flat, return_sorted=True)
    z = _table_z(N)[(2.0 * ranks - 2.0).astype(np.intp)].reshape(a.shape)
    if not return_median:
        return z
    return z, 0.5 * (srt[..., (N - 1) // 2] + srt[..., N // 2])


def _table_z(N: int) -> np.ndarray:
    """Normal quantiles of the Blom positions of average ranks 1, 1.5, ..., N (index 2 * rank - 2)."""
    return special.ndtri((np.arange(2 * N - 1) / 2.0 + 1.0 - 0.375) / (N + 0.25))


def _z_scale_bulk_and_tail(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_z_scale` of ``a`` and of its folded values |a - median| (per series), as R-hat needs
    both. With the compiled kernels numpy sorts once and one pass per series gives both (the
    folded order is a merge of the sorted halves): ~4x faster than the numpy path (two sorts,
    gathers and scatters), which runs without numba."""
    kern = _compiled_kernels()
    if kern is None:
        z, med = _z_scale(a, return_median=True)
        return z, _z_scale(np.abs(a - med[..., None, None]))
    k = a.shape[:-2]
    rows = np.ascontiguousarray(a, dtype=float).reshape(-1, a.shape[-2] * a.shape[-1])
    z, zf = np.empty(rows.shape), np.empty(rows.shape)
    kern["z_ranks"](rows, np.argsort(rows, axis=-1), _table_z(rows.shape[1]), z, np.empty(rows.shape[0]), zf)
    return z.reshape(a.shape), zf.reshape(a.shape)


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
    z, z_tail = _z_scale_bulk_and_tail(split)
    ess = _ess_basic(z)
    if chains < 2:
        return nan, ess
    bulk = _rhat_basic(z)
    tail = _rhat_basic(z_tail)
    return np.maximum(bulk, tail), ess
