"""The Samples page (AppTest): filter -> pick -> the sample view shows the store's numbers; the URL
round-trips; previous / next; the Profiles drill-down contract; bad links. Plus its pure parts: the
inert markdown renderer (dashboard/render.py, checked with a CommonMark parser), the URL state
(dashboard/sampleurl.py) and the waterfall chart builder."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from core import catalogue, demo, samples
from core.profile import POSITION, TIE, is_position
from core.records import Dataset, ImportBatch, Sample
from core.store import SampleFilter, Store
from dashboard.render import figure
from dashboard import charts, render, sampleurl
from tests.conftest import demo_samples
from tests.stsession import frame_with, open_page, rerun

PAGE = "samples"  # pages/samples.py
DS = demo.DEMO_DATASET
K = "samples_"


# ------------------------------------------------------------------ dashboard/render.py


def tokens(text: str):
    """Every token a CommonMark (+ GFM tables) parser makes of ``text``, nested ones included."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark").enable("table").enable("strikethrough")

    def walk(ts):
        for t in ts:
            yield t
            yield from walk(t.children or [])

    return list(walk(md.parse(text)))


def shown(text: str) -> str:
    """The text a reader sees (text, code and fence contents), as the parser renders it."""
    return "".join(t.content for t in tokens(text) if t.type in ("text", "code_inline", "fence", "code_block"))


HOSTILE = [
    "<script>window.__pwned=1</script>",
    "look ![x](http://127.0.0.1:9/pixel.png) here",
    "<img src=http://127.0.0.1:9/img.png onerror=alert(1)>",
    "[click](javascript:alert(1)) [c2](JAVASCRIPT:alert(1)) [d]( data:text/html;base64,PHNjcmlwdD4=)",
    "[e](jav&#x61;script:alert(1)) [f](<javascript:alert(1)>) [g](javascript\\:alert(1))",
    "![ref][r]\n\n[r]: http://127.0.0.1:9/ref.png",
    "[t][bad]\n\n[bad]: javascript:alert(1)",
    "<http://127.0.0.1:9/auto> and <!-- comment --> and <div onclick=x>",
    "`` `code` `` then ![late](http://127.0.0.1:9/late.png)",
    "```\n![in fence](http://127.0.0.1:9/fence.png)\n<script>f()</script>\n```",
    "- item\n  ```\n- b\n![lazy](http://127.0.0.1:9/lazy.png)",
    "\\<script>escaped()</script> \\![x](http://127.0.0.1:9/e.png)",
    "| a | b |\n|---|---|\n| `x | <script>y()</script> | z` |",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_inert_markdown_has_no_html_no_images_and_only_web_links(text):
    out = render.inert_markdown(text)
    toks = tokens(out)
    kinds = {t.type for t in toks}
    assert not kinds & {"html_inline", "html_block", "image"}, kinds
    hrefs = [t.attrs.get("href") for t in toks if t.type == "link_open"]
    assert all(re.match(r"(https?://|mailto:)", h or "", re.I) for h in hrefs), hrefs


def test_inert_markdown_shows_html_and_image_syntax_as_text():
    out = render.inert_markdown("Hi <script>window.__pwned=1</script> ![x](http://h/p.png) & $5")
    assert shown(out) == "Hi <script>window.__pwned=1</script> ![x](http://h/p.png) & $5"


def test_inert_markdown_keeps_formatting_code_and_web_links():
    text = ("# Title\n\nSome **bold** and *it*, a [site](https://example.org) and `a < b`.\n\n"
            "- one\n- two\n\n```python\nif a < b and c > d:\n    print('<ok>')\n```\n\n| x | y |\n|---|---|\n| 1 | 2 |")
    toks = tokens(render.inert_markdown(text))
    kinds = [t.type for t in toks]
    for kind in ("heading_open", "strong_open", "em_open", "bullet_list_open", "table_open", "code_inline", "fence"):
        assert kind in kinds
    assert [t.attrs["href"] for t in toks if t.type == "link_open"] == ["https://example.org"]
    assert next(t.content for t in toks if t.type == "fence") == "if a < b and c > d:\n    print('<ok>')\n"
    assert next(t.content for t in toks if t.type == "code_inline") == "a < b"


def test_inert_markdown_keeps_line_breaks_and_plain_escapes_everything():
    toks = tokens(render.inert_markdown("roses are red\nviolets are blue"))
    assert "hardbreak" in [t.type for t in toks]
    assert render.inert_markdown(None) == ""
    label = "*not* [a](javascript:x) <b> #1 $x"
    # shown exactly as written (bar invisible zero-width spaces that keep URLs and e-mails from linking)
    assert shown(render.plain(label)).replace(render.ZWSP, "") == label
    assert not {t.type for t in tokens(render.plain(label))} & {"em_open", "link_open", "html_inline"}
    assert shown(render.plain_lines("a*\nb_")) == "a*b_"  # two lines, markup literal


# ------------------------------------------------------------------ dashboard/sampleurl.py


OPTIONS = sampleurl.Options(scenarios=catalogue.group_keys(), judges=sorted(demo.JUDGES), sources=["demo"])


def parse(params):
    return sampleurl.parse(params, datasets=[DS, "other"], dataset_of=lambda i: DS if i.startswith("s") else None,
                           options=lambda d: OPTIONS)


@pytest.mark.parametrize("state", [
    sampleurl.State(dataset=DS, source="demo"),
    sampleurl.State(dataset=DS, scenario="Code", case="w_stances", judge="demo-crowd", source="demo", page=3, size=25),
    sampleurl.State(dataset=DS, disagree=("demo-crowd", "demo-gpt-4-turbo"), attributes=("clear", "lengthy"), source="demo",
                    direction="B", excluded=True, q="python", id="s1", scope="all", vjudge="demo-tulu-70b"),
    sampleurl.State(dataset=DS, source="demo", id="s2", scope="w_constraints"),  # a scope without a filter
    sampleurl.State(dataset=DS, scenario="Advice", source="demo", id="s3", scope="Advice", judge="demo-gpt-4-turbo"),
])
def test_url_state_round_trips(state):
    params = sampleurl.to_params(state, default_source_="demo")
    back, problems = parse(params)
    assert problems == [] and back == state


def test_url_drill_down_contract_and_bad_values():
    s, problems = parse({"dataset": DS, "attr": "lengthy", "judge": "demo-crowd", "scope": "w_stances"})
    assert problems == [] and (s.case, s.scenario, s.attributes, s.judge) == ("w_stances", None, ("lengthy",), "demo-crowd")
    assert s.filter() == SampleFilter(dataset=DS, case="w_stances", judge="demo-crowd", attributes=("lengthy",),
                                      feature_source="demo")
    s, problems = parse({"id": "s9", "judge": "demo-gpt-4-turbo", "scope": "Code"})
    assert problems == [] and (s.dataset, s.id, s.scenario, s.scope) == (DS, "s9", "Code", "Code")
    s, problems = parse({"dataset": "nope", "id": "missing", "page": "x", "size": "7", "attr": ["bogus", "clear"],
                         "judge": "nobody", "scope": "Cooking", "dir": "C", "case": "odd", "disagree": "demo-crowd",
                         "what": "1"})
    assert s == sampleurl.State(dataset=DS, attributes=("clear",), source="demo", disagree=("demo-crowd",))
    assert len(problems) == 11 and any("nope" in p for p in problems) and any("missing" in p for p in problems)


# ------------------------------------------------------------------ the waterfall


def test_waterfall_steps_end_at_the_logit():
    frame = pd.DataFrame({"label": ["a", "b", "c", "d"], "contribution": [0.25, -0.5, 0.0, 0.125],
                          "x": [1, -1, 0, 1], "weight": [0.25, 0.5, 0.3, 0.125]})
    spec = charts.contribution_waterfall(frame).to_dict()
    rows = spec["datasets"][spec["layer"][0]["data"]["name"]]
    assert [r["label"] for r in rows] == ["b", "a", "d", "logit P(A) = sum"]  # largest first, zero left out
    assert all(r["end"] - r["start"] == pytest.approx(r["contribution"]) for r in rows)
    assert [r["start"] for r in rows[1:-1]] == pytest.approx([r["end"] for r in rows[:-2]])
    assert rows[-1]["start"] == 0 and rows[-1]["end"] == pytest.approx(-0.125) == rows[-2]["end"]


# ------------------------------------------------------------------ the page


def table(at: AppTest):
    return next(d for d in at.dataframe if d.key and d.key.startswith(K + "table_"))


def showing(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("Showing"))


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_rows(at: AppTest) -> pd.DataFrame:
    proto = at.get("vega_lite_chart")[0].proto
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]
    return max(frames, key=len)


def test_filter_pick_a_sample_and_see_the_stores_numbers(shared_store_path):
    at = open_page(PAGE)
    assert showing(at) == f"Showing **1–50** of **{demo_samples():,}** (dataset order)"
    at.selectbox(key=K + "scenario").select("Code")
    at.selectbox(key=K + "judge").select("demo-gpt-4-turbo")
    rerun(at)
    with Store(shared_store_path) as s:
        ids = [r[0] for r in s.conn.execute(
            "SELECT s.id FROM samples s JOIN labels l ON l.sample_id = s.id AND l.judge = 'demo-gpt-4-turbo'"
            " WHERE s.scenario_group = 'Code' ORDER BY s.position")]
        labels = dict(s.conn.execute("SELECT sample_id, choice FROM labels WHERE judge = 'demo-gpt-4-turbo'").fetchall())
    page = ids[:50]  # the demo has more pairs per group than a page shows
    assert showing(at) == f"Showing **1–{len(page)}** of **{len(ids)}** (dataset order)"
    shown_table = table(at).value
    assert list(shown_table["demo-gpt-4-turbo"]) == [labels[i] for i in page]
    # pick the third row
    at.session_state[table(at).key] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    rerun(at)
    sid = ids[2]
    assert at.query_params["id"] == sid
    with Store(shared_store_path) as s:
        votes = {r["judge"]: r for r in s.sample_labels(sid)}
        feats = {r["attribute"]: r for r in s.sample_features(sid, "demo")}
        sample = s.sample(sid)
        prof = s.profiles(dataset=DS, scope="Code", judges=["demo-gpt-4-turbo"], method="fast")[0]
    shown_votes = frame_with(at, "judge", "prob_a")
    assert dict(zip(shown_votes["judge"], shown_votes["choice"])) == {j: v["choice"] for j, v in votes.items()}
    nan = float("nan")  # a judge without a probability of its own (the demo's crowd): an empty cell
    assert dict(zip(shown_votes["judge"], shown_votes["prob_a"])) == pytest.approx(
        {j: nan if v["prob_a"] is None else v["prob_a"] for j, v in votes.items()}, nan_ok=True)
    attrs = frame_with(at, "attribute", "comparison")
    labels_by_key = {a.key: a.label for a in catalogue.attributes()}
    assert list(attrs["attribute"]) == [a.label + (f" (rated: {a.annotated_as})" if a.annotated_as else "")
                                        for a in catalogue.attributes()]
    for side in ("a", "b"):  # no rating (a conditional attribute whose case does not apply): "not applicable"
        # shown as people write them (dashboard.render.figure): "3", "160", "2.5", "not applicable"
        want = [figure(feats[k][f"score_{side}"]) for k in catalogue.attribute_keys()]
        assert list(attrs[side.upper()]) == want
    # the texts, rendered inert
    bodies = [m.value for m in at.markdown]
    assert render.inert_markdown(sample["response_a"]) in bodies and render.inert_markdown(sample["response_b"]) in bodies
    # the contributions of the filtered judge, in the sample's scope, from the stored profile
    # the position term's x is 1 (the sample as stored shows A first); then the attributes' features
    # (a tie parameter, which the demo's profiles carry, is no term of the logit)
    terms = [k for k in prof["attributes"] if k != TIE]
    mean = np.array([w for k, w in zip(prof["attributes"], prof["mean"]) if k != TIE], dtype=float)
    x = np.array([1.0 if is_position(k) else feats[k]["value"] for k in terms], dtype=float)
    logit = float(np.dot(x, mean))
    labels_by_key = {**labels_by_key, POSITION: "shown first (position)"}
    m = metrics(at)
    assert m["Actual choice"] == votes["demo-gpt-4-turbo"]["choice"]
    assert m["Predicted P(A | not a tie)" if TIE in prof["attributes"] else "Predicted P(A)"] == \
        f"{1 / (1 + np.exp(-logit)):.1%}"
    assert m["Predicted choice"] == ("A" if logit > 0 else "B")
    rows = chart_rows(at)
    assert rows.iloc[-1]["end"] == pytest.approx(logit)
    assert set(rows["label"][:-1]) == {labels_by_key[k] for k, v in zip(terms, x * mean) if v}


def test_query_params_round_trip(shared_store_path):
    with Store(shared_store_path) as s:
        rows, _ = s.browse(SampleFilter(dataset=DS, case="w_constraints", attributes=("lengthy",),
                                        feature_source="demo", direction="A"), limit=50)
    query = {"dataset": DS, "case": "w_constraints", "attr": "lengthy", "dir": "A", "judge": "demo-crowd",
             "id": rows[1]["id"], "scope": "all", "vjudge": "demo-tulu-70b", "size": "25"}
    at = open_page(PAGE, query)
    assert at.query_params == query  # nothing lost, nothing added
    assert at.selectbox(key=K + "case").value == "w_constraints"
    assert at.multiselect(key=K + "attributes").value == ["lengthy"]
    assert at.selectbox(key=K + "vjudge_pick").value == "demo-tulu-70b"
    assert at.selectbox(key=K + "scope_pick").value == "all"
    assert any("demo-tulu-70b, scope all" in c.value.replace("\\", "") for c in at.caption)
    # a change in the widgets goes to the URL
    at.selectbox(key=K + "scope_pick").select(rows[1]["scenario_group"])
    rerun(at)
    assert at.query_params["scope"] == rows[1]["scenario_group"]
    at.text_input(key=K + "q").input("python")
    rerun(at)
    assert at.query_params["q"] == "python" and "page" not in at.query_params


def test_previous_and_next_walk_the_filtered_list_across_pages(shared_store_path):
    f = SampleFilter(dataset=DS, judge="demo-crowd")
    with Store(shared_store_path) as s:
        rows, total = s.browse(f, offset=23, limit=3)
    at = open_page(PAGE, {"judge": "demo-crowd", "size": "25", "id": rows[1]["id"]})  # index 24: the last of page 1
    assert any(f"25 of {total:,} in this list" in m.value for m in at.markdown)
    at.button(key=K + "next").click()
    rerun(at)
    assert at.query_params["id"] == rows[2]["id"] and at.query_params["page"] == "2"
    assert showing(at).startswith("Showing **26–50**")
    at.button(key=K + "prev").click()
    rerun(at)
    at.button(key=K + "prev").click()
    rerun(at)
    assert at.query_params["id"] == rows[0]["id"] and "page" not in at.query_params
    first = open_page(PAGE, {"judge": "demo-crowd", "id": s_first(shared_store_path, f)})
    assert first.button(key=K + "prev").disabled and not first.button(key=K + "next").disabled


def s_first(path, f):
    with Store(path) as s:
        return s.browse(f, limit=1)[0][0]["id"]


def test_profiles_drill_down_links(shared_store_path):
    # /samples?dataset=D&attr=ATTR&judge=J&scope=S: scope S's samples whose ATTR differs, with J's choice
    at = open_page(PAGE, {"dataset": DS, "attr": "empathetic", "judge": "demo-crowd", "scope": "express_feeling"})
    with Store(shared_store_path) as s:
        want, total = s.browse(SampleFilter(dataset=DS, case="express_feeling", judge="demo-crowd",
                                            attributes=("empathetic",), feature_source="demo"), limit=50)
        counts = s.differing_counts(DS, "demo", "express_feeling")
    assert total == counts["empathetic"]  # the count the Profiles page puts on the link
    shown_table = table(at).value
    assert list(shown_table["#"]) == [r["position"] + 1 for r in want]
    assert list(shown_table["demo-crowd"]) == [r["choices"]["demo-crowd"] for r in want]
    assert set(shown_table["empathetic: better"]) <= {"A", "B"}
    # /samples?id=ID&judge=J&scope=S: that sample, J's contributions in scope S
    sid = want[0]["id"]
    at = open_page(PAGE, {"id": sid, "judge": "demo-gpt-4-turbo", "scope": "express_feeling"})
    e = samples.explain(Store(shared_store_path), sid, "demo-gpt-4-turbo", "express_feeling")
    # a profile fitted with ties (the demo's LLM judges tie when their two orders disagree) predicts P(A | not a tie)
    label = "Predicted P(A | not a tie)" if TIE in e.profile["attributes"] else "Predicted P(A)"
    assert metrics(at)[label] == f"{e.contributions.p_a:.1%}"
    assert any("scope express_feeling" in c.value.replace("\\", "") for c in at.caption)


def test_bad_links_say_what_is_wrong_without_a_traceback(shared_store_path):
    at = open_page(PAGE, {"dataset": "nope", "id": "missing", "page": "zero", "attr": "bogus", "scope": "Cooking",
                    "judge": "nobody"})
    warnings = " ".join(w.value for w in at.warning)
    for text in ("nope", "missing", "page", "bogus", "Cooking", "nobody"):
        assert text in warnings
    assert showing(at) == f"Showing **1–50** of **{demo_samples():,}** (dataset order)"
    far = open_page(PAGE, {"page": "999"})  # past the end: the last page
    n = demo_samples()
    assert showing(far) == f"Showing **{(n - 1) // 50 * 50 + 1:,}–{n:,}** of **{n:,}** (dataset order)"


def test_hostile_text_is_shown_inert_on_the_page(store_path):
    evil = "Hi <script>window.__pwned=1</script> ![x](http://127.0.0.1:9/p.png) [j](javascript:alert(1))"
    batch = ImportBatch(dataset=Dataset("hostile"), samples=[Sample("hostile", "q <b>bold?</b>", evil, "fine")])
    with Store(store_path) as s:
        s.write_batch(batch)
    at = open_page(PAGE, {"id": batch.samples[0].id})
    bodies = [m.value for m in at.markdown]
    assert render.inert_markdown(evil) in bodies and evil not in bodies
    assert render.inert_markdown("q <b>bold?</b>") in bodies
    assert any("No judge has a profile on this dataset" in i.value for i in at.info)
