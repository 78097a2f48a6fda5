"""The Judges page (AppTest): agreement and position-consistency figures equal core's; a judge
collected from the loopback server in both orders; uploads that add a judge, and a malformed one
that shows the file, row and field and leaves the store byte-for-byte unchanged."""

import json
import time

import pytest

from core import demo, jobs, judges
from core.loopback import LoopbackServer
from core.store import Store
from dashboard import charts
from tests.conftest import demo_samples, store_sha256
from tests.stsession import frame_with, open_page

PAGE = "judges"  # pages/judges.py


@pytest.fixture
def store_path(unfitted_store_path, monkeypatch):
    path = unfitted_store_path
    for name in ("PREFDISSECT_LLM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFDISSECT_LLM_MODEL",
                 "PREFDISSECT_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return path


def plain(markdown: str) -> str:
    return markdown.replace("\\", "")


def wait_done(store, job_id, at, timeout=180):
    """The job once finished, its row polled every 0.05 s; the page is run again every 0.3 s meanwhile and
    must raise nothing."""
    deadline = time.time() + timeout
    rerun_at = time.time()
    while time.time() < deadline:
        job = jobs.get(store, job_id)
        if job.status in jobs.FINISHED:
            return job
        if time.time() >= rerun_at:
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            rerun_at = time.time() + 0.3
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_figures_match_core_and_a_judge_collected_in_both_orders_shows_its_position_consistency(store_path,
                                                                                                monkeypatch):
    at = open_page(PAGE)
    assert at.selectbox(key="judges_dataset").value == "demo-synthetic"  # the only dataset
    # the demo's LLM judges are judged in both orders: the page shows their position consistency from the start,
    # core's figures, and the crowd (one verdict a pair) is not among them
    assert not any("No judge here has verdicts in both orders" in i.value for i in at.info)
    with Store(store_path) as s:
        both = {j: judges.position_consistency(s, j) for j in demo.JUDGES if demo.JUDGES[j]["both_orders"]}
    assert both and all(c.both_orders == demo_samples() for c in both.values())
    start = frame_with(at, "agreement_ref").set_index("name")
    for j, c in both.items():
        assert (start.loc[j, "both_orders"], start.loc[j, "consistent"]) == (c.both_orders, c.consistent)
    assert start.loc["demo-crowd", "both_orders"] == 0

    with LoopbackServer(latency=0.05) as server:
        monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "sk-test-judges")
        monkeypatch.setenv("PREFDISSECT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "loopback-1")
        at = open_page(PAGE)
        with pytest.raises(KeyError):
            at.text_input(key="collect_judge")  # a closed tab does not run (nor estimate its cost)
        at.session_state["judges_add_tab"] = "Collect from a model"
        at.run()
        at.multiselect(key="collect_groups").set_value(["Code", "Advice"])
        at.number_input(key="collect_limit").set_value(30)
        at.text_input(key="collect_judge").input("loopback-judge")
        at.run()
        est = {m.label: m.value for m in at.metric}
        assert est["Samples"] == "30" and est["Requests to send"] == "60"  # both orders: two requests a sample
        at.button(key="collect_start").click().run()
        assert not at.exception, [e.value for e in at.exception]
        with Store(store_path) as s:
            (job,) = jobs.list_jobs(s)
            assert job.kind == "judge" and job.params["judge"] == "loopback-judge" and job.params["both_orders"]
            final = wait_done(s, job.id, at)
        assert final.status == "done" and final.done == 30

    at.run()
    assert not at.exception, [e.value for e in at.exception]
    with Store(store_path) as s:
        pairs_core = {(a.judge_a, a.judge_b): (a.shared, a.agree) for a in judges.agreement(s, "demo-synthetic")}
        cons = judges.position_consistency(s, "loopback-judge")
        labels = {j["name"]: j["labels"] for j in s.judges("demo-synthetic")}
    assert cons.both_orders == 30 and 0 < cons.consistent <= 30
    reference = at.selectbox(key="judges_reference").value
    table = frame_with(at, "agreement_ref").set_index("name")
    assert dict(table["labels"]) == labels and labels["loopback-judge"] == 30
    for name, row in table.iterrows():
        if name == reference:
            continue
        shared, agree = pairs_core[tuple(sorted((name, reference)))]
        assert (row["shared_ref"], row["agree_ref"]) == (shared, agree), name
        assert row["agreement_ref"] == pytest.approx(agree / shared)
    row = table.loc["loopback-judge"]
    assert (row["both_orders"], row["consistent"]) == (cons.both_orders, cons.consistent)
    assert row["consistency"] == pytest.approx(cons.rate)
    # kappa beside every agreement, from core's counts
    with Store(store_path) as s:
        want = judges.judge_table(s, "demo-synthetic", reference).set_index("name")
    assert table["kappa_ref"].drop(reference).to_numpy() == pytest.approx(want["kappa_ref"].drop(reference).to_numpy())

    # the bias card of the collected judge: its consistency is the one counted above
    at.selectbox(key="judges_bias_judge").set_value("loopback-judge").run()
    assert not at.exception, [e.value for e in at.exception]
    card = frame_with(at, "aspect").set_index("measure")
    same = card.loc["same verdict in both orders (consistency)"]
    assert same["n"] == cons.both_orders and same["value"] == pytest.approx(cons.rate)
    assert card.loc["first-slot rate (the response shown first wins)", "n"] > 0
    at.text_input(key="judges_bias_families").input("loopback=loop, ([=bad").run()
    assert not at.exception and any("not a regular expression" in i.value for i in at.info)
    assert table.loc["demo-crowd", "both_orders"] == 0 and pd_isna(table.loc["demo-crowd", "consistency"])
    pairs = frame_with(at, "judge_a")
    assert {(r.judge_a, r.judge_b): (r.shared, r.agree) for r in pairs.itertuples()} == pairs_core

    # another reference: the figures follow
    at.selectbox(key="judges_reference").set_value("loopback-judge").run()
    table = frame_with(at, "agreement_ref").set_index("name")
    shared, agree = pairs_core[("demo-gpt-4-turbo", "loopback-judge")]
    assert (table.loc["demo-gpt-4-turbo", "shared_ref"], table.loc["demo-gpt-4-turbo", "agree_ref"]) == (shared, agree)
    assert shared == 30


def pd_isna(x) -> bool:
    import pandas as pd

    return bool(pd.isna(x))


def test_uploading_the_papers_json_list_adds_a_judge(store_path):
    with Store(store_path) as s:
        ids = s.sample_ids("demo-synthetic")
        crowd = {r["sample_id"]: r["choice"] for r in s.labels("demo-synthetic", ["demo-crowd"])}
    half = len(ids) // 2
    flip = {"A": "B", "B": "A"}
    decisive = {"A": "A", "B": "B", "tie": "A"}  # the paper's JSON list holds A or B only; the crowd also ties
    uploaded = [decisive[crowd[i]] for i in ids[:half]] + [flip[decisive[crowd[i]]] for i in ids[half:]]
    agree = sum(u == crowd[i] for u, i in zip(uploaded, ids))
    at = open_page(PAGE)
    at.file_uploader(key="labels_file").set_value(("my_judge.json", json.dumps(uploaded).encode(), "application/json"))
    at.text_input(key="upload_judge").input("uploaded-judge")
    at.selectbox(key="upload_kind").set_value("human")
    at.run()
    at.button(key="upload_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any(f"Added {len(ids):,} labels for judge uploaded-judge" in plain(s.value) for s in at.success)
    with Store(store_path) as s:
        row = next(j for j in s.judges() if j["name"] == "uploaded-judge")
        source = s.scalar("SELECT DISTINCT source FROM labels WHERE judge = 'uploaded-judge'")
    assert (row["kind"], row["labels"]) == ("human", len(ids)) and source == "upload:my_judge.json"
    # it is listed, and offered for fitting
    assert "uploaded-judge" in set(frame_with(at, "agreement_ref")["name"])
    assert at.multiselect(key="judges_fit_judges").value == ["uploaded-judge"]
    # a new session takes the human judge as the reference: it agrees with demo-crowd where it copied a decisive choice
    fresh = open_page(PAGE)
    assert fresh.selectbox(key="judges_reference").value == "uploaded-judge"
    table = frame_with(fresh, "agreement_ref").set_index("name")
    assert (table.loc["demo-crowd", "shared_ref"], table.loc["demo-crowd", "agree_ref"]) == (len(ids), agree)


@pytest.mark.parametrize("name, content, where", [
    ("labels_bad.csv", "sample_id,label\n{0},A\n{1},B\n{2},C\n", ["labels_bad.csv", "row 3", "label"]),
    ("labels_short.json", '["A", "B", "A"]', ["labels_short.json", f"3 labels for the {demo_samples()} samples"]),
    ("labels_unknown.csv", "sample_id,label\n{0},A\nnot-a-sample,B\n", ["labels_unknown.csv", "row 2", "sample_id"]),
])
def test_a_malformed_upload_shows_where_and_leaves_the_store_unchanged(store_path, name, content, where):
    with Store(store_path) as s:
        ids = s.sample_ids("demo-synthetic")
    before = store_sha256(store_path)
    at = open_page(PAGE)
    at.file_uploader(key="labels_file").set_value((name, content.format(*ids).encode(), "text/plain"))
    at.text_input(key="upload_judge").input("bad-judge")
    at.run()
    at.button(key="upload_add").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (err,) = at.error
    text = plain(err.value)
    assert text.startswith("Not imported; the store is unchanged.")
    for part in where:
        assert part in text, text
    assert store_sha256(store_path) == before
    with Store(store_path) as s:
        assert "bad-judge" not in {j["name"] for j in s.judges()}


def test_judge_rates_chart_spec():
    import pandas as pd

    frame = pd.DataFrame({"name": ["a", "b", "c"], "consistency": [0.9, None, 0.4], "both_orders": [10, 0, 5]})
    spec = charts.judge_rates(frame, "consistency", title="position consistency", count="both_orders").to_dict()
    bars, rule = spec["layer"]
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["x"]["scale"]["domain"] == [0, 1]
    values = spec["datasets"][bars["data"]["name"]]
    assert [(v["name"], v["consistency"]) for v in values] == [("a", 0.9), ("c", 0.4)]  # no rate: left out
    assert spec["datasets"][rule["data"]["name"]] == [{"x": 0.5}]


def test_collect_in_batch_mode_from_the_page(store_path, monkeypatch):
    with LoopbackServer() as server:
        monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "sk-test-judges")
        monkeypatch.setenv("PREFDISSECT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "loopback-1")
        at = open_page(PAGE)
        at.session_state["judges_add_tab"] = "Collect from a model"
        at.run()
        at.multiselect(key="collect_groups").set_value(["Code"])
        at.number_input(key="collect_limit").set_value(4)
        at.text_input(key="collect_judge").input("batch-judge")
        at.toggle(key="collect_batch").set_value(True)
        at.run()
        at.button(key="collect_start").click().run()
        assert not at.exception, [e.value for e in at.exception]
        with Store(store_path) as s:
            (job,) = jobs.list_jobs(s)
            assert job.params["llm"]["batch"] is True
            final = wait_done(s, job.id, at)
            assert final.status == "done" and final.done == 4, final.message
            assert len(s.llm_batches(job_id=job.id)) == 1
            assert s.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'batch-judge' AND verdict_ba IS NOT NULL") == 4
        assert server.stats.chat_requests == 0 and len(server.batch_lines) == 8


def test_bias_card_shows_at_once_and_fills_in_its_fitted_covariate(store_path):
    """Issue 17 point 7: the bias card's own-family covariate is a posterior fit (over a second at the
    paper's scale, most of the Judges page's first render). The page no longer waits for it: the card
    shows its counts at once, that one row says it is being fitted (no figure) until a background thread
    has it, and then it holds the figure core.bias computes, the same as the CLI's card."""
    import pandas as pd

    from core import bias
    from dashboard import data_judges

    judge = "demo-gpt-4-turbo"  # family openai; the demo's models belong to no family until one is given
    at = open_page(PAGE, {"card": judge})
    at.text_input(key="judges_bias_families").input("model-alpha=openai").run()
    assert not at.exception, [e.value for e in at.exception]
    card = frame_with(at, "aspect").set_index("measure")
    row = card.loc[bias.COVARIATE]
    assert not pd.isna(row["value"]) or (pd.isna(row["lo"]) and "being fitted" in row["note"]), row
    assert card.loc["same verdict in both orders (consistency)", "n"] > 0  # the rest is there from the start
    for future in list(data_judges._covariate_fits()["futures"].values()):
        future.result(timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    row = frame_with(at, "aspect").set_index("measure").loc[bias.COVARIATE]
    with Store(store_path) as s:
        families = bias.families_with(["model-alpha=openai"])
        want = bias.self_preference_covariate(s, judge, demo.DEMO_DATASET, families=families)
        whole = {i.measure: i for i in bias.bias_card(s, judge, demo.DEMO_DATASET, families=families)}[bias.COVARIATE]
    assert want == whole and want.value is not None  # the covariate alone is the full card's row
    assert (row["value"], row["lo"], row["hi"], row["n"], row["note"]) == pytest.approx(
        (want.value, want.lo, want.hi, want.n, want.note))
