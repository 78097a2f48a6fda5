"""Fitting a judge's profile: the posterior of its attribute weights in one scenario group.

The model is the paper's: Bayesian logistic regression, label 1 when the judge preferred
response A, features the comparison values in {-1, 0, +1} (``catalogue.attribute_keys()``
order), no intercept by default, and an independent Laplace(0, b) prior on every weight
(b = 0.1 unless configured). Two samplers target the same posterior:

- :func:`fit_exact`: NUTS through PyMC (nutpie when it works, PyMC's own NUTS otherwise).
  The reference; a few seconds per judge.
- ``sampler.fit_fast``: batched split HMC in numpy over all judges (and chains, cross-validation
  folds and scenario groups) at once (``core/sampler.py``, the numerical core: exact in the
  MCMC sense, checked against long NUTS runs in ``tests/test_fit.py``); ``sample_many`` is what
  :func:`fit_groups` drives.

:func:`fit_profiles` turns either posterior into :class:`Profile` records (summaries,
k-fold accuracy, convergence diagnostics, provenance); :func:`profile_row` shapes one for
``Store.save_profile``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import special

from . import catalogue
from . import scopes as scope_rules
from .featureset import PUBLISHED
from .intervals import INTERVAL_PROB, tails
from .profile import (INTERCEPT, MIN_DIFFERING, TIE, display_percent, is_attribute_term, is_position,
                      load_published_profiles)
from .sampler import (DEFAULT_PRIOR_SCALE, FAST_SAMPLER, INTERCEPT_SCALE, LABEL_MODES, TIE_MODELS, TIE_SCALE,
                      Posterior, design_matrix, label_vector, outcome_probabilities, prior_vectors, rhat_ess,
                      sample_many, soft_targets)

#: Posterior draws kept on each Profile (thinned, float32) for judge-minus-judge intervals.
KEEP_DRAWS = 1000

METHODS = ("fast", "exact")
#: Warm-up iterations of the fast path's main fits. 300 saves 13% of the gradients but lowered the
#: paper-scale benchmark's min bulk ESS from 866 to 532 (max R-hat 1.013 -> 1.018): kept at 500.
FAST_TUNE = 500


# --------------------------------------------------------------------------- exact: NUTS

_compiled: dict[tuple, Any] = {}
_compile_lock = threading.Lock()


def _pymc_model(X: np.ndarray, y: np.ndarray, prior_scale: float, intercept: bool, ties: bool = False):
    """The model in PyMC. ``X`` is the sampler's design (``design_matrix``: the position column first when
    ``intercept``, a zero column last when ``ties``); ``y`` is (n, 2) float, per row the target P(A) (1 A,
    0 B, the judge's own probability for a soft label) and 1 where the label is a tie (tie model only).

    The likelihood is the expected log likelihood under the target, t log P(A) + (1 - t) log P(B)
    (log P(tie) for a tie), as a ``pm.Potential``: for a hard label it is log P(label) itself, so hard
    and soft labels share one compiled model (``test_fit`` checks it against ``pm.Bernoulli`` and
    ``pm.Categorical`` at random points). With z the usual logit: binary, log P(A) = -log(1 + e^-z) and
    log P(B) = -log(1 + e^z), so the sum is t z - log(1 + e^z). Davidson's tie model is a softmax over
    (h, -h, log nu) with h = z/2: P(A) = e^h / (e^h + e^-h + nu), so log P(A), log P(B), log P(tie) are
    h, -h, log nu minus L = log(e^h + e^-h + nu); with nu -> 0 it is the logistic model. L is written
    as m + log(e^(|h|-m) + e^(-|h|-m) + e^(log nu - m)), m = max(|h|, log nu), which never overflows.
    In closed form a gradient costs less than through ``pm.Categorical`` (a stack, a softmax and a
    check that it sums to 1): 80 -> 32 us (tie model with position, n = 400) and 35 -> 23 us (binary),
    nutpie CPU time per leapfrog step, measured on a loaded machine (load ~8 on 2 cores).
    """
    import pymc as pm
    import pytensor.tensor as pt

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
        t = yd[:, 0]
        if ties:
            theta = pm.Normal("theta", 0.0, TIE_SCALE)
            tie = yd[:, 1]
            h = 0.5 * eta
            a = pt.abs(h)
            m = pt.maximum(a, theta)
            lse = m + pt.log(pt.exp(a - m) + pt.exp(-a - m) + pt.exp(theta - m))
            ll = (1.0 - tie) * (2.0 * t - 1.0) * h + tie * theta - lse
        else:
            ll = t * eta - pt.log1pexp(eta)
        pm.Potential("obs", ll.sum())
    return model


def _nutpie_compiled(X: np.ndarray, y: np.ndarray, prior_scale: float, intercept: bool, ties: bool = False):
    """A compiled nutpie model for this shape of problem, reused with new data (hard or soft labels).

    ``with_data`` swaps X, y, b (and the position column) without recompiling: the rows are free, the number
    of parameters is not (nutpie bakes it into its compiled functions), so each (d, intercept, ties) compiles
    once per process. Where the CPU goes (n = 400, d = 29, load ~5 on 2 cores): PyTensor's graph, rewrites and
    gradient ~1.5 s; the inner numba functions PyTensor generates load from its own cache
    (``~/.pytensor/numba``); nutpie's logp ``numba.cfunc`` around them ~12 s in a fresh process (of which
    ~4 s is numba compiling the error path of its ``out[...] = grad`` and the string formatting behind it,
    once per process, and ~2 s numba's ``literal_unroll`` over the shared data) and ~7 s for a second shape
    in the same process; its "expand" cfunc ~0.8 s (an identity here: ``w``, ``intercept`` and ``theta`` are
    untransformed and there are no deterministics). The cfuncs cannot be cached on disk: numba keys them by
    a pickle of their closure, which holds a dispatcher with a fresh id per process (``cache=True`` wrote a
    new entry every run and never hit one).
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


def exact_inputs(X: Any, y: Any, *, intercept: bool = False, position: Any = None, ties: str = "drop",
                 prob: Any = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """What :func:`fit_exact` hands :func:`_pymc_model`: (design, (n, 2) targets, tie model?), the rows without a
    label dropped. The arguments are :func:`fit_exact`'s (the NUTS references of the tests rebuild a model from
    them to check that their stored posterior is the current model's)."""
    tie_model = ties == "davidson"
    Xd = design_matrix(X, intercept, position, tie_model)
    yv = label_vector(y, Xd.shape[0], ties)
    if yv.shape[1] != 1:
        raise ValueError("fit_exact fits one judge: y must be a single column")
    target = None if prob is None else soft_targets(yv, prob)[0][:, 0]
    keep = ~np.isnan(yv[:, 0])
    Xd, yv = Xd[keep], yv[keep, 0]
    # (target P(A), tie) per row: a hard label's target is 1 or 0, a soft one's the judge's P(A), a tie's unused
    t = np.where(yv == 1, 1.0, 0.0)
    if target is not None:
        t = np.where(np.isfinite(target[keep]), target[keep], t)
    return Xd, np.stack([t, (yv == 0.5).astype(float)], axis=1), tie_model


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
    prob: Any = None,
    target_accept: float = 0.8,
) -> Posterior:
    """Reference posterior by NUTS: ``Posterior.draws`` is (chains * draws, d).

    ``backend``: ``"nutpie"`` (about 3x faster than PyMC's NUTS here), ``"pymc"``, or
    ``"auto"`` (nutpie, falling back to PyMC if nutpie fails). Rows without a label (NaN) are
    dropped: one judge, one design. ``intercept`` adds the position term (its column
    ``position``, default +1: A shown first); ``ties="davidson"`` keeps ties (label 0.5) as an
    outcome and appends the tie parameter log nu as the last coordinate of the draws. ``prob`` (like
    y, NaN where none) is the judge's own P(A) per label, used as a soft label (``sampler.soft_targets``).
    ``target_accept``: the mean acceptance NUTS tunes its step size to (0.8, the default of nutpie, PyMC
    and Stan). Any value samples the same posterior exactly; on this model (the Laplace prior's kink at 0
    limits the step size) 0.6 doubles the step, halves the tree and gives ~1.3x the bulk ESS per gradient,
    which the long reference runs in the tests use.
    """
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), not {target_accept}")
    Xd, yv, tie_model = exact_inputs(X, y, intercept=intercept, position=position, ties=ties, prob=prob)
    cores = cores or min(chains, os.cpu_count() or 1)
    settings = dict(prior_scale=prior_scale, draws=draws, tune=tune, chains=chains, seed=seed, intercept=intercept,
                    ties=ties, target_accept=target_accept)
    t0 = time.perf_counter()
    trace, sampler, errors = None, None, []
    if backend in ("auto", "nutpie"):
        try:
            import nutpie

            compiled = _nutpie_compiled(Xd, yv, prior_scale, intercept, tie_model)
            # save_warmup=False: nothing here reads the warm-up, and storing it cost ~10% of the sampling's CPU
            # (n = 400: 12.1 -> 10.9 CPU-s); the kept draws are the same for a seed either way
            trace = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                                  progress_bar=False, target_accept=target_accept, save_warmup=False)
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
                                  progressbar=False, compute_convergence_checks=False, target_accept=target_accept)
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
    #: observations fitted as soft labels (the judge's own P(A)), and how many of those P(A) were on
    #: the other side of their label's choice (used as given, counted: ``sampler.soft_targets``)
    soft: int = 0
    soft_conflicts: int = 0

    @property
    def percent(self) -> list[float]:
        """The posterior-mean weights on the paper's display scale, 100 * sigmoid(w)."""
        return [float(v) for v in display_percent(np.asarray(self.mean))]

    def weights(self) -> dict[str, float]:
        return dict(zip(self.attributes, self.mean))


_VERSIONED = ("numpy", "scipy", "numba", "arviz", "pymc", "pytensor", "nutpie")


def library_versions() -> dict[str, str]:
    """Versions of the numerical stack (read from package metadata: no slow imports; numba compiles
    the fast sampler's kernels). Read once per process (a metadata lookup scans the site-packages
    folder: ~20 ms, paid on every simulation otherwise); a fresh dict each call."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> tuple[tuple[str, str], ...]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return tuple(out.items())


def inputs_key(X: np.ndarray, y: np.ndarray, requested: Mapping[str, Any]) -> str:
    """What a fit of one judge in one scope rests on (stored as ``provenance["inputs"]``): the
    design, the judge's labels (1 A, 0 B, NaN tie or none) and the fit's requested settings. The
    dissection refits only when it changed; the simulator flags a profile stale when it did."""
    x_digest = hashlib.sha256(np.ascontiguousarray(X, dtype=np.float64).tobytes()).hexdigest()
    return fingerprint(np.frombuffer(x_digest.encode(), dtype=np.uint8), y, requested)


def fingerprint(X: np.ndarray, y: np.ndarray, settings: Mapping[str, Any], prob: Any = None) -> str:
    """sha256 over the design, one judge's labels and the settings that shape the posterior.

    Two profiles with the same fingerprint were fitted to the same data the same way; a
    changed label, feature, prior or sampler setting gives a new one, so stale results show.
    ``prob``: the soft labels' targets the fit used (NaN elsewhere), when it used any.
    """
    h = hashlib.sha256()
    X = np.asarray(X)
    h.update(f"X{X.shape}".encode())
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    y = np.asarray(y, dtype=np.float64)
    h.update(f"y{y.shape}".encode())
    h.update(np.where(np.isnan(y), -1.0, y).tobytes())
    if prob is not None and np.isfinite(prob).any():
        p = np.asarray(prob, dtype=np.float64)
        h.update(b"soft" + np.where(np.isnan(p), -1.0, p).tobytes())
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


def _frequency_predictor(key_train: np.ndarray, y_train: np.ndarray, key_test: np.ndarray):
    """Outcome frequencies (A, B, tie; add-one smoothed) per value of an orientation key in {-1, 0, +1},
    oriented so that +1 means "the keyed side is A": a key of -1 swaps A and B. Rows with key 0 get
    the key-free frequencies. ``y_train`` is (rows, J), one column per judge: returns (P(A), P(B),
    P(tie)), each (test rows, J). The tie outcome counts only for a judge that tied in training."""
    lab = ~np.isnan(y_train)
    y = np.where(lab, y_train, -1.0)
    a, b, t = (y == 1.0), (y == 0.0), (y == 0.5)
    allc = np.stack([a.sum(0), b.sum(0), t.sum(0)]).astype(float)  # (3, J)
    kp, kn = (key_train > 0)[:, None], (key_train < 0)[:, None]
    # oriented outcome: the keyed side wins, loses, or ties
    counts = np.stack([(a & kp).sum(0) + (b & kn).sum(0), (b & kp).sum(0) + (a & kn).sum(0),
                       (t & (kp | kn)).sum(0)]).astype(float)
    tie_seen = allc[2] > 0
    m = np.where(tie_seen, 3.0, 2.0)

    def smoothed(c):
        out = (c + 1.0) / (c[0] + c[1] + np.where(tie_seen, c[2], 0.0) + m)
        out[2] = np.where(tie_seen, out[2], 0.0)
        return out

    (pw, pl, pt), plain = smoothed(counts), smoothed(allc)
    kt = np.asarray(key_test, dtype=float)[:, None]
    pa = np.where(kt > 0, pw, np.where(kt < 0, pl, plain[0]))
    pb = np.where(kt > 0, pl, np.where(kt < 0, pw, plain[1]))
    ptt = np.where(kt == 0, plain[2], pt)
    return pa, pb, ptt


def baseline_scores(X: np.ndarray, Y: np.ndarray, folds: list[np.ndarray], *, position: np.ndarray | None = None,
                    length: np.ndarray | None = None, ties: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{baseline: (accuracy (J,), log loss (J,))} on the same folds and labels as a profile's.

    ``position`` is each row's slot column (+1 A shown first; default all +1), ``length`` each
    row's length comparison (+1 A clearly longer, -1 B, 0 neither; None: no length baseline).
    All judges at once (one (rows, J) pass per fold and baseline)."""
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
            pa, pb, pt = _frequency_predictor(key[train], Y[train], key[test])
            h, dec, nll, cnt = _score(pa, pb, pt, Y[test], ties)
            hits += h.sum(axis=0)
            n_acc += dec.sum(axis=0)
            loss += nll.sum(axis=0)
            n_loss += cnt.sum(axis=0)
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
    lo, hi = np.quantile(flat, tails(interval_prob), axis=1)
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
    None: every row its own sample); ``prob`` (rows, J) the judge's own P(A) where the row's
    verdict came with one (NaN elsewhere; None: none), a soft label (``sampler.soft_targets``)."""

    X: Any
    Y: Any
    position: Any = None
    sample: Any = None
    prob: Any = None


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
    labels: str = "soft",
) -> dict[Any, list[Profile]]:
    """Profiles for the same judges in several scopes: {scope: (X, Y) or FitInput} -> {scope: [Profile per judge]}.

    Y is (n, J) with columns in the order of ``judges`` (1 = A preferred, 0 = B, 0.5 = tie,
    NaN = no label). ``position`` (or its old name ``intercept``) adds the "shown first" term
    (:data:`POSITION`, first of the terms), whose column is the task's ``position``; ``ties``
    is "drop" (binary logistic, the paper) or "davidson" (ties an outcome; :data:`TIE`, log nu,
    is the last term). ``method="fast"`` samples every scope, judge and fold in a few padded batches
    (defaults: 4 chains x 1000 draws after FAST_TUNE = 500 warm-up); ``"exact"`` runs NUTS per judge
    and fold (defaults 4 x 2000 after 1000). ``folds`` = 0 or 1 skips cross-validation.
    The fast path's fold fits run one chain of a quarter of the draws: they only need a
    posterior mean, whose Monte-Carlo error (sd/15) is then far below its sampling error.
    Held-out accuracy and log loss come with the :data:`BASELINES` on the same folds.
    ``labels="soft"`` (default) fits a label that carries the judge's own P(A) (a task's ``prob``)
    by its expected log likelihood; ``"hard"`` by its choice alone. Held-out accuracy and log loss
    are scored against the choices either way, so soft and hard fits and the baselines compare.
    ``workers`` threads share the fast path's batches (default: one per core; workloads too
    small to gain from threads run on one).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if ties not in TIE_MODELS:
        raise ValueError(f"ties must be one of {TIE_MODELS}, not {ties!r}")
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, not {labels!r}")
    intercept = bool(intercept if position is None else position)
    tie_model = ties == "davidson"
    draws = draws if draws is not None else (1000 if method == "fast" else 2000)
    tune = tune if tune is not None else (FAST_TUNE if method == "fast" else 1000)
    keys = list(tasks)
    data = []
    for key in keys:
        t = _as_input(tasks[key])
        Xd = design_matrix(t.X, intercept, t.position, tie_model)
        Yl = label_vector(t.Y, Xd.shape[0], ties)
        if Yl.shape[1] != len(judges):
            raise ValueError(f"scope {key!r}: {Yl.shape[1]} label columns for {len(judges)} judges")
        pos = np.ones(Xd.shape[0]) if t.position is None else np.asarray(t.position, dtype=float)
        sample = np.arange(Xd.shape[0]) if t.sample is None else np.asarray(t.sample)
        Pl, conflicts = None, np.zeros(len(judges), dtype=int)
        if labels == "soft" and t.prob is not None:
            Pl, prob = np.full(Yl.shape, np.nan), np.asarray(t.prob, dtype=float).reshape(Yl.shape)
            for j in range(len(judges)):  # per judge, to count each one's contradicting probabilities
                Pl[:, [j]], conflicts[j] = soft_targets(Yl[:, [j]], prob[:, [j]])
            if not np.isfinite(Pl).any():
                Pl = None
        data.append((np.asarray(t.X, dtype=float), Xd, Yl, pos, sample, Pl, conflicts))
    if not data:
        return {}
    d = data[0][1].shape[1]
    names = _attribute_names(d, intercept, attributes, tie_model)
    attr_names = [k for k in names if is_attribute_term(k)]
    J = len(judges)
    fold_sets = [_fold_index(Xd.shape[0], folds, seed, None if sample is None else sample) if folds >= 2 else []
                 for _, Xd, _, _, sample, _, _ in data]
    fold_draws, fold_tune, fold_chains = max(250, draws // 4), max(100, tune // 5), 1
    settings = dict(method=method, prior_scale=prior_scale, draws=draws, tune=tune, chains=chains, seed=seed,
                    folds=folds, intercept=intercept, interval_prob=interval_prob, ties=ties, labels=labels)
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
        lap, gprec = prior_vectors(d, prior_scale, intercept, tie_model)

        def consume_main(g: int, post: Posterior) -> tuple:
            # Summarise in the worker as soon as a batch is done, so that the draws of all
            # scopes never sit in memory together (528 profiles x 4000 draws is ~0.5 GB).
            dg = post.diagnostics
            info = [{"accept_rate": dg["accept_rate"][j], "step_size": dg["step_size"][j],
                     "divergences": int(dg["divergences"][j]), "mean_steps": dg["mean_steps"]} for j in range(J)]
            return summarise(post.by_chain()), info, dg["metric_var"]

        # Missing labels in a judge's column are passed as NaN and masked inside the sampler.
        main = sample_many([(Xd, Yl, Pl) for _, Xd, Yl, _, _, Pl, _ in data], lap=lap, gprec=gprec, draws=draws, tune=tune,
                            chains=chains, seed=seed, settings=settings, workers=workers, consume=consume_main,
                            ties=tie_model)
        summaries = [m[0] for m in main]
        post_info = [m[1] for m in main]
        # Cross-validation: each (judge, fold) pair is a pseudo-judge on the same X whose
        # held-out rows are unlabelled (NaN), so all of a scope's fold fits are one batch.
        # They start from the full-data metric, widened for the smaller training set, and
        # adapt only their step size.
        fold_problems, fold_init, owners = [], [], []
        for g, (_, Xd, Yl, _, _, Pl, _) in enumerate(data):
            k = len(fold_sets[g])
            if not k:
                continue
            Yf = np.repeat(Yl, k, axis=1)  # column j * k + f: judge j without fold f
            for f, test in enumerate(fold_sets[g]):
                Yf[np.ix_(test, np.arange(J) * k + f)] = np.nan
            fold_problems.append((Xd, Yf, None if Pl is None else np.repeat(Pl, k, axis=1)))
            fold_init.append(np.repeat(main[g][2], k, axis=0) * k / (k - 1))
            owners.append(g)
        means = sample_many(fold_problems, lap=lap, gprec=gprec, draws=fold_draws, tune=fold_tune,
                             chains=fold_chains, seed=[seed, 1], settings=settings, init_var=fold_init,
                             adapt_metric=False, workers=workers, consume=lambda i, post: post.mean, ties=tie_model)
        fold_means = [[] for _ in data]
        for g, m in zip(owners, means):
            k = len(fold_sets[g])
            m = m.reshape(J, k, d)
            fold_means[g] = [m[:, f] for f in range(k)]
    else:
        for g, (X_raw, Xd, Yl, pos, _, Pl, _) in enumerate(data):
            per_judge, info, means = [], [], [np.zeros((J, d)) for _ in fold_sets[g]]
            for j in range(J):
                pj = None if Pl is None else Pl[:, j]
                p = fit_exact(X_raw, Yl[:, j], prior_scale=prior_scale, draws=draws, tune=tune, chains=chains,
                              seed=seed, intercept=intercept, position=pos, ties=ties, prob=pj)
                settings["sampler"] = p.sampler
                per_judge.append(p.by_chain())
                info.append(dict(p.diagnostics))
                for f, test in enumerate(fold_sets[g]):
                    train = np.setdiff1d(np.arange(Xd.shape[0]), test)
                    means[f][j] = fit_exact(X_raw[train], Yl[train, j], prior_scale=prior_scale, draws=draws,
                                            tune=tune, chains=chains, seed=seed + 1 + f, intercept=intercept,
                                            position=pos[train], ties=ties,
                                            prob=None if pj is None else pj[train]).mean
            summaries.append(summarise(np.stack(per_judge)))
            post_info.append(info)
            fold_means.append(means)
    seconds = time.perf_counter() - t0
    versions = library_versions()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result: dict[Any, list[Profile]] = {}
    length_col = attr_names.index(LENGTH_ATTRIBUTE) if LENGTH_ATTRIBUTE in attr_names else None
    for g, key in enumerate(keys):
        X_raw, Xd, Yl, pos, sample, Pl, conflicts = data[g]
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
                    fingerprint=fingerprint(Xd, Yl[:, j], settings, None if Pl is None else Pl[:, j]),
                    settings=dict(settings),
                    diagnostics=diag,
                    fitted_at=stamp,
                    baselines={k: {"accuracy": _clean(v[0][j]), "log_loss": _clean(v[1][j])} for k, v in base.items()},
                    differing=[next(counts) if is_attribute_term(k) else None for k in names],
                    tie_model=ties,
                    ties=int((Yl[lab, j] == 0.5).sum()),
                    observations=int(lab.sum()),
                    soft=0 if Pl is None else int(np.isfinite(Pl[:, j]).sum()),
                    soft_conflicts=int(conflicts[j]),
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
    prob: Any = None,
    labels: str = "soft",
) -> list[Profile]:
    """One Profile per judge, for judges sharing the feature matrix X (one scope).

    Y is (n, J), one column per judge in ``judges`` (or (n,) for one judge); ``position`` is
    the rows' slot column (+1 A shown first, -1 B first), which adds the position term; the
    other options are :func:`fit_groups`'s (``prob``: the judges' own P(A) per label, like Y).
    """
    task = FitInput(X, Y, None if position is None else position, prob=prob)
    return fit_groups(
        {None: task}, judges, method=method, prior_scale=prior_scale, draws=draws, tune=tune, chains=chains,
        seed=seed, folds=folds, intercept=intercept or position is not None, ties=ties, attributes=attributes,
        interval_prob=interval_prob, keep_draws=keep_draws, workers=workers, labels=labels,
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
            "labels": {"mode": profile.settings.get("labels", "hard"), "soft": profile.soft,
                       "conflicts": profile.soft_conflicts},
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
            labels: str = "soft",
            on_progress: Callable[[str, int, int], None] | None = None) -> DissectionReport:
    """Fit and store a profile for every (scope, judge) of a dataset with enough labels.

    The model (see :func:`scope_input`): by default every profile carries the position term
    ("shown first"), a judge's verdicts in both orders enter as two observations, and ties are an
    outcome (Davidson) in scopes where the judge tied; ``position=False, ties="drop"`` is the
    paper's model (the combined verdict, no position term, ties dropped). ``labels="soft"`` (default)
    fits a label with the judge's own P(A) by that probability (see :func:`fit_groups`); "hard" by its
    choice alone, as the paper.

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
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {LABEL_MODES}, not {labels!r}")
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
            req = _requested_for(requested, labels, d, j, position)
            key = inputs_key(d.X, d.Y[:, j], req)
            if not force and stored.get(judge) == key:
                report.unchanged.append((scope, judge))
            else:
                todo.append(j)
                keys.append((key, req))
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
                            seed=seed, folds=folds, position=position, ties=tie_model, labels=labels,
                            attributes=next(iter(tasks.values()))[0].attributes)
        rows = []
        for scope, profiles in fitted.items():
            d, keys, _, _ = tasks[scope]
            for judge, (key, req), prof in zip(names, keys, profiles):
                row = profile_row(prof, dataset, scope, judge, feature_source)
                row["provenance"]["inputs"] = key
                row["provenance"]["requested"] = req  # so the key can be recomputed on later data
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


def _requested_for(requested: dict[str, Any], labels: str, design, j: int, position: bool) -> dict[str, Any]:
    """The settings one judge's input key rests on (:func:`requested_with_probs` on the judge's
    P(A) column as the fit takes it, :func:`_design_probs`)."""
    p = _design_probs(design, position)
    return requested_with_probs(requested, labels, None if p is None else p[:, j])


def _design_probs(design, position: bool) -> np.ndarray | None:
    """The judges' own P(A) per sample as a fit takes it from a ``Store.designs`` Design: with the
    position term the A-first row's (``P_ab``: only labels without per-order verdicts, whose P(A)
    pools both orders), else the combined verdict's (``P``)."""
    if position and design.Y_ab is not None:
        return getattr(design, "P_ab", None)
    return getattr(design, "P", None)


def requested_with_probs(requested: Mapping[str, Any], labels: str, prob: np.ndarray | None) -> dict[str, Any]:
    """The requested settings plus what soft labels add to a judge's input key. Soft labels enter only
    where the judge gave probabilities: then ``labels`` and a digest of them (so a changed P(A) refits,
    and the simulator, which recomputes the key from the stored ``requested``, sees it); elsewhere the
    key is the hard fit's, as before soft labels existed."""
    base = {k: v for k, v in requested.items() if k not in ("labels", "prob_a")}
    col = None if prob is None else np.asarray(prob, dtype=float)
    if labels == "hard" or col is None or not np.isfinite(col).any():
        return base
    digest = hashlib.sha256(np.where(np.isnan(col), -1.0, col).tobytes()).hexdigest()[:16]
    return {**base, "labels": labels, "prob_a": digest}


def scope_input(design, judges: Sequence[int], *, position: bool = True, ties: str = "davidson") -> tuple[FitInput, str]:
    """The rows a scope's fit rests on, and the tie model it uses, from a ``Store.designs`` Design.

    With ``position``: a row per presentation order that has verdicts. The A-first verdicts (or
    the label itself, where no per-order verdicts were stored) with the position column +1; where
    any of these judges has B-first verdicts, a second copy of the samples with those verdicts
    and the position column -1 (in the A/B orientation the features stay; in the shown-first
    orientation they are negated and the position term stays). Without: one row per sample, the
    combined verdict (the paper's model). The judges' own P(A) (``prob``) goes with a row whose
    verdict is the label itself: the combined verdict, or the A-first row of a label without
    per-order verdicts; a label given in both orders pools its P(A) over them, so its two rows
    stay hard. ``ties="davidson"`` keeps ties as an outcome where one
    of these judges tied in the scope, else the binary model is used ("drop")."""
    X = np.asarray(design.X, dtype=float)
    n = X.shape[0]
    idx = list(judges)
    probs = _design_probs(design, position)
    p_sel = None if probs is None else probs[:, idx]
    if position and design.Y_ab is not None:
        y_ab, y_ba = design.Y_ab[:, idx], design.Y_ba[:, idx]
        if (~np.isnan(y_ba)).any():
            p = None if p_sel is None else np.vstack([p_sel, np.full_like(p_sel, np.nan)])
            task = FitInput(np.vstack([X, X]), np.vstack([y_ab, y_ba]), np.r_[np.ones(n), -np.ones(n)],
                            np.r_[np.arange(n), np.arange(n)], p)
        else:
            task = FitInput(X, y_ab, np.ones(n), np.arange(n), p_sel)
    else:
        y = design.Y_y[:, idx] if design.Y_y is not None else design.Y[:, idx]
        task = FitInput(X, y, None, np.arange(n), p_sel)
    tie_model = "davidson" if ties == "davidson" and bool((np.asarray(task.Y) == 0.5).any()) else "drop"
    return task, tie_model


def import_published(store, directory: str | Path, *, dataset: str = "published",
                     feature_source: str = PUBLISHED.name) -> int:
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
