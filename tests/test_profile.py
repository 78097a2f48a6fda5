"""A profile's pieces: display quantity, the measured rule, the paper's weights, and which profile stands
for a judge (one rule for the Samples waterfall, the simulator, the bias card and the pages)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core import bias, catalogue, demo, samples
from core import simulate as sim
from core.profile import (METHOD_ORDER, MIN_DIFFERING, choose, display_percent, is_attribute_term, load_published_profiles,
                          measured_mask, measurement, method_rank, pick_profile)
from core.store import Store

D = len(catalogue.attribute_keys())
DS = demo.DEMO_DATASET


def test_display_percent_is_the_papers_scale():
    assert display_percent(0.0) == pytest.approx(50.0)
    assert display_percent(np.log(3.0)) == pytest.approx(75.0)
    assert display_percent(np.array([-1.0, 1.0])).sum() == pytest.approx(100.0)


def test_measurement_rule():
    assert measurement(0) == "not measured"
    assert measurement(MIN_DIFFERING - 1) == "too few samples"
    assert measurement(MIN_DIFFERING) == "measured" and measurement(None) == "measured"


def test_load_published_profiles_reads_the_papers_format(tmp_path):
    for scope, judges in (("Advice", ("human", "gpt-4")), ("w_stances", ("human",))):
        lines = [json.dumps({"model_name": j, "parameters": list(np.arange(D) * (k + 1.0))})
                 for k, j in enumerate(judges)]
        (tmp_path / f"model_{scope}_fitted_paras.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "unrelated.txt").write_text("x")
    profiles = load_published_profiles(tmp_path)
    assert set(profiles) == {"Advice", "w_stances"}
    assert profiles["Advice"]["gpt-4"][1] == 2.0 and len(profiles["w_stances"]["human"]) == D
    with pytest.raises(FileNotFoundError):
        load_published_profiles(tmp_path / "missing")


# --------------------------------------------------------------------------- which profile stands for a judge


def _row(method, source="demo", **extra):
    return {"method": method, "feature_source": source, **extra}


def test_choice_prefers_nuts_then_the_fast_path_then_truth_then_imported():
    assert METHOD_ORDER == ("exact", "fast", "truth", "imported")
    rows = [_row(m) for m in ("imported", "truth", "fast", "exact")]
    assert choose(rows)["method"] == "exact"
    assert choose(rows[:3])["method"] == "fast"
    assert choose(rows[:2])["method"] == "truth"
    assert choose([_row("zzz"), _row("imported")])["method"] == "imported"  # unknown methods last
    assert choose([]) is None
    assert sorted(["fast", "other", "exact", "truth"], key=method_rank) == ["exact", "fast", "truth", "other"]


def test_choice_then_takes_the_richest_feature_set_and_the_samples_own_first():
    rows = [_row("fast", "heuristic:v1"), _row("fast", "llm:m:v1"), _row("fast", "hf:paper")]
    assert choose(rows)["feature_source"] == "llm:m:v1"
    # an exact fit on a poorer feature set still beats a fast one on a richer set: method first
    assert choose(rows + [_row("exact", "heuristic:v1")])["feature_source"] == "heuristic:v1"
    # with the feature sets a sample has, a profile on those comes first (it can explain the sample)
    assert choose(rows + [_row("exact", "heuristic:v1")], available={"hf:paper"})["feature_source"] == "hf:paper"


@pytest.fixture(scope="module")
def both_fits(demo_file, tmp_path_factory):
    """The demo with, beside each judge's fast profile in "all" and "Code", an exact one (other weights)."""
    path = tmp_path_factory.mktemp("both") / "store.db"
    shutil.copy(demo_file, path)
    with Store(path) as s:
        for row in s.profiles(dataset=DS, method="fast"):
            if row["scope"] in ("all", "Code"):
                exact = {k: v for k, v in row.items() if k not in ("id", "created_at")}
                exact["method"] = "exact"
                exact["mean"] = [0.5 * m for m in row["mean"]]
                s.save_profile(exact)
    with Store(path) as s:
        yield s


def test_the_samples_waterfall_and_the_simulator_explain_a_judge_with_the_same_profile(both_fits):
    # issue 13: samples.pick_profile took the fast fit, simulate.pick_profile the exact one
    s = both_fits
    sid = s.design(DS, "demo", scope="Code").sample_ids[0]
    for judge in ("demo-crowd", "demo-tulu-70b"):
        exact = s.profiles(dataset=DS, scope="Code", judges=[judge], method="exact")[0]
        exact_id = exact["id"]
        measured = next(k for k, ok in zip(exact["attributes"], measured_mask(exact)) if ok and is_attribute_term(k))
        e = samples.explain(s, sid, judge, "Code")
        (run,) = sim.simulate(s, DS, [judge], scope="Code", model="demo-model-alpha", inject={measured: 1.0})
        assert e.profile["id"] == run.profile["profile_id"] == exact_id
        assert pick_profile(s, DS, "Code", judge)["id"] == exact_id
        assert e.profile["method"] == run.profile["method"] == "exact"
    # the bias card reads its position term from the same profile ("all")
    card = bias.bias_card(s, "demo-crowd", DS, fit_self=False)
    assert any(it.note.startswith("exact profile") for it in card)
    # asking for a method still gets it
    assert samples.explain(s, sid, "demo-crowd", "Code", method="fast").profile["method"] == "fast"


class _Profiles:
    """A stand-in store holding only profile rows (``stored_set`` reads nothing else)."""

    def __init__(self, rows):
        self.rows = rows

    def profiles(self, dataset=None, columns=None):
        return [r for r in self.rows if r["dataset"] == dataset]


def test_stored_set_takes_the_asked_set_else_the_first_by_name_and_method_rank():
    from core.profile import stored_set

    rows = [{"dataset": "d", "feature_source": f, "method": m}
            for f, m in [("llm:x:v1", "fast"), ("heuristic:v1", "imported"), ("heuristic:v1", "fast"),
                         ("heuristic:v1", "exact"), ("llm:x:v1", "truth")]]
    s = _Profiles(rows)
    assert stored_set(s, "d") == ("heuristic:v1", "exact")  # feature sets by name, then exact before fast
    assert stored_set(s, "d", "llm:x:v1") == ("llm:x:v1", "fast")
    assert stored_set(s, "d", method="imported") == ("heuristic:v1", "imported")
    with pytest.raises(ValueError, match=r"no profiles for dataset 'e': fit them with `python -m core fit --dataset e`"):
        stored_set(s, "e")
    with pytest.raises(ValueError, match=r"on features 'hf:paper' \(there are: heuristic:v1, llm:x:v1\)"):
        stored_set(s, "d", "hf:paper")
    with pytest.raises(ValueError, match=r"no 'exact' profiles of dataset 'd' \(there are: fast, truth\)"):
        stored_set(s, "d", "llm:x:v1", "exact")
