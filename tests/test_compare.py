"""Comparing judges: similarity, clustering, judge groups, differences, the paper's weights."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import catalogue, compare, fit, scopes, synthetic
from core.profile import POSITION, POSITION_LABEL, TIE, load_published_profiles, profile_frame, top_bottom

D = len(catalogue.attribute_keys())
SHARED_DATA_ENV = "PREFDISSECT_SHARED_DATA"


@pytest.fixture(scope="module")
def published_dir() -> Path:
    """The paper's released weights (../shared/data/gair/fitted_paras_comparison)."""
    override = os.environ.get(SHARED_DATA_ENV, "").strip()
    root = Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "shared" / "data"
    path = root / "gair" / "fitted_paras_comparison"
    if not path.is_dir():
        pytest.skip(f"the paper's published weights are not at {path} (set {SHARED_DATA_ENV} to the data folder)")
    return path


# --------------------------------------------------------------------------- similarity


def test_correlation_pearson_and_spearman():
    a = np.arange(D, dtype=float)
    assert compare.correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert compare.correlation(a, -a) == pytest.approx(-1.0)
    assert compare.correlation(a, a**3, method="spearman") == pytest.approx(1.0)
    assert compare.correlation(a, a**3) < 1.0
    assert math.isnan(compare.correlation(a, np.ones(D)))
    with pytest.raises(ValueError):
        compare.correlation(a, a, method="kendall")


def test_similarity_is_averaged_over_shared_scenario_groups_only():
    rng = np.random.default_rng(0)
    base = rng.normal(size=D)
    noise = rng.normal(size=D)
    profiles = {
        "Advice": {"x": base, "y": base, "z": noise},
        "Code": {"x": base, "y": -base},  # z has no Code profile
        "intent_unclear": {"x": base, "y": noise, "z": base},  # a query case: left out by default
    }
    M = compare.similarity_matrix(profiles)
    assert list(M.index) == ["x", "y", "z"]
    assert M.loc["x", "y"] == pytest.approx(0.0)  # (1 + -1) / 2
    assert M.loc["x", "z"] == pytest.approx(np.corrcoef(base, noise)[0, 1])  # Advice only
    assert np.allclose(np.diag(M), 1.0) and np.allclose(M, M.T)
    every = compare.similarity_matrix(profiles, scopes=list(profiles))
    assert every.loc["x", "z"] == pytest.approx((np.corrcoef(base, noise)[0, 1] + 1.0) / 2)
    assert compare.judge_similarity(profiles, "x", "y") == pytest.approx(0.0)
    assert scopes.beside_cases(profiles) == ["Advice", "Code"]  # the default: every scope but the cases
    lonely = compare.similarity_matrix({"Advice": {"x": base}, "Code": {"y": base}})
    assert math.isnan(lonely.loc["x", "y"])


def test_cluster_order_keeps_alike_judges_together():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=D), rng.normal(size=D)
    judges = {f"a{i}": a + 0.1 * rng.normal(size=D) for i in range(3)}
    judges |= {f"b{i}": b + 0.1 * rng.normal(size=D) for i in range(3)}
    shuffled = ["a0", "b0", "a1", "b1", "a2", "b2"]
    M = compare.similarity_matrix({"Advice": judges}, shuffled)
    order = compare.cluster_order(M)
    assert sorted(order) == sorted(shuffled)
    firsts = {name[0] for name in order[:3]}
    assert len(firsts) == 1  # one cluster, then the other


def test_group_similarity_means_over_pairs():
    names = ["s1", "s2", "s3", "l1", "l2"]
    S = np.full((5, 5), 0.5)
    S[:3, :3] = 0.9
    S[3:, 3:] = 0.8
    np.fill_diagonal(S, 1.0)
    M = pd.DataFrame(S, index=names, columns=names)
    g = compare.group_similarity(M, {"small": ["s1", "s2", "s3"], "large": ["l1", "l2", "ghost"]})
    assert g.intra == pytest.approx({"small": 0.9, "large": 0.8})
    assert g.inter == pytest.approx(0.5)
    assert g.pairs == {"small": 3, "large": 1, "inter": 6}
    assert g.between[("small", "large")] == pytest.approx(0.5)


# --------------------------------------------------------------------------- differences


def test_weight_difference_with_and_without_draws():
    rng = np.random.default_rng(2)
    a, b = np.zeros(D), np.zeros(D)
    a[0] = 1.0
    plain = compare.weight_difference(a, b)
    assert list(plain.columns) == ["attribute", "a", "b", "diff", "lo", "hi", "p_pos"]
    assert plain["diff"].iloc[0] == 1.0 and plain["lo"].isna().all()
    da = a + 0.1 * rng.normal(size=(4000, D))
    db = b + 0.1 * rng.normal(size=(3000, D))
    diff = compare.weight_difference(a, b, draws_a=da, draws_b=db)
    # the sd of the difference is sqrt(2) * 0.1: the 94% interval is about +-0.27
    assert diff["hi"].iloc[0] - diff["lo"].iloc[0] == pytest.approx(2 * 1.881 * 0.1414, rel=0.1)
    assert diff["p_pos"].iloc[0] == pytest.approx(1.0)
    assert diff["p_pos"].iloc[1:].between(0.4, 0.6).all()


def test_weight_difference_of_fitted_profiles_uses_their_draws():
    rng = np.random.default_rng(3)
    X = synthetic.simulate_features(300, rng)
    keys = catalogue.attribute_keys()
    W = np.zeros((2, D))
    W[0, keys.index("lengthy")] = 1.5  # judge a loves length, judge b does not care
    Y = synthetic.simulate_labels(X, W, rng)
    a, b = fit.fit_profiles(X, Y, ["a", "b"], draws=500, folds=0)
    diff = compare.weight_difference(a, b).set_index("attribute")
    assert diff.loc["lengthy", "lo"] > 0 and diff.loc["lengthy", "p_pos"] > 0.99
    assert diff["lo"].notna().all()
    by_scope = compare.weights_by_scope({"Advice": [a, b]})
    assert set(by_scope["Advice"]) == {"a", "b"}


def test_difference_of_a_profile_with_ties_leaves_the_tie_parameter_out():
    """Regression (issue 15, found by the demo whose crowd ties): the Profiles page's difference of two
    judges showed the tie parameter (Davidson's log nu) as an attribute row "(tie)", and raised
    "profiles have different attributes" when one judge was fitted with ties and the other without."""
    rng = np.random.default_rng(5)
    names = [POSITION] + catalogue.attribute_keys()
    a_draws = rng.normal(size=(400, len(names) + 1))  # the tie parameter is the last term
    b_draws = rng.normal(size=(400, len(names)))
    row_a = {"attributes": names + [TIE], "mean": list(a_draws.mean(0)), "draws": a_draws}
    row_b = {"attributes": names, "mean": list(b_draws.mean(0)), "draws": b_draws}
    diff = compare.difference_of(row_a, row_b)
    assert list(diff["attribute"]) == names and TIE not in set(diff["label"])
    assert np.allclose(diff["diff"], a_draws.mean(0)[:-1] - b_draws.mean(0))
    assert diff["lo"].notna().all()
    both = compare.difference_of(row_a, {**row_a})  # both with ties: still no tie row
    assert list(both["attribute"]) == names and np.allclose(both["diff"], 0.0)
    with pytest.raises(ValueError, match="different attributes"):
        compare.difference_of(row_a, {"attributes": names[1:], "mean": list(b_draws.mean(0))[1:]})


# --------------------------------------------------------------------------- the paper's headline

#: Parameters in billions (the paper's grouping; base and -chat variants alike).
SIZES = {
    "yi-6b": 6, "llama-2-7b": 7, "vicuna-7b-v1.5": 7, "tulu-2-dpo-7b": 7, "mistral-7b": 7, "zephyr": 7,
    "qwen-7b": 7, "llama-2-13b": 13, "wizardLM-13b": 13, "vicuna-13b": 13, "tulu-2-dpo-13b": 13, "qwen-14b": 14,
    "yi-34b": 34, "mistral-8x7b": 56, "llama-2-70b": 70, "wizardLM-70b": 70, "tulu-2-dpo-70b": 70, "qwen-72b": 72,
}


def size_of(judge: str) -> float:
    if judge.startswith("gpt-"):
        return math.inf  # gpt-3.5-turbo and gpt-4: treated as large
    for prefix in sorted(SIZES, key=len, reverse=True):  # "mistral-8x7b" before "mistral-7b"
        if judge.startswith(prefix):
            return SIZES[prefix]
    raise KeyError(judge)


def test_published_weights_show_that_similar_sizes_prefer_alike(published_dir):
    profiles = load_published_profiles(published_dir)
    assert len(profiles) == 16 and all(len(js) == 33 for js in profiles.values())
    llms = [j for j in profiles["Advice"] if j != "human"]
    assert len(llms) == 32
    groups = {"small": [j for j in llms if size_of(j) < 30], "large": [j for j in llms if size_of(j) >= 30]}
    assert (len(groups["small"]), len(groups["large"])) == (20, 12)
    report = {}
    for method in compare.METHODS:
        M = compare.similarity_matrix(profiles, llms, method=method)  # the 11 scenario groups
        g = compare.group_similarity(M, groups)
        report[method] = g
        print(f"{method}: intra small {g.intra['small']:.3f}, intra large {g.intra['large']:.3f}, "
              f"inter {g.inter:.3f} (paper, Pearson: 0.83 / 0.88 vs 0.74)")
    g = report["pearson"]
    assert g.intra["small"] > g.inter and g.intra["large"] > g.inter
    assert g.intra["small"] == pytest.approx(0.83, abs=0.03)
    assert g.inter == pytest.approx(0.74, abs=0.04)
    s = report["spearman"]
    assert s.intra["small"] > s.inter and s.intra["large"] > s.inter
    # the clustering seats a base model next to its -chat version (alignment changes the
    # strength of preferences more than their shape) and puts large and small models apart
    order = compare.cluster_order(compare.similarity_matrix(profiles, llms))
    pairs = [(j, j + "-chat") for j in llms if j + "-chat" in llms]
    adjacent = sum(abs(order.index(a) - order.index(b)) == 1 for a, b in pairs)
    print(f"cluster order: {adjacent} of {len(pairs)} base/-chat pairs side by side")
    assert adjacent >= 6
    rank = {j: i for i, j in enumerate(order)}
    assert abs(np.mean([rank[j] for j in groups["large"]]) - np.mean([rank[j] for j in groups["small"]])) > 5


def test_similarity_leaves_out_the_position_term_and_unmeasured_attributes():
    """Two judges that agree on the measured attributes and differ wildly on attributes nobody measured
    (their posteriors there are only the prior): similarity over the measured ones is 1, and says
    over how many it was computed; the position term never enters."""
    keys = catalogue.attribute_keys()
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, len(keys))
    noise = rng.normal(0, 1, len(keys))
    measured = np.arange(len(keys)) < 9
    differing = [None] + [40 if m else 0 for m in measured]
    rows = []
    for judge, w, pos in (("a", base, 2.0), ("b", np.where(measured, base, noise), -2.0)):
        rows.append({"scope": "Code", "judge": judge, "attributes": [POSITION, *keys], "mean": [pos, *w],
                     "provenance": {"differing": differing, "min_differing": 10}})
    weights = compare.weights_from_rows(rows)
    assert np.isnan(weights["Code"]["a"][~measured]).all() and len(weights["Code"]["a"]) == len(keys)
    m = compare.similarity_matrix(weights, scopes=["Code"])
    assert m.loc["a", "b"] == pytest.approx(1.0) and m.attrs["attributes"] == {"Code": 9}
    # the unmeasured attributes would have pulled it down
    assert compare.correlation(base, np.where(measured, base, noise)) < 0.9
    frame = profile_frame(rows)
    assert (frame.loc[frame["attribute"].isin(keys[9:]), "status"] == "not measured").all()
    assert frame.loc[frame["attribute"].isin(keys[9:]), "mean"].isna().all()
    assert frame.loc[frame["attribute"] == POSITION, "label"].iloc[0] == POSITION_LABEL
    assert "admits_limits" not in set(top_bottom(frame)["attribute"])  # not measured: not a finding


def test_similarity_report_is_the_one_pipeline_of_the_cli_and_the_page():
    rng = np.random.default_rng(5)
    base = rng.normal(size=D)
    weights = {g: {"a": base + rng.normal(0, 0.1, D), "b": -base, "c": base + rng.normal(0, 0.1, D)}
               for g in ("Code", "Advice")}
    weights["w_stances"] = {"a": base, "b": base, "c": base}  # a query case: not averaged over
    weights["Code"]["b"][:5] = np.nan  # not measured: left out of b's correlations in Code
    r = compare.similarity_report(weights)
    assert r.scopes == scopes.averaged(weights) and set(r.scopes) == {"Advice", "Code"}
    assert r.order[-1] == "b" or r.order[0] == "b"  # a and c cluster together
    direct = compare.similarity_matrix(weights, scopes=r.scopes)
    pd.testing.assert_frame_equal(r.matrix, direct.loc[r.order, r.order], check_names=False)
    assert r.corr == "pearson" and r.attribute_range == (D - 5, D)
    one = compare.similarity_report(weights, scope="w_stances", judges=["a", "b"], corr="spearman")
    assert one.scopes == ["w_stances"] and set(one.order) == {"a", "b"} and one.corr == "spearman"
