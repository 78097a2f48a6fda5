"""Fitting from the store: the dissection of a dataset saved as profiles, and published profiles."""

import json
from pathlib import Path

import numpy as np
import pytest

from core import annotate, catalogue, demo, fit, importers
from core.profile import MIN_DIFFERING, POSITION, TIE
from core.store import Store
from tests.conftest import copy_store, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, demo_file):
    """The module's copy of the session's fitted demo: the dissection of every scope and judge (the first
    test's subject) was run once, by the session's build (``demo_dissection``), as on a first start."""
    store = Store(copy_store(demo_file, tmp_path_factory.mktemp("dissect") / "store.db"))
    yield store
    store.close()


def test_dissection_of_the_demo_stores_a_profile_per_scope_and_judge(demo_store, demo_dissection):
    """The session demo's dissection (``fit.dissect`` over every scope and judge, on a store without profiles:
    ``demo_dissection`` is its report, ``demo_store`` a copy of the store it wrote)."""
    rep = demo_dissection
    assert rep.fitted and not rep.unchanged
    profiles = demo_store.profiles(dataset=demo.DEMO_DATASET, method="fast", with_draws=True)
    scopes = {p["scope"] for p in profiles}
    assert {"all", *catalogue.group_keys()} <= scopes
    assert len(profiles) == len(rep.fitted)
    assert {(p["scope"], p["judge"]) for p in profiles} == set(rep.fitted)
    for p in profiles:
        # the position term ("shown first") leads; every demo judge ties (the crowd; the LLM judges where their
        # two orders disagree), so Davidson's tie parameter ends every profile
        assert p["attributes"] == [POSITION, *catalogue.attribute_keys(), TIE]
        assert len(p["mean"]) == len(p["sd"]) == len(p["lo"]) == len(p["hi"]) == 31
        assert all(lo <= m <= hi for lo, m, hi in zip(p["lo"], p["mean"], p["hi"]))
        assert p["interval"] == "eti94" and p["n"] >= fit.MIN_SAMPLES
        assert 0 <= p["accuracy"] <= 1 and p["log_loss"] > 0
        assert max(p["rhat"]) < 1.05 and min(p["ess"]) > 200
        prov = p["provenance"]
        assert prov["prior"] == {"family": "laplace", "scale": 0.1} and prov["versions"]["pymc"]
        assert p["draws"].shape[1] == 31
        assert prov["model"] == {"position": True, "ties": "davidson"}
        assert set(prov["baselines"]) == set(fit.BASELINES) and len(prov["differing"]) == 31
    # scopes with too few labelled samples are reported, not fitted
    for scope, why in rep.skipped:
        assert "labelled samples" in why


def test_unchanged_inputs_are_not_refitted_and_a_changed_label_is(demo_store):
    fit.dissect(demo_store, demo.DEMO_DATASET, "demo", scopes=["Code"])
    again = fit.dissect(demo_store, demo.DEMO_DATASET, "demo", scopes=["Code"])
    assert not again.fitted and len(again.unchanged) == 4
    sid = demo_store.samples_for(demo.DEMO_DATASET, scenario="Code", limit=1)[0]["id"]
    with demo_store.writing():
        demo_store.conn.execute(
            "UPDATE labels SET choice = CASE choice WHEN 'A' THEN 'B' ELSE 'A' END WHERE sample_id = ? AND judge = ?",
            (sid, "demo-crowd"))
    changed = fit.dissect(demo_store, demo.DEMO_DATASET, "demo", scopes=["Code"])
    assert changed.fitted == [("Code", "demo-crowd")]


def test_intervals_cover_the_demo_judges_true_weights(demo_store):
    """The demo's judges are the paper's published weights scaled up (real judges' strength: see
    core.demo), far stronger than the paper's default prior expects (mean |w| about 1 against
    Laplace(0, 0.1), whose mean |w| is 0.1), so coverage is checked with a prior of the demo's scale:
    the Laplace scale that fits the true weights (its maximum-likelihood estimate, the mean |w|).
    With b = 0.1 the large weights are shrunk and covered less often.

    500 draws a chain suffice: over seeds 0-2 the rate was 0.971-0.973 with 1,000 and 0.970-0.972 with
    500, as far from either bound (about 25 weights of 1,276 below the upper one), at half the CPU."""
    truth = {(p["scope"], p["judge"]): np.array(p["mean"]) for p in
             demo_store.profiles(dataset=demo.DEMO_DATASET, method="truth")}
    tasks = {g: demo_store.design(demo.DEMO_DATASET, "demo", scope=g) for g in catalogue.group_keys()}
    judges = tasks["Code"].judges
    true_w = np.concatenate([truth[(g, j)] for g in tasks for j in judges])
    b = float(np.mean(np.abs(true_w)))
    assert 0.5 <= b <= 2.0, b
    covered = []
    fits = fit.fit_groups({g: (d.X, d.Y) for g, d in tasks.items()}, judges, prior_scale=b, folds=0, draws=500)
    for g, profiles in fits.items():
        for judge, p in zip(judges, profiles):
            w = truth[(g, judge)]
            covered.extend((w >= np.array(p.lo)) & (w <= np.array(p.hi)))
    rate = float(np.mean(covered))
    assert len(covered) == 11 * 4 * 29
    assert 0.88 <= rate <= 0.99, rate


def test_published_profiles_import_as_means_only(tmp_path, shared_data):
    store = Store(tmp_path / "s.db")
    n = fit.import_published(store, shared_data / "gair" / "fitted_paras_comparison")
    assert n == 16 * 33
    rows = store.profiles(dataset="published")
    assert len(rows) == 528 and all(r["imported"] == 1 and r["method"] == "imported" for r in rows)
    human = next(r for r in rows if r["scope"] == "Advice" and r["judge"] == "human")
    first = json.loads((shared_data / "gair" / "fitted_paras_comparison" / "model_Advice_fitted_paras.jsonl")
                       .read_text().splitlines()[0])
    expect = next(json.loads(line) for line in
                  (shared_data / "gair" / "fitted_paras_comparison" / "model_Advice_fitted_paras.jsonl")
                  .read_text().splitlines() if json.loads(line)["model_name"] == "human")
    assert human["mean"] == pytest.approx(expect["parameters"]) and first["parameters"]
    assert human["sd"] is None and human["attributes"] == catalogue.attribute_keys()
    # importing again replaces, never duplicates
    fit.import_published(store, shared_data / "gair" / "fitted_paras_comparison")
    assert len(store.profiles(dataset="published")) == 528


def test_real_judges_of_pandalm_on_heuristic_features(tmp_path, pandalm_heuristic_file):
    """Three humans, their majority and two LLM judges of PandaLM, on the offline features (the session's
    import and heuristics of PandaLM's test set): every judge rewards the longer response, and each predicts
    held-out choices better than chance."""
    store = Store(copy_store(pandalm_heuristic_file, tmp_path / "s.db"))
    fit.dissect(store, "pandalm-test", "heuristic:v1", scopes=["all"])
    profiles = {p["judge"]: p for p in store.profiles(dataset="pandalm-test", scope="all")}
    assert set(profiles) == {"pandalm-annotator1", "pandalm-annotator2", "pandalm-annotator3",
                             "pandalm-human-majority", "gpt-3.5-turbo", "pandalm-7b"}
    for judge, p in profiles.items():
        i = p["attributes"].index("lengthy")  # the position term leads
        assert p["lo"][i] > 0, f"{judge} does not reward length"
        assert p["accuracy"] > 0.55, (judge, p["accuracy"])
        # the heuristics measure a few attributes: the others are marked, not estimated
        prov = p["provenance"]
        assert prov["differing"][i] > MIN_DIFFERING
        unmeasured = [k for k, c in zip(p["attributes"], prov["differing"]) if c == 0]
        assert "no_severe_errors" in unmeasured and POSITION not in unmeasured


def test_cli_fit_and_profiles(unfitted_demo_copy, shared_data):
    path = unfitted_demo_copy

    def run(*args):
        res = run_cli(*args, store=path)
        assert res.returncode == 0, res.stderr
        return res.stdout

    out = run("fit", "--dataset", demo.DEMO_DATASET, "--scopes", "all,Code", "--show")
    assert "8 profiles fitted" in out and "held-out acc" in out
    assert "0 profiles fitted, 8 unchanged" in run("fit", "--dataset", demo.DEMO_DATASET, "--scopes", "all,Code")
    assert "528 imported profiles" in run("profiles", "--import", str(shared_data / "gair" / "fitted_paras_comparison"))
    listing = run("profiles", "--dataset", demo.DEMO_DATASET)
    assert sum(" fast " in line for line in listing.splitlines()) == 8
    assert sum(" truth " in line for line in listing.splitlines()) == 44  # the demo's known profiles
    res = run_cli("fit", "--dataset", "nope", store=path)
    assert res.returncode == 2 and res.stderr.strip() == "error: no dataset 'nope'"


def test_the_papers_model_is_one_option_away(demo_store):
    fit.dissect(demo_store, demo.DEMO_DATASET, "demo", scopes=["Code"], judges=["demo-crowd"], position=False,
                ties="drop", force=True)
    (p,) = demo_store.profiles(dataset=demo.DEMO_DATASET, scope="Code", judges=["demo-crowd"], method="fast")
    assert p["attributes"] == catalogue.attribute_keys()  # no position term, no tie parameter
    assert p["provenance"]["model"] == {"position": False, "ties": "drop"}
    assert p["provenance"]["requested"]["position"] is False


def test_autoj_both_orders_and_ties_on_real_data(tmp_path, shared_data):
    """Auto-J's pairwise test set: human labels with ties (a third), and Auto-J-13B's own verdicts in both
    orders. The human profile models ties (Davidson) with one order per sample; Auto-J's enters both
    orders as two observations, so its position term rests on twice the verdicts; the tie rates are the
    data's; each profile's held-out accuracy stands beside its baselines."""
    store = Store(tmp_path / "a.db")
    importers.import_file(store, "autoj", shared_data / "autoj" / "testdata_pairwise.jsonl")
    (dataset,) = [d["name"] for d in store.datasets()]
    annotate.run_heuristics(store, store.samples_for(dataset))
    fit.dissect(store, dataset, "heuristic:v1", scopes=["all"])
    profiles = {p["judge"]: p for p in store.profiles(dataset=dataset, scope="all")}
    assert len(profiles) == 2
    labels = store.rows("SELECT judge, choice, verdict_ab, verdict_ba FROM labels")
    for judge, p in profiles.items():
        mine = [r for r in labels if r["judge"] == judge]
        prov = p["provenance"]
        assert p["attributes"][0] == POSITION and p["attributes"][-1] == TIE
        assert prov["model"] == {"position": True, "ties": "davidson"}
        both = sum(r["verdict_ab"] is not None and r["verdict_ba"] is not None for r in mine)
        if both:  # Auto-J: every verdict of both orders is an observation
            verdicts = [v for r in mine for v in (r["verdict_ab"], r["verdict_ba"]) if v is not None]
        else:  # the human labels: one per sample
            verdicts = [r["choice"] for r in mine]
        assert prov["ties"] == {"observed": verdicts.count("tie"), "observations": len(verdicts)}
        assert set(prov["baselines"]) == set(fit.BASELINES) and p["accuracy"] is not None
    human = next(p for j, p in profiles.items() if p["provenance"]["ties"]["observations"] == 1392)
    assert human["provenance"]["ties"]["observed"] == 373  # the data README's count
    store.close()


# --------------------------------------------------------------------------- soft labels (issue 15, point 2)


def test_soft_labels_from_the_store_by_default_and_hard_one_option_away(demo_store):
    """demo-crowd gives one verdict per pair, here with a P(A): soft labels by default, recorded; the judges asked
    in both orders pool their P(A) over the orders, so their per-order rows stay hard (and their input keys
    stay those of a hard fit). ``labels="hard"`` refits only the judge whose fit changes; so does a
    changed P(A)."""
    kw = dict(scopes=["Code"])
    with demo_store.writing():  # the demo's crowd votes carry no P(A): give it a five-rater vote share
        demo_store.conn.execute("UPDATE labels SET prob_a = CASE choice WHEN 'A' THEN 0.8 WHEN 'B' THEN 0.2 END"
                                " WHERE judge = 'demo-crowd'")
    fit.dissect(demo_store, demo.DEMO_DATASET, "demo", force=True, **kw)
    got = {p["judge"]: p for p in demo_store.profiles(dataset=demo.DEMO_DATASET, scope="Code", method="fast")}
    crowd = got["demo-crowd"]["provenance"]
    assert crowd["labels"]["mode"] == "soft" and crowd["labels"]["soft"] > 0.5 * got["demo-crowd"]["n"]
    assert crowd["requested"]["labels"] == "soft" and crowd["requested"]["prob_a"]
    assert crowd["settings"]["labels"] == "soft"
    gpt = got["demo-gpt-4-turbo"]["provenance"]
    assert gpt["labels"]["soft"] == 0 and "labels" not in gpt["requested"]
    hard = fit.dissect(demo_store, demo.DEMO_DATASET, "demo", labels="hard", **kw)
    assert hard.fitted == [("Code", "demo-crowd")] and len(hard.unchanged) == 3
    (p,) = demo_store.profiles(dataset=demo.DEMO_DATASET, scope="Code", judges=["demo-crowd"], method="fast")
    assert p["provenance"]["labels"] == {"mode": "hard", "soft": 0, "conflicts": 0}
    assert fit.dissect(demo_store, demo.DEMO_DATASET, "demo", **kw).fitted == [("Code", "demo-crowd")]
    sid = next(r["sample_id"] for r in demo_store.rows(
        "SELECT l.sample_id FROM labels l JOIN samples s ON s.id = l.sample_id WHERE s.scenario_group = 'Code'"
        " AND l.judge = 'demo-crowd' AND l.choice = 'A'"))
    with demo_store.writing():
        demo_store.conn.execute("UPDATE labels SET prob_a = 0.99 WHERE sample_id = ? AND judge = 'demo-crowd'", (sid,))
    assert fit.dissect(demo_store, demo.DEMO_DATASET, "demo", **kw).fitted == [("Code", "demo-crowd")]
    with pytest.raises(ValueError, match="labels must be one of"):
        fit.dissect(demo_store, demo.DEMO_DATASET, "demo", labels="fuzzy", **kw)


def test_soft_and_hard_labels_on_real_pandalm_and_alpacaeval(tmp_path, shared_data, pandalm_heuristic_file):
    """PandaLM's human majority carries its vote share, AlpacaEval's weighted GPT-4-Turbo judge its
    preference probability: both fits run, the soft one is recorded as such, and the two profiles agree
    in shape (held-out scores are against the same choices). PandaLM with its heuristic features is the
    session's; AlpacaEval is imported and rated here."""
    store = Store(copy_store(pandalm_heuristic_file, tmp_path / "s.db"))
    assert [d["name"] for d in store.datasets()] == ["pandalm-test"]
    weighted = shared_data / "alpaca_eval" / "gpt-3.5-turbo-0301" / "weighted_alpaca_eval_gpt4_turbo" / "annotations.json"
    alpaca = importers.import_file(store, "alpaca_eval", weighted).dataset
    annotate.run_heuristics(store, store.samples_for(alpaca))
    for d in store.datasets():
        judges = [j for j in store.judge_names(d["name"]) if j in ("pandalm-human-majority",) or "weighted" in j]
        assert judges, d["name"]
        for labels in ("soft", "hard"):
            fit.dissect(store, d["name"], "heuristic:v1", scopes=["all"], judges=judges, labels=labels, force=True)
            for p in store.profiles(dataset=d["name"], scope="all", judges=judges):
                lab = p["provenance"]["labels"]
                assert lab["mode"] == labels and (lab["soft"] > 0) == (labels == "soft"), (p["judge"], lab)
                assert p["accuracy"] > 0.55


def test_cli_fit_labels_option(unfitted_demo_copy):
    res = run_cli("fit", "--dataset", demo.DEMO_DATASET, "--scopes", "Code", "--judges", "demo-crowd", "--labels",
                  "hard", store=unfitted_demo_copy)
    assert res.returncode == 0, res.stderr
    assert "1 profiles fitted" in res.stdout
    store = Store(unfitted_demo_copy)
    try:
        (p,) = store.profiles(dataset=demo.DEMO_DATASET, scope="Code", judges=["demo-crowd"], method="fast")
    finally:
        store.close()
    assert p["provenance"]["labels"]["mode"] == "hard" and p["provenance"]["settings"]["labels"] == "hard"
    res = run_cli("fit", "--dataset", demo.DEMO_DATASET, "--paper", "--labels", "soft", store=unfitted_demo_copy)
    assert res.returncode == 2 and "--paper fits hard labels" in res.stderr
    assert "--labels {soft,hard}" in run_cli("fit", "--help").stdout
