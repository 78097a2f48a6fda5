"""The profile engine: the fast sampler against NUTS, calibration, profiles and records (the sampler's own
pieces are tested in test_sampler.py, the synthetic data in test_synthetic.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import catalogue, fit, sampler, synthetic
from core.profile import INTERCEPT, POSITION, TIE, beats_baselines, best_baseline, display_percent
from core.store import Store
from tests.nuts_references import (BINARY, NUTS_ACCEPT, NUTS_TUNE, PROBLEMS, logp_and_gradient, soft_problem,
                                   sparse_weights, verified)

D = len(catalogue.attribute_keys())


# --------------------------------------------------------------------------- faithfulness to NUTS

# The fast sampler against long NUTS runs on problems like real ones. The NUTS reference posteriors are stored
# (tests/fixtures/nuts_references.json, written by `python -m tests.nuts_references`, whose module owns the
# problems, the NUTS settings and why each reference's precision suffices for the bars below): each test first
# shows that the stored posterior is the current model's posterior of the current data (`verified`: data sha256,
# log density and gradient at stored points) and that its diagnostics hold, then runs the fast sampler live.


def _reference(name: str) -> tuple[dict, dict]:
    """(data, stored reference) of a problem, its diagnostics asserted as when the tests ran it: no divergence,
    the draws' shape, and the least bulk ESS the precision of the comparison rests on."""
    problem = PROBLEMS[name]
    data = problem.data()
    ref = verified(name, data)
    assert ref["draws_shape"] == [problem.chains * problem.draws, problem.dimension()]
    assert ref["divergences"] == 0
    if problem.ess_bar is not None:
        assert ref["min_bulk_ess"] >= problem.ess_bar  # the precision the comments in nuts_references rest on
    return data, ref


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")  # the model check's C backend: speed only
@pytest.mark.parametrize("name", list(BINARY))
def test_fast_sampler_matches_long_nuts(name):
    data, ref = _reference(name)
    fast = sampler.fit_fast(data["X"], data["y"], draws=10000, tune=1000, chains=4, seed=2)
    m_fast, s_fast = fast.mean[0], fast.sd[0]
    m_ref, s_ref = np.array(ref["mean"]), np.array(ref["sd"])
    mean_gap = np.abs(m_fast - m_ref).max()
    sd_gap = np.abs(s_fast / s_ref - 1).max()
    print(f"{name}: max |mean diff| {mean_gap:.4f}, max relative sd diff {sd_gap:.3f}, "
          f"NUTS {ref['sampler']} divergences {ref['divergences']}, min bulk ESS {ref['min_bulk_ess']:.0f}")
    assert mean_gap < 0.01
    assert sd_gap < 0.10
    rhat, ess = sampler.rhat_ess(fast.by_chain())
    assert rhat.max() < 1.01 and ess.min() > 2000


def test_stored_nuts_references_cover_every_problem_in_the_generators_format():
    """The fixture holds one reference per problem, as the generator writes it (a file edited by hand, or written
    by another version of the generator, shows here): every float at full precision, the same bytes again."""
    from tests import nuts_references

    text = nuts_references.PATH.read_text()
    stored = nuts_references.load()
    assert list(stored) == list(PROBLEMS)
    assert nuts_references._dump(json.loads(text)) + "\n" == text
    for name, ref in stored.items():
        assert set(ref["versions"]) == set(nuts_references.VERSIONED) and ref["sampler"] == "nutpie-nuts"
        assert len(ref["mean"]) == len(ref["sd"]) == len(ref["parameters"]) == PROBLEMS[name].dimension()


@pytest.mark.slow
def test_exact_lands_on_its_stored_reference():
    """NUTS live, briefly, on a stored problem: ``fit_exact`` (nutpie, the path the references took) must land
    within its own Monte-Carlo error of the stored posterior mean, 5 standard errors of the difference per
    weight (from each run's bulk ESS), so a broken exact path shows against the references too. n120, binary:
    the cheapest problem (0.5 CPU-s of sampling; n400 took 1.3; the binary model nutpie compiles for the
    exact-profile test serves it, where a tie-model problem would add a compile of ~7 CPU-s). The bar is 0.02-0.05
    and has teeth: measured (seed 0), the right model lands within 2.8 standard errors, while a prior of scale
    0.2 or 0.07 instead of 0.1 lands 34 / 25 away, and flipping 3 of the 120 labels 7."""
    name = "n120"
    data, ref = _reference(name)
    post = fit.fit_exact(data["X"], data["y"], draws=500, tune=NUTS_TUNE, chains=2, seed=0, target_accept=NUTS_ACCEPT)
    assert post.sampler == "nutpie-nuts" and post.diagnostics["divergences"] == 0
    _, ess = sampler.rhat_ess(post.by_chain())
    se = np.sqrt(post.sd**2 / ess + np.array(ref["sd"]) ** 2 / ref["min_bulk_ess"])
    z = np.abs(post.mean - np.array(ref["mean"])) / se
    print(f"exact on {name}: max |mean diff| {np.abs(post.mean - np.array(ref['mean'])).max():.4f}, "
          f"max {z.max():.2f} standard errors, min bulk ESS {ess.min():.0f}")
    assert ess.min() >= 300  # so the bar is at most ~0.3 posterior sd: a meaningful check
    assert z.max() < 5


@pytest.mark.slow
def test_exact_falls_back_to_pymcs_own_nuts():
    rng = np.random.default_rng(7)
    X = synthetic.simulate_features(120, rng)
    y = synthetic.simulate_labels(X, sparse_weights(rng), rng)
    # at the references' target_accept (PyMC takes it too): tree 40.8 -> 20.7 steps, 5.1 -> 2.8 CPU-s
    post = fit.fit_exact(X, y, draws=300, tune=300, chains=2, seed=0, backend="pymc", target_accept=NUTS_ACCEPT)
    assert post.sampler == "pymc-nuts" and post.draws.shape == (600, D)
    assert np.all(np.abs(post.mean) < 1.5)


# --------------------------------------------------------------------------- the NUTS references' model


def _pymc_reference_model(Xd: np.ndarray, t: np.ndarray, tie: np.ndarray, ties: bool, soft: bool):
    """The model as PyMC's distributions write it: an observed ``pm.Bernoulli`` / ``pm.Categorical`` for hard
    labels (the formulation ``fit._pymc_model`` had before its closed form), and for soft ones the same
    distributions' log-probabilities of each outcome weighted by the target. With ties, the position term too."""
    import pymc as pm
    import pytensor.tensor as pt

    Xf = Xd[:, :-1] if ties else Xd
    with pm.Model() as model:
        w = pm.Laplace("w", mu=0.0, b=0.1, shape=D)
        eta = pt.as_tensor(Xf[:, 1:] if ties else Xf) @ w
        if ties:
            eta = eta + Xf[:, 0] * pm.Normal("intercept", 0.0, sampler.INTERCEPT_SCALE)
            theta = pm.Normal("theta", 0.0, sampler.TIE_SCALE)
            logits = pt.stack([0.5 * eta, -0.5 * eta, pt.ones_like(eta) * theta], axis=1)
            if not soft:
                pm.Categorical("obs", logit_p=logits, observed=np.where(tie == 1, 2, np.where(t == 1, 0, 1)))
            else:
                lp = [pm.logp(pm.Categorical.dist(logit_p=logits), np.full(len(t), k)) for k in range(3)]
                pm.Potential("obs", ((1 - tie) * (t * lp[0] + (1 - t) * lp[1]) + tie * lp[2]).sum())
        elif not soft:
            pm.Bernoulli("obs", logit_p=eta, observed=t.astype(int))
        else:
            lp = [pm.logp(pm.Bernoulli.dist(logit_p=eta), np.full(len(t), k)) for k in (1, 0)]
            pm.Potential("obs", (t * lp[0] + (1 - t) * lp[1]).sum())
    return model


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")  # its C backend here: speed only
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("ties", [False, True], ids=["binary", "ties+position"])
def test_nuts_model_is_pymcs_bernoulli_and_categorical(ties, soft):
    """``fit._pymc_model`` writes its likelihood in closed form (a ``pm.Potential``, for 1.5x / 2.5x cheaper
    gradients than ``pm.Bernoulli`` / ``pm.Categorical``): its log density and gradient are the ones PyMC's
    distributions give, so the NUTS references sample PyMC's posterior of the model, not a copy of the fast
    sampler's density. Points from typical to extreme (logits in the hundreds, log nu +-30); at the extreme
    ones PyMC's own gradient of ``pm.Bernoulli`` overflows to NaN while the closed form stays finite."""
    rng = np.random.default_rng(11)
    n = 60
    X = synthetic.simulate_features(n, rng)
    pos = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    Xd = sampler.design_matrix(X, ties, pos if ties else None, ties)
    tie = (rng.random(n) < 0.3).astype(float) if ties else np.zeros(n)
    t = rng.random(n) if soft else (rng.random(n) < 0.5).astype(float)
    ours = fit._pymc_model(Xd, np.stack([t, tie], axis=1), 0.1, ties, ties)
    ref = _pymc_reference_model(Xd, t, tie, ties, soft)
    assert [v.name for v in ours.value_vars] == [v.name for v in ref.value_vars]
    f, f_ref = logp_and_gradient(ours), logp_and_gradient(ref)
    for scale, theta in ((0.1, 0.0), (0.5, -1.0), (1.0, 2.0), (5.0, -30.0), (20.0, 30.0)):
        point = {"w": rng.normal(0.0, scale, D)}
        if ties:
            point.update(intercept=rng.normal(0.0, scale), theta=theta)
        (lp, *grad), (lp_ref, *grad_ref) = f(point), f_ref(point)
        assert lp == pytest.approx(lp_ref, rel=1e-12)
        for g, g_ref in zip(grad, grad_ref):
            assert np.isfinite(g).all()
            if scale <= 1.0:
                assert np.isfinite(g_ref).all()
            ok = np.isfinite(g_ref)
            np.testing.assert_allclose(g[ok], g_ref[ok], rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- calibration


def test_intervals_cover_true_weights_at_the_nominal_rate():
    """Weights drawn from the prior: then 94% posterior intervals must cover 94% of them."""
    rng = np.random.default_rng(11)
    covered, total = 0, 0
    for n, J in ((300, 50), (120, 50)):
        X = synthetic.simulate_features(n, rng)
        W = rng.laplace(0.0, sampler.DEFAULT_PRIOR_SCALE, (J, D))
        Y = synthetic.simulate_labels(X, W, rng)
        profiles = fit.fit_profiles(X, Y, [f"j{i}" for i in range(J)], folds=0, seed=n)
        for p, w in zip(profiles, W):
            covered += int(((np.array(p.lo) <= w) & (w <= np.array(p.hi))).sum())
            total += D
    rate = covered / total
    print(f"94% interval coverage over {total} weights: {rate:.3f}")
    assert abs(rate - 0.94) < 0.02


# --------------------------------------------------------------------------- profiles and records


@pytest.fixture(scope="module")
def two_judges():
    rng = np.random.default_rng(5)
    X = synthetic.simulate_features(250, rng)
    keys = catalogue.attribute_keys()
    W = 0.5 * np.stack([sparse_weights(rng), sparse_weights(rng)])
    for j, strong in enumerate(({"rich_info": 0.9, "no_severe_errors": 0.8, "clear": 0.6, "admits_limits": -0.6},
                                {"lengthy": 1.0, "well_formatted": 0.7, "harmless": 0.6, "informal": -0.5})):
        for k, v in strong.items():  # decisive judges, each with its own favourites
            W[j, keys.index(k)] = v
    Y = synthetic.simulate_labels(X, W, rng).astype(float)
    Y[:20, 1] = np.nan  # judge b tied on 20 pairs
    return X, Y, W


def test_fast_profiles_carry_summaries_diagnostics_and_provenance(two_judges):
    X, Y, W = two_judges
    profiles = fit.fit_profiles(X, Y, ["a", "b"], seed=3)
    a, b = profiles
    assert (a.judge, b.judge) == ("a", "b")
    assert a.attributes == catalogue.attribute_keys()
    assert (a.n, b.n) == (250, 230)
    assert a.interval == "eti94" and a.method == "fast" and a.sampler == sampler.FAST_SAMPLER
    assert a.draws == 4000 and a.samples.shape == (fit.KEEP_DRAWS, D)
    for p in profiles:
        lo, hi, m = map(np.array, (p.lo, p.hi, p.mean))
        assert np.all(lo < m) and np.all(m < hi)
        assert np.all((0 <= np.array(p.p_pos)) & (np.array(p.p_pos) <= 1))
        assert max(p.rhat) < 1.02 and min(p.ess) > 400
        assert p.folds == 5 and 0.55 < p.accuracy < 1 and 0 < p.log_loss < 0.69
        assert p.versions["numpy"] == np.__version__
        assert p.diagnostics["divergences"] == 0
    # the posterior means track the weights that made the labels
    assert np.corrcoef(a.mean, W[0])[0, 1] > 0.6
    assert len({a.fingerprint, b.fingerprint}) == 2


def test_missing_labels_are_the_same_as_dropped_rows(two_judges):
    X, Y, _ = two_judges
    masked = sampler.fit_fast(X, Y[:, 1], draws=2000, seed=4)
    dropped = sampler.fit_fast(X[20:], Y[20:, 1], draws=2000, seed=4)
    assert np.abs(masked.mean - dropped.mean).max() < 0.01


def test_fingerprint_tracks_data_and_settings(two_judges):
    X, Y, _ = two_judges
    s = {"prior_scale": 0.1, "draws": 1000}
    base = fit.fingerprint(X, Y[:, 0], s)
    assert base == fit.fingerprint(X.copy(), Y[:, 0].copy(), dict(s))
    flipped = Y[:, 0].copy()
    flipped[0] = 1 - flipped[0]
    assert fit.fingerprint(X, flipped, s) != base
    assert fit.fingerprint(X, Y[:, 0], {**s, "prior_scale": 0.2}) != base


def test_prior_scale_is_configurable(two_judges):
    X, Y, _ = two_judges
    tight = sampler.fit_fast(X, Y[:, 0], prior_scale=0.02, draws=500, seed=1)
    loose = sampler.fit_fast(X, Y[:, 0], prior_scale=0.5, draws=500, seed=1)
    assert np.abs(tight.mean).mean() < 0.5 * np.abs(loose.mean).mean()
    with pytest.raises(ValueError):
        sampler.fit_fast(X, Y[:, 0], prior_scale=0.0)


def test_intercept_is_optional_and_named(two_judges):
    X, Y, _ = two_judges
    (p,) = fit.fit_profiles(X, Y[:, :1], ["a"], intercept=True, draws=500, folds=0)
    assert p.attributes[0] == INTERCEPT and len(p.mean) == D + 1
    assert p.accuracy is None and p.folds == 0


def test_bad_inputs_are_refused():
    X = np.zeros((10, D))
    with pytest.raises(ValueError, match="labels"):
        sampler.fit_fast(X, np.full(10, 2.0))
    with pytest.raises(ValueError, match="judges"):
        fit.fit_profiles(X, np.zeros((10, 2)), ["only-one"])
    with pytest.raises(ValueError, match="method"):
        fit.fit_profiles(X, np.zeros(10), ["a"], method="map")
    with pytest.raises(ValueError, match="target_accept"):
        fit.fit_exact(X, np.zeros(10), target_accept=1.0)


def test_groups_fit_together_and_rows_go_to_the_store(tmp_path, two_judges):
    X, Y, _ = two_judges
    tasks = {"Advice": (X, Y), "Code": (X[:120], Y[:120])}
    result = fit.fit_groups(tasks, ["a", "b"], draws=300, tune=200, seed=9, workers=2)
    assert set(result) == {"Advice", "Code"} and [p.judge for p in result["Code"]] == ["a", "b"]
    assert result["Code"][0].n == 120
    store = Store(tmp_path / "store.db")
    try:
        for scope, profiles in result.items():
            for p in profiles:
                store.save_profile(fit.profile_row(p, "demo", scope, p.judge, "demo:truth"))
        rows = store.rows("SELECT * FROM profiles ORDER BY scope, judge")
    finally:
        store.close()
    assert len(rows) == 4
    row = rows[0]
    assert row["method"] == "fast" and row["interval"] == "eti94" and row["imported"] == 0
    assert json.loads(row["attributes"]) == catalogue.attribute_keys()
    assert json.loads(row["mean"]) == pytest.approx(result[row["scope"]][0].mean)
    prov = json.loads(row["provenance"])
    assert prov["sampler"] == sampler.FAST_SAMPLER and prov["prior"] == {"family": "laplace", "scale": 0.1}
    assert prov["seed"] == 9 and "numpy" in prov["versions"]
    assert row["fingerprint"] == result[row["scope"]][0].fingerprint


@pytest.mark.slow
def test_exact_profiles_agree_with_fast_ones(two_judges):
    X, Y, _ = two_judges
    exact = fit.fit_profiles(X, Y[:, :1], ["a"], method="exact", draws=1000, tune=500, folds=2)
    fast = fit.fit_profiles(X, Y[:, :1], ["a"], draws=2000, folds=2)
    e, f = exact[0], fast[0]
    assert e.method == "exact" and e.sampler in ("nutpie-nuts", "pymc-nuts") and e.draws == 4000
    assert np.abs(np.array(e.mean) - f.mean).max() < 0.02
    assert e.accuracy == pytest.approx(f.accuracy, abs=0.03)
    assert max(e.rhat) < 1.02


# --------------------------------------------------------------------------- position, ties, baselines


def test_position_and_ties_cover_the_truth_at_the_nominal_rate():
    """Judges drawn from the full model's prior (attribute weights Laplace(0, b), a position bias
    N(0, 1), log nu N(0, 2)), verdicts in both presentation orders for half of them and one order
    for the others: the 94% intervals of the attributes, the position term and the tie parameter
    cover the truth at the nominal rate, and the position term is recovered where both orders
    separate it from content."""
    n, J = 240, 40
    sim = synthetic.prior_judges_in_both_orders(n, J, np.random.default_rng(21))
    task = fit.FitInput(sim["X"], sim["Y"], sim["position"], sim["sample"])
    (profiles,) = fit.fit_groups({"s": task}, [f"j{i}" for i in range(J)], position=True, ties="davidson",
                                 folds=0, seed=3).values()
    truth = sim["truth"]
    lo = np.array([p.lo for p in profiles])
    hi = np.array([p.hi for p in profiles])
    inside = (lo <= truth) & (truth <= hi)
    rate = inside.mean()
    print(f"coverage with position and ties: {rate:.3f} over {inside.size} parameters; position {inside[:, 0].mean():.2f},"
          f" ties {inside[:, -1].mean():.2f}")
    assert profiles[0].attributes == [POSITION, *catalogue.attribute_keys(), TIE]
    assert 0.90 <= rate <= 0.97
    assert inside[:, 0].mean() >= 0.85 and inside[:, -1].mean() >= 0.85
    # with both orders the position term is pinned down: it tracks the truth closely
    both = np.array([p.mean[0] for p in profiles[: J // 2]])
    assert np.corrcoef(both, truth[: J // 2, 0])[0, 1] > 0.9
    assert profiles[0].n == n and profiles[-1].n <= n and profiles[0].observations > profiles[-1].observations


def test_position_bias_alone_is_position_not_content():
    """A judge that picks the response shown first 70% of the time whatever it shows, asked in both
    orders: the position term takes it and the attribute weights stay near 0 (their intervals cover 0
    but for chance); the position-only baseline scores 70% and the majority one a coin's 50%."""
    rng = np.random.default_rng(4)
    n = 400
    X = synthetic.simulate_features(n, rng)
    first = rng.random((2 * n, 1)) < 0.7
    pos = np.r_[np.ones(n), -np.ones(n)]
    y = np.where(pos[:, None] > 0, first, ~first).astype(float)
    task = fit.FitInput(np.vstack([X, X]), y, pos, np.r_[np.arange(n), np.arange(n)])
    (p,) = fit.fit_groups({"s": task}, ["first"], position=True, seed=1)["s"]
    assert p.lo[0] > 0.5 and display_percent(p.mean[0]) == pytest.approx(70, abs=5)
    content = (np.array(p.lo[1:]) > 0) | (np.array(p.hi[1:]) < 0)
    assert content.sum() <= 2, [k for k, c in zip(p.attributes[1:], content) if c]  # ~1.7 of 29 by chance at 94%
    assert p.baselines["position"]["accuracy"] == pytest.approx(0.7, abs=0.05)
    assert p.baselines["majority"]["accuracy"] == pytest.approx(0.5, abs=0.05)
    assert not beats_baselines(p.accuracy - 0.02, p.baselines)


def test_length_only_baseline_and_the_flag():
    """Labels that follow length alone: the length-only baseline is as good as the profile, so the
    profile is flagged as not beating it; labels that follow several attributes beat every baseline."""
    rng = np.random.default_rng(8)
    X = synthetic.simulate_features(600, rng)
    k = catalogue.attribute_keys().index("lengthy")
    w_len = np.zeros(D)
    w_len[k] = 3.0
    w_many = 0.5 * sparse_weights(rng) + 1.2 * (np.arange(D) % 5 == 0)
    w_many[k] = 0.0
    Y = synthetic.simulate_labels(X, np.stack([w_len, w_many]), rng).astype(float)
    a, b = fit.fit_profiles(X, Y, ["length", "many"], seed=2)
    assert a.baselines["length"]["accuracy"] >= a.accuracy - 0.02
    assert b.accuracy > max(v["accuracy"] for v in b.baselines.values()) + 0.05 and beats_baselines(b.accuracy, b.baselines)
    assert best_baseline(a.baselines)[0] == "length"
    # the counts of differing samples: every column of the simulated features differs somewhere
    assert len(a.differing) == D and min(a.differing) > 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")  # the model check's C backend: speed only
def test_fast_tie_model_with_position_matches_nuts():
    """Davidson's tie model with the position term: the fast sampler against NUTS, as the binary model is."""
    data, ref = _reference("ties+position")
    fast = sampler.fit_fast(data["X"], data["y"], draws=6000, tune=1000, chains=4, seed=1, intercept=True,
                            position=data["position"], ties="davidson")
    m_ref, s_ref = np.array(ref["mean"]), np.array(ref["sd"])
    mean_gap = np.abs(fast.mean[0] - m_ref).max()
    sd_gap = np.abs(fast.sd[0] / s_ref - 1).max()
    print(f"ties: max |mean diff| {mean_gap:.4f}, max relative sd diff {sd_gap:.3f}, "
          f"NUTS min bulk ESS {ref['min_bulk_ess']:.0f}")
    assert mean_gap < 0.015 and sd_gap < 0.10


# --------------------------------------------------------------------------- soft labels (issue 15, point 2)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")  # the model check's C backend: speed only
@pytest.mark.parametrize("model", ["binary", "ties+position"])
def test_fast_soft_labels_match_nuts(model):
    """Soft labels in both samplers (the fast path's targets, NUTS's pm.Potential): the same posterior,
    to the bar the binary and tie models meet (means within ~0.1 posterior sd, sds within 10%)."""
    data, ref = _reference(f"soft-{model}")
    _, hard = _reference(f"hard-{model}")  # the same verdicts without the probabilities
    kw = dict(intercept=True, position=data["position"], ties="davidson") if model != "binary" else {}
    fast = sampler.fit_fast(data["X"], data["y"], prob=data["prob"], draws=6000, tune=1000, chains=4, seed=1, **kw)
    m_ref, s_ref = np.array(ref["mean"]), np.array(ref["sd"])
    mean_gap = np.abs(fast.mean[0] - m_ref).max()
    sd_gap = np.abs(fast.sd[0] / s_ref - 1).max()
    print(f"soft {model}: max |mean diff| {mean_gap:.4f}, max relative sd diff {sd_gap:.3f}, "
          f"NUTS min bulk ESS {ref['min_bulk_ess']:.0f}")
    assert mean_gap < 0.015 and sd_gap < 0.10
    # and the soft posterior is another posterior than the hard one (NUTS used the probabilities)
    assert np.abs(np.array(hard["mean"]) - m_ref).max() > 5 * mean_gap


def test_soft_labels_are_an_option_recorded_in_the_settings_and_provenance():
    rng, X, w, p, y = soft_problem(22, n=250)
    y[-20:] = np.nan
    # verdicts drawn from P(A) fall on its other side now and then: used as given, and counted
    crossed = int(((y == 1) & (p < 0.5)).sum() + ((y == 0) & (p > 0.5)).sum())
    assert crossed > 0
    task = fit.FitInput(X, y[:, None], prob=p[:, None])
    kw = dict(draws=300, tune=200, seed=4, workers=1)
    (soft,) = fit.fit_groups({"s": task}, ["j"], **kw)["s"]
    (hard,) = fit.fit_groups({"s": task}, ["j"], labels="hard", **kw)["s"]
    (plain,) = fit.fit_groups({"s": fit.FitInput(X, y[:, None])}, ["j"], **kw)["s"]
    assert soft.settings["labels"] == "soft" and hard.settings["labels"] == "hard"
    assert soft.soft == 230 and soft.soft_conflicts == crossed and hard.soft == 0
    # hard labels ignore the probabilities: the very fit without them (draws, held-out scores)
    assert hard.mean == plain.mean and hard.accuracy == plain.accuracy
    assert soft.mean != hard.mean and soft.fingerprint != hard.fingerprint
    # held-out accuracy and log loss score the choices either way, as the baselines do
    assert soft.baselines == hard.baselines and 0.5 < soft.accuracy <= 1
    prov = fit.profile_row(soft, "d", "s", "j", "f")["provenance"]
    assert prov["labels"] == {"mode": "soft", "soft": 230, "conflicts": crossed}
    assert prov["settings"]["labels"] == "soft"
    assert fit.profile_row(hard, "d", "s", "j", "f")["provenance"]["labels"]["mode"] == "hard"
    with pytest.raises(ValueError, match="labels must be one of"):
        fit.fit_groups({"s": task}, ["j"], labels="fuzzy", **kw)


def test_library_versions_name_the_fast_samplers_kernels_and_are_a_fresh_dict_each_call():
    """Provenance names numba (the fast sampler's compiled kernels) beside numpy; the metadata is read once
    per process, and a caller changing its copy changes nobody else's."""
    import numba

    from core.fit import library_versions

    v = library_versions()
    assert v["numba"] == numba.__version__ and v["numpy"] == np.__version__
    v["numpy"] = "changed"
    assert library_versions()["numpy"] == np.__version__
