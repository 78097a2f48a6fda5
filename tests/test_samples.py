"""The Samples engine: Store.browse / browse_index / search (each filter, paging, counts against
expectations computed from the raw tables), fit.contributions, core.samples (the sample view read
back from stored annotations, explanations from stored profiles) and the ``samples`` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from core import annotate, catalogue, demo, fit, samples
from core.importers import import_file
from core.loopback import LoopbackServer
from core.profile import INTERCEPT, POSITION, TIE
from core.records import Dataset, Feature, ImportBatch, Sample
from core.store import UNCLASSIFIED, SampleFilter, Store, fts_query
from tests.conftest import copy_store, loopback_settings, run_cli

ROOT = Path(__file__).resolve().parents[1]
DS = demo.DEMO_DATASET
JUDGES = sorted(demo.JUDGES)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, demo_file):
    s = Store(copy_store(demo_file, tmp_path_factory.mktemp("samples") / "demo.db"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def pandalm(tmp_path_factory, shared_data):
    """PandaLM's 999 real pairs: three human annotators and two LLM judges, ties included, with the
    offline heuristics' features."""
    s = Store(tmp_path_factory.mktemp("pandalm") / "pandalm.db")
    import_file(s, "pandalm", shared_data / "pandalm" / "testset-v1.json")
    annotate.run_heuristics(s, s.samples_for("pandalm-test"))
    yield s
    s.close()


def tables(s: Store):
    """The raw tables, read without the code under test."""
    smp = pd.read_sql_query("SELECT id, dataset, position, scenario_group, cases FROM samples", s.conn)
    smp["cases"] = smp["cases"].map(lambda c: json.loads(c) if c else {})
    labels = pd.read_sql_query("SELECT sample_id, judge, choice, prob_a FROM labels", s.conn)
    feats = pd.read_sql_query("SELECT sample_id, source, attribute, value, excluded FROM features", s.conn)
    return smp, labels, feats


def ordered_ids(frame: pd.DataFrame) -> list[str]:
    return list(frame.sort_values(["dataset", "position"])["id"])


def all_rows(s: Store, f: SampleFilter, size: int = 37) -> tuple[list[dict], int]:
    """Every row of a filter, page by page (an odd page size, so pages end mid-way)."""
    out, offset, totals = [], 0, set()
    while True:
        rows, total = s.browse(f, offset=offset, limit=size)
        totals.add(total)
        out += rows
        if len(rows) < size:
            break
        offset += size
    assert len(totals) == 1  # the count does not depend on the page
    return out, totals.pop()


# ------------------------------------------------------------------ filters and paging


def test_scenario_and_case_filters_page_through_dataset_order(demo_store):
    smp, _, _ = tables(demo_store)
    smp = smp[smp["dataset"] == DS]
    for scenario in ("Code", "Advice"):
        rows, total = all_rows(demo_store, SampleFilter(dataset=DS, scenario=scenario))
        assert [r["id"] for r in rows] == ordered_ids(smp[smp["scenario_group"] == scenario])
        assert total == len(rows) == (smp["scenario_group"] == scenario).sum() > 0
    for case in catalogue.case_keys():
        want = smp[smp["cases"].map(lambda c: bool(c.get(case)))]
        rows, total = all_rows(demo_store, SampleFilter(dataset=DS, case=case))
        assert [r["id"] for r in rows] == ordered_ids(want) and total == len(want)
    both = smp[(smp["scenario_group"] == "Advice") & smp["cases"].map(lambda c: bool(c.get("express_feeling")))]
    rows, total = all_rows(demo_store, SampleFilter(dataset=DS, scenario="Advice", case="express_feeling"))
    assert [r["id"] for r in rows] == ordered_ids(both) and total == len(both) > 0
    # past the end: no rows, the same count
    rows, total = demo_store.browse(SampleFilter(dataset=DS, scenario="Code"), offset=10_000, limit=50)
    assert rows == [] and total == (smp["scenario_group"] == "Code").sum()
    with pytest.raises(ValueError, match="unknown query case"):
        demo_store.browse(SampleFilter(dataset=DS, case="no_such_case"))


def test_judge_filter_lists_only_what_the_judge_labelled_with_its_choice(pandalm):
    smp, labels, _ = tables(pandalm)
    gpt = labels[labels["judge"] == "gpt-3.5-turbo"]
    rows, total = all_rows(pandalm, SampleFilter(dataset="pandalm-test", judge="gpt-3.5-turbo"), size=200)
    assert total == len(gpt) == 974  # 25 of PandaLM's gpt-3.5 verdicts are unparsable: no label
    assert [r["id"] for r in rows] == ordered_ids(smp[smp["id"].isin(set(gpt["sample_id"]))])
    choice = dict(zip(gpt["sample_id"], gpt["choice"]))
    assert all(r["choices"] == {"gpt-3.5-turbo": choice[r["id"]]} for r in rows)
    # PandaLM has no scenario groups: "(unclassified)" finds them all
    assert pandalm.browse(SampleFilter(dataset="pandalm-test", scenario=UNCLASSIFIED), limit=0)[1] == 999


@pytest.mark.parametrize("judges", [("pandalm-annotator1", "pandalm-annotator2"),
                                    ("pandalm-annotator1", "pandalm-annotator2", "pandalm-annotator3"),
                                    ("gpt-3.5-turbo", "pandalm-7b")])
def test_disagreement_is_computed_over_non_tie_choices(pandalm, judges):
    smp, labels, _ = tables(pandalm)
    sub = labels[labels["judge"].isin(judges) & (labels["choice"] != "tie")]
    differ = sub.groupby("sample_id")["choice"].nunique()
    want = set(differ[differ > 1].index)
    rows, total = all_rows(pandalm, SampleFilter(dataset="pandalm-test", disagree=judges), size=100)
    assert {r["id"] for r in rows} == want and total == len(want) > 0
    # each row carries every picked judge's choice, and they do differ
    for r in rows:
        assert set(r["choices"]) == set(judges)
        assert len({c for c in r["choices"].values() if c not in (None, "tie")}) == 2
    with pytest.raises(ValueError, match="two or more"):
        pandalm.browse(SampleFilter(dataset="pandalm-test", disagree=judges[:1]))


@pytest.mark.parametrize("direction, keep", [(None, lambda v: v != 0), ("A", lambda v: v == 1), ("B", lambda v: v == -1)])
def test_attribute_filter_on_real_heuristic_features(pandalm, direction, keep):
    _, _, feats = tables(pandalm)
    source = "heuristic:v1"
    attrs = ("lengthy", "well_formatted")
    f = feats[(feats["source"] == source) & feats["attribute"].isin(attrs) & feats["value"].map(keep)]
    per = f.groupby("sample_id")["attribute"].nunique()
    want = set(per[per == len(attrs)].index)
    rows, total = all_rows(pandalm, SampleFilter(dataset="pandalm-test", attributes=attrs, feature_source=source,
                                                 direction=direction), size=100)
    assert {r["id"] for r in rows} == want and total == len(want) > 0
    values = feats[feats["source"] == source].set_index(["sample_id", "attribute"])["value"]
    assert all(r["features"] == {a: values[(r["id"], a)] for a in attrs} for r in rows)
    with pytest.raises(ValueError, match="feature source"):
        pandalm.browse(SampleFilter(dataset="pandalm-test", attributes=attrs))


def test_excluded_features_are_left_out_of_the_attribute_filter_unless_asked(demo_store, tmp_path):
    s = Store(tmp_path / "copy.db")
    demo_store.conn.backup(s.conn)
    f = SampleFilter(dataset=DS, attributes=("clear",), feature_source="demo")
    rows, total = s.browse(f, limit=5)
    gone = rows[0]["id"]
    feats = [Feature(**{k: r[k] for k in ("source", "attribute", "value", "score_a", "score_b")},
                     sample_id=gone, excluded=True) for r in s.sample_features(gone)]
    s.write_features(feats)  # errors not checkable: left out of fitting
    assert s.browse(f, limit=0)[1] == total - 1
    assert gone not in {r["id"] for r in all_rows(s, f)[0]}
    assert s.browse(SampleFilter(**{**f.__dict__, "include_excluded": True}), limit=0)[1] == total
    s.close()


# ------------------------------------------------------------------ full-text search


def fts_rowids(s: Store, text: str) -> dict[int, float]:
    return dict(s.conn.execute("SELECT rowid, bm25(samples_fts) FROM samples_fts WHERE samples_fts MATCH ?",
                               [fts_query(text)]).fetchall())


def test_search_with_filters_is_the_matches_that_pass_them_best_first(demo_store):
    smp, labels, _ = tables(demo_store)
    rowid = dict(demo_store.conn.execute("SELECT id, rowid FROM samples").fetchall())
    scores = fts_rowids(demo_store, "python vowels")
    code = smp[(smp["scenario_group"] == "Code") & smp["id"].isin(labels.loc[labels["judge"] == "demo-crowd", "sample_id"])]
    want = sorted((scores[rowid[i]], rowid[i], i) for i in code["id"] if rowid[i] in scores)
    f = SampleFilter(dataset=DS, scenario="Code", judge="demo-crowd", text="Python vowels")
    rows, total = all_rows(demo_store, f, size=4)
    assert [r["id"] for r in rows] == [w[2] for w in want] and total == len(want) > 4
    assert [r["score"] for r in rows] == pytest.approx([w[0] for w in want])
    # nothing to search for, or nothing matching: an empty list, not an error
    assert demo_store.browse(SampleFilter(dataset=DS, text="  ;; "))[1] == 0
    assert demo_store.browse(SampleFilter(dataset=DS, text="zyzzyvas"))[1] == 0


def add(s: Store, dataset: str, texts: list[str]) -> list[str]:
    batch = ImportBatch(dataset=Dataset(dataset), samples=[Sample(dataset, t, f"{t} alpha", "beta") for t in texts])
    s.write_batch(batch)
    return [x.id for x in batch.samples]


def test_search_dataset_filter_on_contiguous_and_interleaved_datasets(tmp_path):
    """Regression: `rowid IN (SELECT rowid FROM samples WHERE dataset = ?)` beside MATCH let FTS5 run
    one full-text query per sample of the dataset (over ten minutes per search at 100k samples).
    The filter is now a rowid range FTS5 seeks (a dataset filling one) or a set it cannot push down."""
    s = Store(tmp_path / "s.db")
    add(s, "one", [f"river question {i}" for i in range(5)])
    add(s, "two", [f"river answer {i}" for i in range(4)])
    assert s.dataset_span("one") is not None and s.dataset_span("two") is not None
    add(s, "one", [f"river late question {i}" for i in range(3)])  # "one" now straddles "two"
    assert s.dataset_span("one") is None and s.dataset_span("two") is not None
    for ds, n in (("one", 8), ("two", 4)):
        hits = s.search("river", dataset=ds, limit=50)
        assert len(hits) == n and {h["dataset"] for h in hits} == {ds}
        assert s.browse(SampleFilter(dataset=ds, text="river"), limit=0)[1] == n
    assert len(s.search("river", limit=50)) == 12
    s.close()


def test_search_ranks_as_fts5_rank_did(demo_store):
    """bm25() under SQLite's top-N sorter replaced `ORDER BY rank`: the same hits in the same order."""
    for text in ("python function", "stressed", "write a letter"):
        q = fts_query(text)
        old = [r[0] for r in demo_store.conn.execute(
            "SELECT s.id FROM (SELECT rowid, rank FROM samples_fts WHERE samples_fts MATCH ? ORDER BY rank LIMIT 20) h"
            " JOIN samples s ON s.rowid = h.rowid ORDER BY h.rank", [q])]
        assert [h["id"] for h in demo_store.search(text, limit=20)] == old and old


@pytest.mark.parametrize("f", [SampleFilter(dataset=DS, scenario="Exam Questions"),
                               SampleFilter(dataset=DS, judge="demo-gpt-4-turbo", case="w_constraints"),
                               SampleFilter(dataset=DS, text="stressed help")])
def test_browse_index_is_the_position_in_the_list(demo_store, f):
    rows, _ = all_rows(demo_store, f)
    assert [demo_store.browse_index(r["id"], f) for r in rows] == list(range(len(rows)))
    outside = next(i for i in demo_store.sample_ids(DS) if i not in {r["id"] for r in rows})
    assert demo_store.browse_index(outside, f) is None
    assert demo_store.browse_index("no-such-id", f) is None


# ------------------------------------------------------------------ contributions


def test_contributions_add_up_to_the_logit_and_flip_when_a_and_b_swap():
    rng = np.random.default_rng(3)
    keys = catalogue.attribute_keys()
    w = rng.normal(0, 0.5, len(keys))
    x = dict(zip(keys, rng.integers(-1, 2, len(keys)).tolist()))
    c = fit.contributions(keys, w, x)
    assert math.fsum(c.terms) == pytest.approx(c.logit, abs=1e-12)
    assert special.logit(c.p_a) == pytest.approx(c.logit)
    assert c.logit == pytest.approx(float(np.dot(w, [x[k] for k in keys])))
    swapped = fit.contributions(keys, w, {k: -v for k, v in x.items()})
    assert swapped.terms == pytest.approx([-t for t in c.terms])
    assert swapped.p_a == pytest.approx(1 - c.p_a)
    assert {c.predicted, swapped.predicted} == {"A", "B"}
    # an intercept (position preference) stays when A and B swap; only the attributes flip
    names = [INTERCEPT] + keys
    wi = np.concatenate([[0.4], w])
    ci, si = fit.contributions(names, wi, x), fit.contributions(names, wi, {k: -v for k, v in x.items()})
    assert ci.terms[0] == si.terms[0] == pytest.approx(0.4)
    assert si.terms[1:] == pytest.approx([-t for t in ci.terms[1:]])
    assert ci.logit + si.logit == pytest.approx(0.8)
    # a feature the sample lacks counts as equal, and is named
    partial = fit.contributions(keys, w, {k: v for k, v in x.items() if k != "clear"})
    assert partial.missing == ["clear"] and partial.terms[keys.index("clear")] == 0
    with pytest.raises(ValueError):
        fit.contributions(keys, [float("nan")] * len(keys), x)


def test_explain_uses_the_stored_profile_and_the_samples_features(demo_store):
    d = demo_store.design(DS, "demo", scope="Code")
    for i in (0, 7, 21):
        sid = d.sample_ids[i]
        for judge in ("demo-crowd", "demo-gpt-4-turbo"):
            e = samples.explain(demo_store, sid, judge)  # default scope: the sample's group
            prof = demo_store.profiles(dataset=DS, scope="Code", judges=[judge], method="fast")[0]
            assert e.scope == "Code" and e.profile["method"] == "fast" and e.problem is None
            # the position term leads (the sample as stored shows A first: its column is +1)
            assert prof["attributes"][0] == POSITION
            # the demo's judges tie (the crowd; the LLM judges when their two orders disagree), so the profile
            # ends in the tie parameter, which is no term of the logit: the logit is position + attributes
            terms = [k != TIE for k in prof["attributes"]]
            assert prof["attributes"][-1] == TIE and sum(terms) == 1 + d.X.shape[1]
            assert e.contributions.logit == pytest.approx(float(np.dot(np.r_[1.0, d.X[i]],
                                                                       np.asarray(prof["mean"])[terms])))
            assert e.frame_rows[0]["label"] == "shown first (position)"
            assert e.vote["choice"] == {1.0: "A", 0.0: "B"}[d.Y[i, d.judges.index(judge)]]
    # the demo's true weights are a profile too (method "truth"), when asked for
    t = samples.explain(demo_store, d.sample_ids[0], "demo-crowd", "Code", method="truth")
    assert t.profile["method"] == "truth" and t.contributions is not None
    missing = samples.explain(demo_store, d.sample_ids[0], "demo-crowd", "all", method="exact")
    assert missing.contributions is None and "fit one first" in missing.problem
    with pytest.raises(ValueError, match="unknown scope"):
        samples.explain(demo_store, d.sample_ids[0], "demo-crowd", "Cooking")


# ------------------------------------------------------------------ the sample view


def test_sample_view_of_the_demo_reads_back_its_ratings_errors_and_analysis(demo_store):
    sid = demo_store.sample_ids(DS)[0]
    v = samples.sample_view(demo_store, sid)
    parsed = demo_store.annotations_for(sid)[0]["parsed"]
    assert [r["attribute"] for r in v.features["demo"]] == catalogue.attribute_keys()
    stored = {r["attribute"]: r for r in demo_store.sample_features(sid, "demo")}
    assert all((r["value"], r["score_a"], r["score_b"]) == (stored[r["attribute"]]["value"], stored[r["attribute"]]["score_a"],
                                                           stored[r["attribute"]]["score_b"]) for r in v.features["demo"])
    notes = v.notes_for("demo")
    assert notes.annotator == demo.ANNOTATOR
    assert notes.analysis["constraints"] == parsed["query_analysis"]["constraints"]
    want = [("A", e["text"]) for e in parsed["response_a"]["errors"]] + [("B", e["text"]) for e in parsed["response_b"]["errors"]]
    assert [(e["response"], e["description"]) for e in notes.errors] == want
    assert {(x["judge"], x["choice"]) for x in v.votes} == {
        (r["judge"], r["choice"]) for r in demo_store.rows("SELECT judge, choice FROM labels WHERE sample_id = ?", [sid])}
    assert samples.sample_view(demo_store, "no-such-id") is None


def test_sample_view_orients_an_llm_annotators_answers_in_both_orders(pandalm):
    """A real annotation (loopback server, both orders): reasons, ratings and errors of the B-first
    answers are mapped back to A and B."""
    some = pandalm.samples_for("pandalm-test", limit=2)
    with LoopbackServer(seed=5) as server:
        settings = loopback_settings(server, max_retries=4, concurrency=4)
        annotate.run_annotation(pandalm, some, settings, both_orders=True)
    source = annotate.feature_source("loopback-1", True)
    sid = some[0]["id"]
    v = samples.sample_view(pandalm, sid)
    assert source in v.features and v.source_notes[source].startswith("loopback-1")
    rows = {(a["step"], a["orientation"]): a["parsed"] for a in pandalm.annotations_for(sid) if a["status"] == "ok"}
    notes = v.notes_for(source)
    ab, ba = rows[("ratings", "AB")], rows[("ratings", "BA")]
    for rated, key in (("clear", "clear"), ("repetitive", "non_repetitive")):
        assert notes.ratings[key]["A"] == [ab[rated]["r1"], ba[rated]["r2"]]
        assert notes.ratings[key]["B"] == [ab[rated]["r2"], ba[rated]["r1"]]
        row = next(r for r in v.features[source] if r["attribute"] == key)
        assert row["reasons"] == [f"[AB] {ab[rated]['reason']}", f"[BA] {ba[rated]['reason']}"]
    err_ab, err_ba = rows[("errors", "AB")], rows[("errors", "BA")]
    want = sorted([("A", "AB", e["description"]) for e in err_ab["errors_1"]] + [("B", "AB", e["description"]) for e in err_ab["errors_2"]]
                  + [("B", "BA", e["description"]) for e in err_ba["errors_1"]] + [("A", "BA", e["description"]) for e in err_ba["errors_2"]])
    assert sorted((e["response"], e["order"], e["description"]) for e in notes.errors) == want
    q = rows[("query", "AB")]
    assert notes.analysis == {"clear_intent": q["clear_intent"], "expresses_feelings": q["expresses_feelings"],
                              "constraints": q["constraints"], "stances": q["stances"], "mistakes": q["mistakes"]}
    # a reference the annotator wrote stands in for a missing one, and says who wrote it
    if not v.sample.get("reference"):
        assert v.reference == rows[("reference", "AB")]["answer"] and v.reference_from == "loopback-1"


# ------------------------------------------------------------------ the command line


def samples_cli(path, *args):
    return run_cli("samples", *args, store=path)


def test_samples_command_lists_and_explains(demo_store):
    res = samples_cli(demo_store.path, "--scope", "Code", "--judge", "demo-crowd", "--attr", "lengthy", "--json",
                  "--size", "500")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    f = SampleFilter(dataset=DS, scenario="Code", judge="demo-crowd", attributes=("lengthy",), feature_source="demo")
    rows, total = demo_store.browse(f, limit=500)
    assert out["total"] == total and [r["id"] for r in out["rows"]] == [r["id"] for r in rows]
    sid = rows[0]["id"]
    res = samples_cli(demo_store.path, "--show", sid, "--judge", "demo-crowd", "--json")
    e = json.loads(res.stdout)["explanation"]
    want = samples.explain(demo_store, sid, "demo-crowd")
    assert e["logit"] == pytest.approx(want.contributions.logit) and e["actual"] == want.vote["choice"]
    text = samples_cli(demo_store.path, "--show", sid, "--judge", "demo-crowd").stdout
    assert f"logit P(A) {want.contributions.logit:+.3f}" in text
    bad = samples_cli(demo_store.path, "--judge", "nobody")
    assert bad.returncode == 2 and "no labels from judge" in bad.stderr


def test_checked_filter_fills_the_defaults_and_names_what_does_not_exist(demo_store, tmp_path):
    """The list's filter rule (the CLI's ``samples`` options go through it): the first dataset with
    samples, the dataset's default feature set for attribute filters, the scope applied; a typo in a
    dataset or judge is an error naming it, not an empty list."""
    f = samples.checked_filter(demo_store, SampleFilter(attributes=("lengthy",), judge="demo-crowd"), "Code")
    assert f == SampleFilter(dataset=DS, scenario="Code", judge="demo-crowd", attributes=("lengthy",),
                             feature_source="demo")
    assert samples.checked_filter(demo_store, SampleFilter(dataset=DS), "w_mistakes").case == "w_mistakes"
    assert samples.checked_filter(demo_store, SampleFilter(dataset=DS)).feature_source is None  # no attributes
    assert samples.checked_filter(demo_store, SampleFilter(attributes=("clear",), feature_source="mine")).feature_source == "mine"
    with pytest.raises(ValueError, match=r"no dataset 'nope' with samples \(there are: " + DS):
        samples.checked_filter(demo_store, SampleFilter(dataset="nope"))
    with pytest.raises(ValueError, match=r"no labels from judge\(s\) 'x', 'y' on dataset"):
        samples.checked_filter(demo_store, SampleFilter(judge="x", disagree=("demo-crowd", "y")))
    with Store(tmp_path / "empty.db") as empty:
        with pytest.raises(ValueError, match=r"^no dataset None with samples$"):
            samples.checked_filter(empty, SampleFilter())
        add(empty, "bare", ["a question"])
        with pytest.raises(ValueError, match="dataset 'bare' has no features yet: run `python -m core annotate"):
            samples.checked_filter(empty, SampleFilter(attributes=("clear",)))


def test_list_rows_are_the_columns_the_page_shows(demo_store):
    f = SampleFilter(dataset=DS, judge="demo-crowd", disagree=("demo-crowd", "demo-gpt-4-turbo"),
                     attributes=("lengthy",), feature_source="demo", text="the")
    rows, _ = demo_store.browse(f, limit=5)
    out = samples.list_rows(rows)
    label = catalogue.attribute("lengthy").label
    assert list(out[0]) == ["#", "scenario", "query", "demo-crowd", "demo-gpt-4-turbo", f"{label}: better",
                            "model A", "model B", "words A", "words B", "match (bm25)"]
    for r, rec in zip(rows, out):
        assert rec["#"] == r["position"] + 1 and rec["demo-crowd"] == r["choices"]["demo-crowd"]
        assert rec[f"{label}: better"] == {1: "A", -1: "B", 0: "equal"}[r["features"]["lengthy"]]
        assert rec["match (bm25)"] == -r["score"] > 0
    assert "match (bm25)" not in samples.list_rows(demo_store.browse(SampleFilter(dataset=DS), limit=1)[0])[0]


def test_notes_read_a_first_before_b_first_whatever_order_the_answers_were_stored_in():
    """Concurrent requests store an annotator's two orders in the order they finished: the notes still
    read [A shown first, B shown first] (the B-first answer's r1 is response B)."""
    row = lambda order, r1, r2: {"annotator": "m", "prompt_version": "v", "step": "ratings", "orientation": order,
                                 "status": "ok", "parsed": {"clear": {"r1": r1, "r2": r2}}}
    for rows in ([row("AB", 3, 1), row("BA", 2, 4)], [row("BA", 2, 4), row("AB", 3, 1)]):
        (notes,) = samples.annotator_notes(rows)
        assert notes.orders == ["AB", "BA"]
        assert notes.ratings["clear"] == {"A": [3, 4], "B": [1, 2]}
