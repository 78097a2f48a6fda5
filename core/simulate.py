"""The injection simulator and attribute-controlled win rates: what a fitted profile says about gaming a judge.

The paper's sharpest finding: judge-based benchmarks can be gamed by making responses show what the
judge likes. This module turns a stored profile (posterior draws of a judge's attribute weights) into
that estimate, with uncertainty from the posterior, and generalises length- and style-controlled win
rates to any attribute. Precisely:

**Pairs.** A simulation looks at the pairs of one scope (a scenario group, a query case or ``all``) of
one dataset, with features from the profile's feature source (samples whose errors could not be
checked are left out, as in fitting). The pairs of a model under test M against an opponent O are the
samples with {model_a, model_b} = {M, O}; with opponent ``all``, every sample with M on exactly one
side and a named model on the other. ``model=None`` (datasets without model names) takes every pair
with response A as the one under test.

**Orientation.** Every pair is turned so that M is on side A: features are negated where M is B
(comparison features are antisymmetric: swapping the responses flips every sign), so +1 always
means "M better on this attribute". Under the logistic model P(M preferred) = sigmoid(s * x . w) with
s = +1 if M is A and -1 if M is B, which is sigmoid(x_o . w) on the oriented features x_o = s * x
(the position term, "shown first", is a position bias and becomes the column s: the model under test
was shown first where it is A, as the pairs are stored).

**Observed win rate.** Over the pairs the judge labelled: 1 when it chose M's response, 0 for the
other, a tie counts 1/2 (the convention of AlpacaEval and Arena win rates); with a 94% Jeffreys
interval (Beta(w + 1/2, n - w + 1/2) on the tie-halved count). Pairs the judge did not label are not
in its simulation; a judge with no labels on these pairs (an imported profile) is simulated on all of
them, without an observed rate.

**Prediction.** For each posterior draw w_d, the predicted win rate is the mean over pairs of
sigmoid(x_o . w_d): the expected share of pairs the judge gives M. The 94% interval is the 3% and 97%
quantiles over draws (equal-tailed, like the profiles' intervals). It is a credible interval for the
*expected* win rate on these pairs; the labels the judge would actually give also carry label noise,
so every estimate also has a *predictive* interval for the observed rate on these n pairs: the
mixture over draws of Normal(mean_d, sum_i q_i (1 - q_i) / n^2), the normal approximation of the
Poisson-binomial count (q_i the pair's probability), its quantiles found by bisection. Compare an
observed win rate with the predictive interval, the model's expected rate with the credible one.
A means-only profile (imported, or the demo's truth) is one draw: its credible interval is a point.
A profile fitted with ties as an outcome (Davidson's model, tie parameter nu) predicts M's expected
score with a tie counting half, P(M) + P(tie) / 2, as the observed rate counts it (see ``subset_means``),
and so do the attribute-controlled win rates and the calibration (``sampler.expected_score``).
Attributes a profile has no estimate for (not measured, too few differing samples) are neither
injected nor ranked.

**Injection and suppression.** The paper injects an attribute by telling the evaluated model to show
it; what the judge's profile sees is the comparison feature. Injecting attribute k into M's responses
sets the oriented comparison to +1 (M shows k more than the opponent) where it was 0 or -1;
suppressing k sets it to -1 (M shows k less than the opponent) where it was 0 or +1. The two are
mirror images: suppressing k moves the win rate as much as injecting it would for a judge with the
opposite weight. A query-conditional attribute (clarifies intent, empathetic, constraints, stances,
mistakes) can only change where its query case applies (the sample's case flag, or a non-zero
feature), since its feature is 0 elsewhere by definition. The comparison is with the opponent's
actual response, which the manipulation does not touch; where the opponent already shows k at the
top of the scale, a real injection could only reach a tie, which the simulator (working on
comparisons, not ratings) does not model: read the success rate as the share of pairs where M ends
up ahead (behind) on k.

**Success rate.** Change k takes effect in a share r_k of the pairs. Changes of different attributes
take effect independently of each other and of the pair. The simulator takes the exact expectation
over this mixture rather than a random subset of pairs, so repeated runs agree to the last digit: for
the K changes of a manipulation it evaluates the mean prediction f_d(S) for every subset S of changes
taking effect (2^K evaluations, K <= MAX_CHANGES) and weights each by its probability
prod_{k in S} r_k prod_{k not in S} (1 - r_k). Rate 0 changes nothing, rate 1 changes every pair
where the change can apply, and for one attribute the predicted rate is linear in r
(before + r (f({k}) - before)), so monotone in r with the sign of the weight.

**Contributions.** The change (after - before) is split over the attributes by their Shapley values
in the game v(T) = predicted win rate when only the changes in T are applied (each at its rate):
phi_k = sum over T not containing k of |T|! (K - |T| - 1)! / K! (v(T + k) - v(T)). They are computed
per draw from the same 2^K evaluations, so they sum exactly to the total change in every draw, are
symmetric, and for a single attribute equal its whole effect. Each has a 94% interval over draws.

**What to inject.** Every attribute injected alone into every applicable pair (rate 1), ranked by
the posterior mean gain in M's predicted win rate, with intervals and P(gain > 0) over draws: the
paper's top-5 and bottom-5 manipulation for this judge, model and opponent.

**Attribute-controlled win rates.** For each responding model m of the dataset (pairs against any
other named model, oriented to m), the raw win rate is the observed one. The controlled win rate
neutralises chosen attributes the way AlpacaEval's length-controlled win rate does (fit, then
remove): the profile plays the GLM, and each model gets its own logit offset c_m, found per draw so
that the full prediction mean_i E(x_o . w_d + c_m) equals m's observed rate (E the expected score:
the sigmoid, or with Davidson's ties P(m) + P(tie) / 2) (the offset holds
everything about m the attributes do not explain, like AlpacaEval's model term). The controlled rate
is then mean_i E(x_o' . w_d + c_m) with the chosen attributes' features set to 0 (no
difference on them). Calibrating to the observed rate is the reason for the offset: the plain
prediction with the attributes zeroed would mix the profile's misfit for m into the comparison; with
the offset, zeroing attributes that have no effect (a zero weight, or features that are 0 in m's
pairs) returns the raw rate exactly. A leaderboard per judge ranks the models by both rates and flags
a model whose rates differ by more than SHARP_POINTS (10 points) or whose rank moves by SHARP_RANKS
(2) or more.

**Calibration.** For each judge with a profile in the scope, the pairs are sorted by predicted
P(A preferred) (posterior mean of the sigmoid), cut into ten equal-count bins (deciles), and each bin's
mean prediction is set against the observed share of A (ties 1/2, Jeffreys interval); the expected
calibration error is the count-weighted mean gap. This is in-sample (the profile was fitted on these
labels), so it checks the logistic model's fit, not generalisation (the profile's held-out accuracy
is in its record).

**Speed.** The 2^K subset means are computed in blocks of 64 pairs that stay in cache: one matrix
product per block for x_o . w over all draws, then the subsets in Gray-code order, each one change
away from the last (one rank-1 update), a tanh (the sigmoid as 1/2 + tanh(z/2)/2: numpy's float32
tanh is ~40x faster than scipy's expit here) and a column sum; float32 arithmetic with float64
accumulation across blocks, one BLAS thread. ``benchmarks/bench_simulate.py`` measures 5,000 pairs
x 4,000 draws: ~140 ms for three changes at fractional rates on this machine's 2 shared cores. Reading
a large dataset's features from the store costs more than that, so callers that simulate repeatedly
(the page) load the pairs once (``load_pairs``) and pass them in.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import special

from . import catalogue, scopes
from .fit import inputs_key, library_versions, requested_with_probs
from .intervals import INTERVAL_PROB, jeffreys, tails
from .sampler import score_margin
from .profile import (FITTED_METHODS, INTERCEPT, TIE, beats_baselines, best_baseline, is_position, measured_mask,
                      method_rank, pick_profile)

#: opponent meaning "any other model"
ALL = "all"
DIRECTIONS = ("inject", "suppress")
#: the largest manipulation simulated at once (2^K subset evaluations)
MAX_CHANGES = 6
#: a controlled win rate this far from the raw one (as a share) is flagged
SHARP_POINTS = 0.10
#: a rank move this large is flagged
SHARP_RANKS = 2
#: pairs per block in the kernel (a block x 4,000 draws of float32 is 1 MB)
BLOCK = 64
#: methods with posterior draws, preferred in this order when none is asked for
class SimulationError(ValueError):
    """The simulation cannot run as asked (no profile, no pairs, a bad manipulation)."""


# --------------------------------------------------------------------------- manipulations


@dataclass(frozen=True)
class Change:
    """Inject (+) or suppress (-) one attribute in M's responses, taking effect in a share ``rate`` of pairs."""

    attribute: str
    direction: str  # "inject" or "suppress"
    rate: float

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise SimulationError(f"direction must be one of {DIRECTIONS}, not {self.direction!r}")
        if self.attribute not in catalogue.attribute_keys():
            raise SimulationError(f"unknown attribute {self.attribute!r}")
        rate = float(self.rate)
        if not (0.0 <= rate <= 1.0) or math.isnan(rate):
            raise SimulationError(f"{self.attribute}: success rate must lie in [0, 1], not {self.rate!r}")
        object.__setattr__(self, "rate", rate)

    @property
    def target(self) -> int:
        """The oriented comparison value where the change takes effect."""
        return 1 if self.direction == "inject" else -1


def changes_from(inject: Mapping[str, float] | None = None, suppress: Mapping[str, float] | None = None) -> list[Change]:
    """Changes from {attribute: rate} maps; an attribute may not be both injected and suppressed."""
    inject, suppress = dict(inject or {}), dict(suppress or {})
    both = sorted(set(inject) & set(suppress))
    if both:
        raise SimulationError(f"cannot both inject and suppress {', '.join(both)}")
    out = [Change(k, "inject", r) for k, r in inject.items()] + [Change(k, "suppress", r) for k, r in suppress.items()]
    if len(out) > MAX_CHANGES:
        raise SimulationError(f"at most {MAX_CHANGES} attributes at a time (the simulation evaluates 2^K combinations)")
    return out


# --------------------------------------------------------------------------- summaries


@dataclass
class Estimate:
    """A posterior mean with its equal-tailed credible interval; optionally a predictive interval for
    the observed rate on the same pairs (posterior uncertainty plus label noise)."""

    mean: float
    lo: float
    hi: float
    pred_lo: float | None = None
    pred_hi: float | None = None

    @classmethod
    def from_draws(cls, values: np.ndarray, prob: float = INTERVAL_PROB, var: np.ndarray | None = None) -> "Estimate":
        values = np.asarray(values, dtype=float)
        lo, hi = np.quantile(values, tails(prob))
        est = cls(float(values.mean()), float(lo), float(hi))
        if var is not None:
            est.pred_lo, est.pred_hi = predictive_interval(values, var, prob)
        return est


def predictive_interval(means: np.ndarray, var: np.ndarray, prob: float = INTERVAL_PROB) -> tuple[float, float]:
    """Quantiles of the mixture over draws of Normal(means_d, var_d), clipped to [0, 1], by bisection."""
    m = np.asarray(means, dtype=float)
    s = np.sqrt(np.maximum(np.asarray(var, dtype=float), 1e-18))
    out = []
    for q in tails(prob):
        lo, hi = 0.0, 1.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if special.ndtr((mid - m) / s).mean() < q:
                lo = mid
            else:
                hi = mid
        out.append(0.5 * (lo + hi))
    return out[0], out[1]


# --------------------------------------------------------------------------- the kernel


def _one_blas_thread():
    try:  # threadpoolctl comes with PyMC; small products are much slower on several BLAS threads
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()


@dataclass
class SubsetMeans:
    means: np.ndarray  # (subsets, draws): mean over pairs of P(M preferred)
    m2_first: np.ndarray  # (draws,): mean over pairs of P^2 for the first subset
    m2_mix: np.ndarray | None  # (draws,): mean over pairs of q^2, q = the mix-weighted P per pair


def subset_means(X: np.ndarray, W: np.ndarray, deltas: np.ndarray, subsets: Sequence[Sequence[int]], cols: Sequence[int],
                 *, mix: Sequence[float] | None = None, block: int = BLOCK, half_nu: np.ndarray | None = None) -> SubsetMeans:
    """Mean over pairs of sigmoid((X + sum_{k in S} deltas[:, k] e_{cols[k]}) . w_d) for each subset S and draw d.

    X: (n, d) oriented features; W: (D, d) draws; deltas: (n, K) change of column cols[k] when
    change k takes effect; subsets: lists of change indices (the first one is the reference for
    ``m2_first``). A subset one change away from the previous one is reached by one rank-1 update
    (pass subsets in Gray-code order to get that throughout). ``mix`` (one weight per subset) also
    gives the mean of q^2 for the per-pair mixture q = sum_j mix_j P_j (for predictive intervals).

    ``half_nu`` (D,): nu / 2 per draw of a profile with Davidson's ties. P is then M's expected score
    with a tie counting half, P(M) + P(tie) / 2 = 1/2 + sinh(a) / (2 (cosh(a) + nu / 2)) with a = z / 2,
    which is the logistic 1/2 + tanh(a) / 2 when nu = 0.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = X.shape[0]
    halfT = np.ascontiguousarray(0.5 * np.asarray(W, dtype=np.float32).T)  # sigmoid(z) = 1/2 + tanh(z/2)/2
    D = halfT.shape[1]
    dT = np.ascontiguousarray(np.asarray(deltas, dtype=np.float32).reshape(n, -1).T)  # (K, n)
    rows = [halfT[c] for c in cols]  # (D,) weights of each changed column, halved
    subsets = [sorted(set(s)) for s in subsets]
    sums = np.zeros((len(subsets), D))
    sq_first = np.zeros(D)
    sq_mix = np.zeros(D) if mix is not None else None
    mix_sum = float(np.sum(mix)) if mix is not None else 0.0
    block = max(1, min(block, n)) if n else 1
    z = np.empty((block, D), np.float32)
    cur = np.empty_like(z)  # z of the current subset
    tmp = np.empty_like(z)
    out = np.empty_like(z)
    u = np.empty_like(z) if mix is not None else None
    hn = None if half_nu is None else np.asarray(half_nu, dtype=np.float32).reshape(1, -1)
    den = np.empty_like(z) if hn is not None else None
    with _one_blas_thread():
        for start in range(0, n, block):
            m = min(block, n - start)
            zb, cb, tb, ob = z[:m], cur[:m], tmp[:m], out[:m]
            np.matmul(X[start:start + m], halfT, out=zb)
            if u is not None:
                ub = u[:m]
                ub.fill(0.0)
            state: set[int] | None = None  # the subset whose z is in cb

            def shift(k: int, sign: float) -> None:
                np.multiply(dT[k, start:start + m, None], rows[k], out=tb)
                if sign > 0:
                    np.add(cb, tb, out=cb)
                else:
                    np.subtract(cb, tb, out=cb)

            for j, s in enumerate(subsets):
                want = set(s)
                if not want:
                    src = zb
                else:
                    if state is None or len(state ^ want) >= len(want):
                        cb[...] = zb
                        state = set()
                    for k in sorted(state - want):
                        shift(k, -1.0)
                    for k in sorted(want - state):
                        shift(k, 1.0)
                    state = want
                    src = cb
                score_margin(src, hn, out=ob, work=None if den is None else den[:m])  # 2 P - 1
                sums[j] += ob.sum(axis=0)  # float32 within a block, float64 across
                if j == 0:
                    np.multiply(ob, ob, out=tb)
                    sq_first += tb.sum(axis=0)
                if u is not None and mix[j] > 0:
                    np.multiply(ob, np.float32(mix[j]), out=ob)
                    np.add(ub, ob, out=ub)
            if u is not None:
                np.multiply(ub, ub, out=ub)
                sq_mix += ub.sum(axis=0)
    n = max(n, 1)
    t_mean = sums / n
    means = 0.5 + 0.5 * t_mean
    # P = (1 + t) / 2, so mean P^2 = (1 + 2 mean t + mean t^2) / 4
    m2_first = 0.25 * (1.0 + 2.0 * t_mean[0] + sq_first / n)
    m2_mix = None
    if sq_mix is not None:
        u_mean = (np.asarray(mix, dtype=float)[:, None] * t_mean).sum(axis=0)
        m2_mix = 0.25 * (mix_sum ** 2 + 2.0 * mix_sum * u_mean + sq_mix / n)
    return SubsetMeans(means, m2_first, m2_mix)


def _bits(mask: int, K: int) -> list[int]:
    return [k for k in range(K) if mask >> k & 1]


def _subset_prob(mask: int, within: int, rates: np.ndarray) -> float:
    """P(exactly the changes in ``mask`` take effect | only the changes in ``within`` are applied)."""
    p = 1.0
    for k in _bits(within, len(rates)):
        p *= rates[k] if mask >> k & 1 else 1.0 - rates[k]
    return p


@dataclass
class ArraysResult:
    """Per-draw results of one simulation on oriented arrays."""

    before: np.ndarray  # (D,)
    after: np.ndarray  # (D,)
    contributions: np.ndarray  # (K, D), Shapley values; they sum to after - before
    var_before: np.ndarray  # (D,) label-noise variance of the observed rate, before
    var_after: np.ndarray  # (D,)
    applies: np.ndarray  # (K,) share of pairs where change k can change the comparison
    n: int


def change_deltas(X: np.ndarray, cols: Sequence[int], targets: Sequence[int],
                  applicable: np.ndarray | None = None) -> np.ndarray:
    """(n, K): how column cols[k] moves when change k takes effect (0 where it cannot apply)."""
    X = np.asarray(X, dtype=np.float32)
    out = np.empty((X.shape[0], len(cols)), np.float32)
    for k, (c, t) in enumerate(zip(cols, targets)):
        d = np.float32(t) - X[:, c]
        if applicable is not None:
            d = d * applicable[:, c]
        out[:, k] = d
    return out


def simulate_arrays(X: np.ndarray, W: np.ndarray, cols: Sequence[int], targets: Sequence[int], rates: Sequence[float],
                    *, applicable: np.ndarray | None = None, block: int = BLOCK,
                    half_nu: np.ndarray | None = None) -> ArraysResult:
    """One simulation on oriented features X (n, d) and draws W (D, d): changes k set column cols[k]
    to targets[k] (+1 inject, -1 suppress) in a share rates[k] of the pairs, independently; exact
    expectation over the 2^K combinations; Shapley contributions per draw."""
    K = len(cols)
    if K > MAX_CHANGES:
        raise SimulationError(f"at most {MAX_CHANGES} changes at a time")
    if len(set(cols)) != K:
        raise SimulationError("each attribute at most once per simulation")
    r = np.asarray(rates, dtype=float)
    n = X.shape[0]
    deltas = change_deltas(X, cols, targets, applicable)
    full = (1 << K) - 1
    # subsets with a change of rate 0 have probability 0 in every v(T): not evaluated
    # in Gray-code order (each subset one change from the previous: one rank-1 update each), the empty one first
    masks = [g ^ (g >> 1) for g in range(1 << K)]
    masks = [m for m in masks if all(r[k] > 0 for k in _bits(m, K))]
    mix = [_subset_prob(m, full, r) for m in masks]
    res = subset_means(X, W, deltas, [_bits(m, K) for m in masks], cols, mix=mix, block=block, half_nu=half_nu)
    f = dict(zip(masks, res.means))
    D = res.means.shape[1]
    v = np.zeros((1 << K, D))
    for T in range(1 << K):
        S = T
        while True:
            if S in f:
                p = _subset_prob(S, T, r)
                if p:
                    v[T] += p * f[S]
            if S == 0:
                break
            S = (S - 1) & T
    phi = np.zeros((K, D))
    for k in range(K):
        for T in range(1 << K):
            if T >> k & 1:
                continue
            s = bin(T).count("1")
            phi[k] += math.factorial(s) * math.factorial(K - s - 1) / math.factorial(K) * (v[T | 1 << k] - v[T])
    before, after = v[0], v[full]
    nn = max(n, 1)
    return ArraysResult(
        before=before, after=after, contributions=phi,
        var_before=np.maximum(before - res.m2_first, 0.0) / nn,
        var_after=np.maximum(after - res.m2_mix, 0.0) / nn,
        applies=(deltas != 0).mean(axis=0) if n else np.zeros(K), n=n,
    )


def gains_arrays(X: np.ndarray, W: np.ndarray, cols: Sequence[int], target: int, *,
                 applicable: np.ndarray | None = None, block: int = BLOCK,
                 half_nu: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each column in ``cols`` changed alone in every applicable pair: (before (D,), after (len(cols), D), applies)."""
    deltas = change_deltas(X, cols, [target] * len(cols), applicable)
    res = subset_means(X, W, deltas, [[]] + [[k] for k in range(len(cols))], cols, block=block, half_nu=half_nu)
    return res.means[0], res.means[1:], (deltas != 0).mean(axis=0) if X.shape[0] else np.zeros(len(cols))


CONTROL_TOL = 1e-6  # |mean sigmoid - observed| at which the offset counts as calibrated


def controlled_arrays(X: np.ndarray, W: np.ndarray, won: np.ndarray, cols: Sequence[int],
                      half_nu: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per draw: (controlled win rate, the model's logit offset c), for oriented labelled pairs X with
    outcomes ``won`` (1, 0, 1/2 for ties). c solves mean_i E(x_i . w + c) = mean(won) to CONTROL_TOL,
    where E is the expected score (``sampler.expected_score``: the logistic sigmoid, or P(win) + P(tie)/2
    for a profile with Davidson's ties, ``half_nu`` = nu / 2 per draw); the controlled rate is
    mean_i E(x_i' . w + c) with the ``cols`` features set to 0.

    The (pairs x draws) passes run in float32 into reused buffers, through ``sampler.score_margin``
    (E = (1 + margin) / 2) and float64 sums: six times faster than float64 temporaries, and exact to well
    under CONTROL_TOL."""
    obs = float(np.mean(won))
    D = W.shape[0]
    if obs <= 0.0 or obs >= 1.0:  # no finite offset; every shift keeps the rate at 0 or 1
        return np.full(D, obs), np.full(D, -np.inf if obs <= 0 else np.inf)
    X = np.asarray(X, dtype=np.float32)
    half_wt = np.ascontiguousarray(0.5 * np.asarray(W, dtype=np.float32).T)
    half_z = X @ half_wt  # (n, D): z / 2
    Xc = X.copy()
    Xc[:, list(cols)] = 0.0
    half_zc = Xc @ half_wt
    hn = None if half_nu is None else np.asarray(half_nu, dtype=np.float32).reshape(1, -1)
    buf = np.empty_like(half_z)
    den = None if hn is None else np.empty_like(half_z)

    def mean_margin(half, c):  # mean_i margin((z_i + c) / 2) per draw; buf keeps the margins, den cosh + nu/2
        np.add(half, (0.5 * c).astype(np.float32), out=buf)
        score_margin(buf, hn, out=buf, work=den)
        return buf.mean(axis=0, dtype=np.float64)

    def slope():  # d E / d c per draw at the last mean_margin: p (1 - p) = (1 - tanh^2) / 4, or Davidson's
        if hn is None:
            return 0.25 * (1.0 - np.einsum("ij,ij->j", buf, buf, dtype=np.float64) / X.shape[0])
        # d/da sinh(a) / (cosh(a) + h) = (1 + h cosh(a)) / (cosh(a) + h)^2, and a = (z + c) / 2
        d = den.astype(np.float64)
        return 0.25 * np.mean((1.0 + hn * (d - hn)) / (d * d), axis=0)

    pm = 0.5 + 0.5 * mean_margin(half_z, np.zeros(D))
    c = special.logit(obs) - special.logit(np.clip(pm, 1e-12, 1 - 1e-12))
    for _ in range(50):  # Newton on a monotone function of c, steps capped: converges in one to three
        g = 0.5 + 0.5 * mean_margin(half_z, c) - obs
        if np.abs(g).max() < CONTROL_TOL:
            break
        c = c - np.clip(g / np.maximum(slope(), 1e-12), -4.0, 4.0)
    return 0.5 + 0.5 * mean_margin(half_zc, c), c


# --------------------------------------------------------------------------- the store side


@dataclass
class PairSet:
    """The pairs of one scope with features from one source, as stored (A's perspective)."""

    dataset: str
    feature_source: str
    scope: str
    sample_ids: list[str]
    attributes: list[str]
    X: np.ndarray  # (n, d)
    model_a: np.ndarray  # (n,) object
    model_b: np.ndarray
    applicable: np.ndarray  # (n, d) bool: where a change of the attribute can apply
    _outcomes: dict = field(default_factory=dict, repr=False, compare=False)  # judge -> judge_outcomes

    def outcomes(self, store, judge: str) -> dict[str, float]:
        """``judge_outcomes`` on this dataset, read once per PairSet: a PairSet is read from one state
        of the store and dropped when it changes (the dashboard keys it on the store's version)."""
        if judge not in self._outcomes:
            self._outcomes[judge] = judge_outcomes(store, self.dataset, judge)
        return self._outcomes[judge]

    def select(self, model: str | None, opponent: str = ALL) -> tuple[np.ndarray, np.ndarray]:
        """Rows of M's pairs against the opponent and each one's orientation sign (+1: M is A)."""
        if model is None:
            return np.arange(len(self.sample_ids)), np.ones(len(self.sample_ids))
        if opponent == model:
            raise SimulationError("the opponent must differ from the model under test")
        a, b = self.model_a, self.model_b
        named = (a != None) & (b != None)  # noqa: E711 (elementwise on an object array)
        if opponent == ALL:
            rows = named & ((a == model) ^ (b == model))
        else:
            rows = ((a == model) & (b == opponent)) | ((a == opponent) & (b == model))
        idx = np.flatnonzero(rows)
        return idx, np.where(a[idx] == model, 1.0, -1.0)


def load_pairs(store, dataset: str, feature_source: str, scope: str = "all") -> PairSet:
    design = store.design(dataset, feature_source, scope=scope, judges=[])
    meta = store.pair_meta(dataset)
    ids = list(design.sample_ids)
    X = np.asarray(design.X, dtype=float).reshape(len(ids), len(design.attributes))
    applicable = np.ones(X.shape, dtype=bool)
    for j, key in enumerate(design.attributes):
        attr = catalogue.attribute(key)
        if attr.rule == "conditional" and attr.condition:
            flag = np.array([bool(meta[i]["cases"].get(attr.condition)) for i in ids], dtype=bool)
            applicable[:, j] = flag | (X[:, j] != 0)
    return PairSet(
        dataset=dataset, feature_source=feature_source, scope=scope, sample_ids=ids,
        attributes=list(design.attributes), X=X,
        model_a=np.array([meta[i]["model_a"] for i in ids], dtype=object),
        model_b=np.array([meta[i]["model_b"] for i in ids], dtype=object),
        applicable=applicable,
    )


def _pairs_for(store, dataset: str, feature_source: str, scope: str, given: PairSet | None) -> PairSet:
    if given is not None and (given.dataset, given.feature_source, given.scope) == (dataset, feature_source, scope):
        return given
    return load_pairs(store, dataset, feature_source, scope)


def judge_outcomes(store, dataset: str, judge: str) -> dict[str, float]:
    """sample id -> 1 (A chosen), 0 (B), 1/2 (tie) for one judge."""
    value = {"A": 1.0, "B": 0.0, "tie": 0.5}
    return {sid: value[choice] for sid, choice in store.choices(dataset, judge).items()}


def profile_for(store, dataset: str, scope: str, judge: str, *, feature_source: str | None = None,
                method: str | None = None) -> dict[str, Any]:
    """The profile to simulate with (``profile.pick_profile``, with its posterior draws), or a
    SimulationError that says where the judge has profiles."""
    prof = pick_profile(store, dataset, scope, judge, feature_source=feature_source, method=method, with_draws=True)
    if prof is None:
        have = sorted({p["scope"] for p in store.profiles(dataset=dataset, judges=[judge], columns=["scope"])})
        raise SimulationError(
            f"no profile of judge {judge!r} in scope {scope!r} of dataset {dataset!r}"
            + (f" (method {method!r})" if method else "")
            + (f"; it has profiles in: {', '.join(have)}" if have else "; fit one with `python -m core fit`"))
    return prof


def profile_draws(profile: Mapping[str, Any], attributes: Sequence[str]) -> tuple[np.ndarray, bool]:
    """(draws (D, [1 +] d) aligned with ``attributes``, whether an intercept column leads), from a
    profile row; a means-only profile gives its mean as the one draw."""
    names = list(profile["attributes"])
    draws = profile.get("draws")
    src = np.asarray(draws, dtype=np.float32) if draws is not None else np.asarray([profile["mean"]], dtype=np.float32)
    src = np.nan_to_num(src.reshape(-1, len(names)))
    pos = {(INTERCEPT if is_position(k) else k): i for i, k in enumerate(names)}
    intercept = INTERCEPT in pos
    cols = ([INTERCEPT] if intercept else []) + list(attributes)
    W = np.zeros((src.shape[0], len(cols)), np.float32)
    for j, k in enumerate(cols):
        if k in pos:
            W[:, j] = src[:, pos[k]]
    return W, intercept


def tie_draws(profile: Mapping[str, Any]) -> np.ndarray | None:
    """nu / 2 per draw (aligned with ``profile_draws``) of a profile fitted with Davidson's ties, else None."""
    names = list(profile["attributes"])
    if TIE not in names:
        return None
    draws = profile.get("draws")
    src = np.asarray(draws, dtype=np.float32) if draws is not None else np.asarray([profile["mean"]], dtype=np.float32)
    theta = np.nan_to_num(src.reshape(-1, len(names))[:, names.index(TIE)])
    return (0.5 * np.exp(theta)).astype(np.float32)


def oriented(pairs: PairSet, idx: np.ndarray, sign: np.ndarray, intercept: bool) -> np.ndarray:
    Xo = pairs.X[idx] * sign[:, None]
    if intercept:
        Xo = np.hstack([sign[:, None], Xo])
    return Xo


def unmeasured(profile: Mapping[str, Any]) -> list[str]:
    """Attributes the profile has no estimate for (not measured, or too few differing samples:
    ``profile.measurement``): the simulator does not offer them and refuses to inject them."""
    if not profile.get("attributes"):
        return []
    return [k for k, ok in zip(profile["attributes"], measured_mask(profile)) if not ok]


def trust(profile: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the profile predicts held-out choices better than its best baseline (None: unknown), the
    baseline, and the attributes it did not measure: shown with every simulation."""
    prov = profile.get("provenance") or {}
    best = best_baseline(prov.get("baselines"))
    return {"beats_baseline": beats_baselines(profile.get("accuracy"), prov.get("baselines")),
            "baseline": best[0] if best else None, "baseline_accuracy": best[1] if best else None,
            "unmeasured": unmeasured(profile)}


def provenance(profile: Mapping[str, Any], draws_used: int, stale: bool | None = None) -> dict[str, Any]:
    """What a result rests on: the profile's identity, fit and record (shown with every result)."""
    prov = profile.get("provenance") or {}
    out = {
        "profile_id": profile.get("id"), "dataset": profile["dataset"], "scope": profile["scope"],
        "judge": profile["judge"], "feature_source": profile["feature_source"], "method": profile["method"],
        "sampler": prov.get("sampler"), "prior": prov.get("prior"), "n": profile.get("n"),
        "accuracy": profile.get("accuracy"), "fitted_at": prov.get("fitted_at") or profile.get("created_at"),
        "fingerprint": profile.get("fingerprint"), "draws": int(draws_used),
        "means_only": profile.get("draws") is None, "imported": bool(profile.get("imported")),
        **trust(profile),
    }
    if stale is not None:
        out["stale"] = stale
    return out


def _stale(store, profile: Mapping[str, Any], pairs: PairSet, outcomes: Mapping[str, float]) -> bool | None:
    """Whether the judge's labels, their P(A) or the features moved since the profile was fitted (None:
    not a fit).

    A fit that recorded its settings is checked exactly: its input key (``fit.inputs_key``) computed
    again on the pairs and labels now (with soft labels, on the judge's P(A) now). Older fits, and fits that kept the samples whose errors could
    not be checked (other rows than these pairs), fall back on the count of labelled samples."""
    if profile.get("n") is None or profile["method"] not in FITTED_METHODS:
        return None
    prov = profile.get("provenance") or {}
    requested, key = prov.get("requested"), prov.get("inputs")
    if requested and key and not requested.get("include_excluded"):
        y = np.array([{1.0: 1.0, 0.0: 0.0}.get(outcomes.get(i), np.nan) for i in pairs.sample_ids])
        mode = requested.get("labels") or (prov.get("labels") or {}).get("mode", "hard")
        prob = None
        if mode != "hard":  # the judge's P(A) now, as the fit took it: a changed probability is a changed input
            have = store.fit_probs(pairs.dataset, profile["judge"], position=bool(requested.get("position")))
            prob = np.array([have.get(i, np.nan) for i in pairs.sample_ids], dtype=float)
        return inputs_key(pairs.X, y, requested_with_probs(requested, mode, prob)) != key
    return int(profile["n"]) != sum(1 for i in pairs.sample_ids if outcomes.get(i, 0.5) != 0.5)


def _fingerprint(ids: Iterable[str], sign: np.ndarray) -> str:
    h = hashlib.sha256()
    for i, s in zip(ids, sign):
        h.update(f"{i}{'+' if s > 0 else '-'}\x1f".encode())
    return h.hexdigest()[:16]


def _label(key: str) -> str:
    try:
        return catalogue.attribute(key).label
    except (KeyError, ValueError):
        return key


# --------------------------------------------------------------------------- results


@dataclass
class Contribution:
    attribute: str
    label: str
    direction: str
    rate: float
    applies: float  # share of the pairs where the change can move the comparison
    mean: float
    lo: float
    hi: float


@dataclass
class Simulation:
    """One judge's simulation of one manipulation (win rates as shares in [0, 1])."""

    judge: str
    dataset: str
    scope: str
    feature_source: str
    model: str | None
    opponent: str
    changes: list[Change]
    pairs: int
    labelled: int
    observed: float | None
    observed_lo: float | None
    observed_hi: float | None
    before: Estimate
    after: Estimate
    change: Estimate
    contributions: list[Contribution]
    profile: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _settings(prob: float, draws: int, ids: Sequence[str], sign: np.ndarray, seconds: float, **extra) -> dict[str, Any]:
    return {
        "interval": f"eti{round(prob * 100)}", "draws": int(draws), "pairs_fingerprint": _fingerprint(ids, sign),
        "seconds": round(seconds, 4), "numpy": library_versions().get("numpy"),
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra,
    }


def _judge_pairs(store, pairs: PairSet, judge: str, model: str | None, opponent: str, outcomes=None):
    """M's pairs for one judge: the labelled ones (with outcomes from M's side), or all when none is labelled."""
    idx, sign = pairs.select(model, opponent)
    outcomes = pairs.outcomes(store, judge) if outcomes is None else outcomes
    lab = np.array([pairs.sample_ids[i] in outcomes for i in idx], dtype=bool)
    if lab.any():
        idx, sign = idx[lab], sign[lab]
        a_won = np.array([outcomes[pairs.sample_ids[i]] for i in idx])
        won = np.where(sign > 0, a_won, 1.0 - a_won)
    else:
        won = None
    return idx, sign, won


def simulate(store, dataset: str, judges: Sequence[str], *, scope: str = "all", model: str | None,
             opponent: str = ALL, inject: Mapping[str, float] | None = None,
             suppress: Mapping[str, float] | None = None, feature_source: str | None = None,
             method: str | None = None, prob: float = INTERVAL_PROB,
             pairs: PairSet | None = None) -> list[Simulation]:
    """Simulate injecting / suppressing attributes in M's responses against O, for each judge.

    ``pairs``: the scope's pairs already loaded (``load_pairs``), used when they match the profile's
    feature source (reading a large dataset's features costs more than the simulation itself)."""
    given = pairs
    changes = changes_from(inject, suppress)
    if not judges:
        raise SimulationError("choose at least one judge")
    out = []
    cache: dict[str, PairSet] = {}
    for judge in judges:
        t0 = time.perf_counter()
        prof = profile_for(store, dataset, scope, judge, feature_source=feature_source, method=method)
        missing = [c.attribute for c in changes if c.attribute in unmeasured(prof)]
        if missing:
            raise SimulationError(f"judge {judge!r}'s profile in scope {scope!r} has no estimate for "
                                  f"{', '.join(map(repr, missing))}: the feature set did not measure it, or too few "
                                  "samples differ on it, so the simulator cannot say what injecting it would do")
        src = prof["feature_source"]
        pairs = cache.get(src) or cache.setdefault(src, _pairs_for(store, dataset, src, scope, given))
        outcomes = pairs.outcomes(store, judge)
        idx, sign, won = _judge_pairs(store, pairs, judge, model, opponent, outcomes)
        if not len(idx):
            raise SimulationError(f"no pairs of {model!r} against {opponent!r} in scope {scope!r} of {dataset!r}"
                                  f" with {src!r} features")
        W, intercept = profile_draws(prof, pairs.attributes)
        Xo = oriented(pairs, idx, sign, intercept)
        offset = 1 if intercept else 0
        cols = [pairs.attributes.index(c.attribute) for c in changes]
        app = pairs.applicable[idx]
        if intercept:
            app = np.hstack([np.ones((len(idx), 1), bool), app])
        res = simulate_arrays(Xo, W, [c + offset for c in cols], [c.target for c in changes],
                              [c.rate for c in changes], applicable=app, half_nu=tie_draws(prof))
        observed = lo = hi = None
        if won is not None:
            observed = float(won.mean())
            lo, hi = jeffreys(float(won.sum()), len(won), prob)
        contributions = []
        for k, c in enumerate(changes):
            e = Estimate.from_draws(res.contributions[k], prob)
            contributions.append(Contribution(attribute=c.attribute, label=_label(c.attribute), direction=c.direction,
                                              rate=c.rate, applies=float(res.applies[k]), mean=e.mean, lo=e.lo,
                                              hi=e.hi))
        out.append(Simulation(
            judge=judge, dataset=dataset, scope=scope, feature_source=src, model=model, opponent=opponent,
            changes=changes, pairs=len(idx), labelled=0 if won is None else len(won),
            observed=observed, observed_lo=lo, observed_hi=hi,
            before=Estimate.from_draws(res.before, prob, res.var_before),
            after=Estimate.from_draws(res.after, prob, res.var_after),
            change=Estimate.from_draws(res.after - res.before, prob),
            contributions=contributions,
            profile=provenance(prof, W.shape[0], _stale(store, prof, pairs, outcomes)),
            settings=_settings(prob, W.shape[0], [pairs.sample_ids[i] for i in idx], sign,
                               time.perf_counter() - t0, mixture="independent, exact expectation",
                               contributions="shapley"),
        ))
    return out


# --------------------------------------------------------------------------- what to inject


@dataclass
class Gain:
    attribute: str
    label: str
    mean: float  # change in M's predicted win rate
    lo: float
    hi: float
    p_positive: float  # share of draws with a gain > 0
    applies: float


@dataclass
class Ranking:
    judge: str
    scope: str
    model: str | None
    opponent: str
    direction: str
    rate: float
    pairs: int
    before: Estimate
    gains: list[Gain]  # best first
    profile: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int = 5) -> list[Gain]:
        return self.gains[:k]

    def bottom(self, k: int = 5) -> list[Gain]:
        return self.gains[-k:][::-1] if k else []

    def to_dict(self) -> dict[str, Any]:
        d = _jsonable(asdict(self))
        d["top5"] = [g["attribute"] for g in d["gains"][:5]]
        d["bottom5"] = [g["attribute"] for g in d["gains"][-5:][::-1]]
        return d


def injection_ranking(store, dataset: str, judge: str, *, scope: str = "all", model: str | None,
                      opponent: str = ALL, direction: str = "inject", rate: float = 1.0,
                      feature_source: str | None = None, method: str | None = None,
                      prob: float = INTERVAL_PROB, pairs: PairSet | None = None) -> Ranking:
    """Every attribute injected (or suppressed) alone at ``rate``, ranked by M's predicted gain."""
    if direction not in DIRECTIONS:
        raise SimulationError(f"direction must be one of {DIRECTIONS}")
    t0 = time.perf_counter()
    prof = profile_for(store, dataset, scope, judge, feature_source=feature_source, method=method)
    pairs = _pairs_for(store, dataset, prof["feature_source"], scope, pairs)
    idx, sign, _ = _judge_pairs(store, pairs, judge, model, opponent)
    if not len(idx):
        raise SimulationError(f"no pairs of {model!r} against {opponent!r} in scope {scope!r}")
    W, intercept = profile_draws(prof, pairs.attributes)
    Xo = oriented(pairs, idx, sign, intercept)
    offset = 1 if intercept else 0
    app = pairs.applicable[idx]
    if intercept:
        app = np.hstack([np.ones((len(idx), 1), bool), app])
    cols = [j + offset for j in range(len(pairs.attributes))]
    before, after, applies = gains_arrays(Xo, W, cols, 1 if direction == "inject" else -1, applicable=app,
                                          half_nu=tie_draws(prof))
    gains = []
    no_estimate = set(unmeasured(prof))
    for j, key in enumerate(pairs.attributes):
        if key in no_estimate:  # the prior says nothing about what injecting it would do
            continue
        g = float(rate) * (after[j] - before)
        e = Estimate.from_draws(g, prob)
        gains.append(Gain(attribute=key, label=_label(key), mean=e.mean, lo=e.lo, hi=e.hi,
                          p_positive=float((g > 0).mean()), applies=float(applies[j])))
    gains.sort(key=lambda g: -g.mean)
    return Ranking(judge=judge, scope=scope, model=model, opponent=opponent, direction=direction, rate=float(rate),
                   pairs=len(idx), before=Estimate.from_draws(before, prob), gains=gains,
                   profile=provenance(prof, W.shape[0]),
                   settings=_settings(prob, W.shape[0], [pairs.sample_ids[i] for i in idx], sign,
                                      time.perf_counter() - t0))


# --------------------------------------------------------------------------- controlled win rates


@dataclass
class LeaderRow:
    model: str
    pairs: int
    raw: float
    raw_lo: float
    raw_hi: float
    controlled: float
    controlled_lo: float
    controlled_hi: float
    shift: float  # controlled - raw
    raw_rank: int
    controlled_rank: int
    rank_change: int  # positive: moves up when controlled
    sharp: bool


@dataclass
class Leaderboard:
    judge: str
    dataset: str
    scope: str
    attributes: list[str]
    rows: list[LeaderRow]  # by raw win rate, best first
    profile: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        out = []
        for r in self.rows:
            if r.sharp:
                out.append(f"{r.model}: raw {r.raw:.1%} vs controlled {r.controlled:.1%} "
                           f"({r.shift * 100:+.1f} points, rank {r.raw_rank} -> {r.controlled_rank})")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = _jsonable(asdict(self))
        d["warnings"] = self.warnings
        return d


def _ranks(values: Sequence[float]) -> list[int]:
    """1 = best; equal values share the better rank."""
    return [1 + sum(1 for w in values if w > v) for v in values]


def models(store, dataset: str) -> list[dict[str, Any]]:
    """The responding models of a dataset with how many pairs each appears in (against another model)."""
    counts = store.model_pair_counts(dataset)
    return [{"model": k, "pairs": v} for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def controlled_win_rates(store, dataset: str, judge: str, attributes: Sequence[str], *, scope: str = "all",
                         feature_source: str | None = None, method: str | None = None,
                         prob: float = INTERVAL_PROB, pairs: PairSet | None = None) -> Leaderboard:
    """Raw and attribute-controlled win rates of every responding model under one judge."""
    unknown = [a for a in attributes if a not in catalogue.attribute_keys()]
    if unknown:
        raise SimulationError(f"unknown attribute(s): {', '.join(unknown)}")
    t0 = time.perf_counter()
    prof = profile_for(store, dataset, scope, judge, feature_source=feature_source, method=method)
    pairs = _pairs_for(store, dataset, prof["feature_source"], scope, pairs)
    W, intercept = profile_draws(prof, pairs.attributes)
    half_nu = tie_draws(prof)
    offset = 1 if intercept else 0
    cols = [pairs.attributes.index(a) + offset for a in attributes]
    outcomes = pairs.outcomes(store, judge)
    names = sorted({m for m in list(pairs.model_a) + list(pairs.model_b) if m})
    found = []
    for m in names:
        idx, sign = pairs.select(m, ALL)
        lab = np.array([pairs.sample_ids[i] in outcomes for i in idx], dtype=bool)
        idx, sign = idx[lab], sign[lab]
        if not len(idx):
            continue
        a_won = np.array([outcomes[pairs.sample_ids[i]] for i in idx])
        won = np.where(sign > 0, a_won, 1.0 - a_won)
        ctrl, _ = controlled_arrays(oriented(pairs, idx, sign, intercept), W, won, cols, half_nu=half_nu)
        e = Estimate.from_draws(ctrl, prob)
        lo, hi = jeffreys(float(won.sum()), len(won), prob)
        found.append((m, len(idx), float(won.mean()), lo, hi, e))
    raw_rank = _ranks([f[2] for f in found])
    ctrl_rank = _ranks([f[5].mean for f in found])
    rows = []
    for (m, n, raw, lo, hi, e), rr, cr in zip(found, raw_rank, ctrl_rank):
        shift = e.mean - raw
        rows.append(LeaderRow(model=m, pairs=n, raw=raw, raw_lo=lo, raw_hi=hi, controlled=e.mean,
                              controlled_lo=e.lo, controlled_hi=e.hi, shift=shift, raw_rank=rr,
                              controlled_rank=cr, rank_change=rr - cr,
                              sharp=abs(shift) > SHARP_POINTS or abs(rr - cr) >= SHARP_RANKS))
    rows.sort(key=lambda r: (r.raw_rank, r.model))
    return Leaderboard(judge=judge, dataset=dataset, scope=scope, attributes=list(attributes), rows=rows,
                       profile=provenance(prof, W.shape[0]),
                       settings={"interval": f"eti{round(prob * 100)}", "draws": int(W.shape[0]),
                                 "method": "logit offset per model calibrated to the observed rate, "
                                           "then the chosen features set to 0",
                                 "seconds": round(time.perf_counter() - t0, 4)})


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    judge: str
    scope: str
    pairs: int
    ece: float  # expected calibration error (count-weighted mean |observed - predicted|)
    bins: list[dict[str, Any]]  # bin, pairs, predicted, observed, lo, hi
    profile: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def predicted_a(X: np.ndarray, W: np.ndarray, chunk: int = 2048, half_nu: np.ndarray | None = None) -> np.ndarray:
    """Posterior mean of A's expected score per pair (mean over draws of ``sampler.expected_score``:
    P(A preferred), plus half P(tie) for a profile with Davidson's ties, ``half_nu`` per draw)."""
    X = np.asarray(X, dtype=np.float32)
    halfT = np.ascontiguousarray(0.5 * np.asarray(W, dtype=np.float32).T)
    hn = None if half_nu is None else np.asarray(half_nu, dtype=np.float32).reshape(1, -1)
    out = np.empty(X.shape[0])
    for s in range(0, X.shape[0], chunk):
        out[s:s + chunk] = 0.5 + 0.5 * score_margin(X[s:s + chunk] @ halfT, hn).mean(axis=1, dtype=np.float64)
    return out


def calibration_arrays(p: np.ndarray, y: np.ndarray, bins: int = 10, prob: float = INTERVAL_PROB) -> tuple[list[dict], float]:
    """Equal-count bins of predicted P against observed outcomes y (1, 0, 1/2)."""
    order = np.argsort(p, kind="stable")
    out, gap = [], 0.0
    for b, part in enumerate(np.array_split(order, min(bins, len(order)))):
        if not len(part):
            continue
        pred, obs = float(p[part].mean()), float(y[part].mean())
        lo, hi = jeffreys(float(y[part].sum()), len(part), prob)
        out.append({"bin": b + 1, "pairs": int(len(part)), "predicted": pred, "observed": obs, "lo": lo, "hi": hi})
        gap += len(part) * abs(obs - pred)
    return out, gap / max(len(p), 1)


def calibration(store, dataset: str, judges: Sequence[str] | None = None, *, scope: str = "all",
                feature_source: str | None = None, method: str | None = None, bins: int = 10,
                prob: float = INTERVAL_PROB, pairs: PairSet | None = None) -> list[Calibration]:
    """Predicted against observed P(A preferred) by decile of the prediction, for each judge with a profile."""
    given = pairs
    if judges is None:
        rows = store.profiles(dataset=dataset, scope=scope, feature_source=feature_source, method=method,
                              columns=["judge"])
        judges = sorted({r["judge"] for r in rows})
    out = []
    cache: dict[str, PairSet] = {}
    for judge in judges:
        prof = profile_for(store, dataset, scope, judge, feature_source=feature_source, method=method)
        src = prof["feature_source"]
        pairs = cache.get(src) or cache.setdefault(src, _pairs_for(store, dataset, src, scope, given))
        outcomes = pairs.outcomes(store, judge)
        idx = np.array([i for i, s in enumerate(pairs.sample_ids) if s in outcomes], dtype=int)
        if not len(idx):
            continue
        W, intercept = profile_draws(prof, pairs.attributes)
        X = oriented(pairs, idx, np.ones(len(idx)), intercept)
        y = np.array([outcomes[pairs.sample_ids[i]] for i in idx])
        rows, ece = calibration_arrays(predicted_a(X, W, half_nu=tie_draws(prof)), y, bins, prob)
        out.append(Calibration(judge=judge, scope=scope, pairs=len(idx), ece=ece, bins=rows,
                               profile=provenance(prof, W.shape[0])))
    return out


def datasets(store) -> list[str]:
    """Datasets with at least one profile whose feature set the dataset has (so there are pairs to simulate)."""
    have = {(r["dataset"], r["feature_source"]) for r in store.profiles(columns=["dataset", "feature_source"])}
    return sorted({d for d, src in have if store.has_features(d, src)})


def simulation_options(store, dataset: str) -> dict[str, Any]:
    """What the simulator can be asked about a dataset: per feature set, scope and method the judges
    with a profile (feature sets the dataset has, scopes in catalogue order, fitted methods first),
    and the responding models with their pair counts; ``unmeasured``: per feature set, scope, method
    and judge, the attributes its profile has no estimate for (not offered to inject)."""
    sources = {r["source"] for r in store.feature_sources(dataset)}
    rows = [r for r in store.profiles(dataset=dataset, columns=["feature_source", "scope", "method", "judge",
                                                                "attributes", "accuracy", "provenance"])
            if r["feature_source"] in sources]
    index: dict[str, dict[str, dict[str, list[str]]]] = {}
    for src in sorted({r["feature_source"] for r in rows}):
        mine = [r for r in rows if r["feature_source"] == src]
        index[src] = {
            sc: {m: sorted({r["judge"] for r in mine if r["scope"] == sc and r["method"] == m})
                 for m in sorted({r["method"] for r in mine if r["scope"] == sc}, key=method_rank)}
            for sc in scopes.order(r["scope"] for r in mine)
        }
    missing: dict[str, dict[str, dict[str, dict[str, list[str]]]]] = {}
    for r in rows:
        missing.setdefault(r["feature_source"], {}).setdefault(r["scope"], {}).setdefault(r["method"], {})[r["judge"]] = \
            unmeasured(r)
    return {"feature_sources": list(index), "index": index, "models": models(store, dataset), "unmeasured": missing}


# ---------------------------------------------------------------- what the Simulator page shows
# (dashboard/data_simulator.py wraps each in a cache: the page calls one function per result)


def _estimate_row(judge: str, stage: str, e) -> dict[str, Any]:
    return {"judge": judge, "stage": stage, "mean": e.mean, "lo": e.lo, "hi": e.hi,
            "pred_lo": e.pred_lo, "pred_hi": e.pred_hi}


def simulation_frames(sims: Sequence[Any]) -> dict[str, Any]:
    """``simulate``'s results for several judges as the page's tables: per judge the observed and
    predicted win ``rates`` (before and after), each attribute's ``contributions``, and the
    ``provenance`` of the profiles used; ``results`` the results themselves."""
    import pandas as pd

    rates, contrib, prov = [], [], []
    for s in sims:
        if s.observed is not None:
            rates.append({"judge": s.judge, "stage": "observed", "mean": s.observed, "lo": s.observed_lo,
                          "hi": s.observed_hi, "pred_lo": None, "pred_hi": None})
        rates.append(_estimate_row(s.judge, "predicted before", s.before))
        rates.append(_estimate_row(s.judge, "predicted after", s.after))
        contrib += [{"judge": s.judge, "attribute": c.attribute, "label": c.label, "direction": c.direction,
                     "rate": c.rate, "applies": c.applies, "mean": c.mean, "lo": c.lo, "hi": c.hi}
                    for c in s.contributions]
        prov.append({**s.profile, "pairs": s.pairs, "labelled": s.labelled,
                     "pairs_fingerprint": s.settings["pairs_fingerprint"], "seconds": s.settings["seconds"]})
    return {"results": list(sims), "rates": pd.DataFrame(rates), "contributions": pd.DataFrame(contrib),
            "provenance": pd.DataFrame(prov)}


def ranking_frames(r: Any, k: int = 5) -> dict[str, Any]:
    """``injection_ranking``'s gains as a ``frame`` (best first) and its top and bottom ``k``
    (``extremes``, the chart's rows); ``ranking`` the result itself."""
    import pandas as pd

    frame = pd.DataFrame([{"attribute": g.attribute, "label": g.label, "mean": g.mean, "lo": g.lo, "hi": g.hi,
                           "p_positive": g.p_positive, "applies": g.applies} for g in r.gains])
    top = frame.head(k).assign(part=f"top {k}")
    bottom = frame.tail(k).iloc[::-1].assign(part=f"bottom {k}")
    return {"ranking": r, "frame": frame, "extremes": pd.concat([top, bottom], ignore_index=True)}


def leaderboard_frames(lb: Any) -> dict[str, Any]:
    """``controlled_win_rates``' rows as a ``frame``, with its ``warnings``."""
    import pandas as pd

    return {"leaderboard": lb, "frame": pd.DataFrame([r.__dict__ for r in lb.rows]), "warnings": lb.warnings}


def calibration_frames(cals: Sequence[Any]) -> dict[str, Any]:
    """``calibration``'s results as the deciles of every judge (``bins``) and each judge's
    calibration error (``summary``)."""
    import pandas as pd

    bins = pd.DataFrame([{"judge": c.judge, **b} for c in cals for b in c.bins])
    summary = pd.DataFrame([{"judge": c.judge, "pairs": c.pairs, "ece": c.ece, "method": c.profile["method"]}
                            for c in cals])
    return {"bins": bins, "summary": summary}
