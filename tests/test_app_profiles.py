"""The Profiles page (AppTest) and its chart builders: what it shows is the stored profiles' numbers."""

from __future__ import annotations

import io
import json
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import special
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from core import catalogue, compare, fit, sampler
from core.profile import (MIN_DIFFERING, POSITION_LABEL, TIE, is_attribute_term, load_published_profiles,
                          profile_frame)
from core.store import Store
from dashboard import charts, fmt
from tests.conftest import demo_samples
from tests.stsession import frames_with, open_page

PAGE = "profiles"  # pages/profiles.py
LABELS = {a.key: a.label for a in catalogue.attributes()}
JUDGES = ["demo-crowd", "demo-gpt-4-turbo", "demo-tulu-70b", "demo-tulu-7b"]


def stored(path, **kw) -> dict[str, dict]:
    with Store(path) as s:
        return {r["judge"]: r for r in s.profiles(**kw)}


def drawn(row: dict) -> dict:
    """The stored profile's terms that the chart and the CSV show: all but the tie parameter (log nu
    of Davidson's model, which the demo's judges now carry: the crowd ties, and an LLM judge's two
    orders can disagree); the position term and the 29 attributes."""
    keep = [k for k, a in enumerate(row["attributes"]) if a != TIE]
    return {c: [row[c][k] for k in keep] for c in ("attributes", "mean", "sd", "lo", "hi", "p_pos")}


def chart_data(at: AppTest, i: int = 0) -> pd.DataFrame:
    """The rows the i-th Vega-Lite chart on the page was given (Arrow IPC in the proto)."""
    proto = at.get("vega_lite_chart")[i].proto
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]
    return max(frames, key=len)


# --------------------------------------------------------------------------- the page


def test_chart_and_top_attributes_are_the_stored_numbers(shared_store_path):
    at = open_page(PAGE)
    want = stored(shared_store_path, dataset="demo-synthetic", scope="all", method="fast", feature_source="demo")
    assert [m.value for m in at.multiselect] == [JUDGES]  # the four demo judges, in name order
    assert at.selectbox(key="profiles_scope").value == "all"
    shown = chart_data(at)
    assert sorted(shown["judge"].unique()) == JUDGES
    assert len(shown) == sum(len(drawn(r)["attributes"]) for r in want.values()) == 4 * 30  # position and 29 attributes
    for judge, row in want.items():
        row = drawn(row)
        mine = shown[shown["judge"] == judge].sort_values("index")
        assert list(mine["attribute"]) == row["attributes"]
        assert np.allclose(mine["mean"], row["mean"])
        assert np.allclose(mine["percent"], 100 * special.expit(row["mean"]))  # the paper's 100*sigmoid(w)
        assert np.allclose(mine["percent_lo"], 100 * special.expit(row["lo"]))
        assert np.allclose(mine["percent_hi"], 100 * special.expit(row["hi"]))
    # top / bottom tables: the five largest and smallest stored weights of each judge, in order
    tables = frames_with(at, "label", "percent_lo", "mean")  # raw columns (shown as rewards / dislikes, %, weight)
    assert len(tables) == 2 * len(JUDGES)
    for i, judge in enumerate(JUDGES):
        # attributes only: the position term is no attribute to reward
        keep = [k for k, a in enumerate(want[judge]["attributes"]) if is_attribute_term(a)]
        names = [want[judge]["attributes"][k] for k in keep]
        w = np.asarray(want[judge]["mean"])[keep]
        top, bottom = tables[2 * i], tables[2 * i + 1]
        assert list(top["label"]) == [LABELS[names[k]] for k in np.argsort(-w, kind="stable")[:5]]
        assert np.allclose(top["mean"], np.sort(w)[::-1][:5])
        assert np.allclose(bottom["mean"], np.sort(w)[:5])
        assert np.allclose(top["percent"], 100 * special.expit(np.sort(w)[::-1][:5]))
    # the demo's crowd follows the paper's human profile: what it dislikes most is admitted limitations
    assert JUDGES[0] == "demo-crowd" and tables[1]["label"].iloc[0] == "admits limits"


def test_scope_shows_n_and_a_link_preselects_scope_judges_and_order(shared_store_path):
    at = open_page(PAGE, {"scope": "Advice", "judge": ["demo-gpt-4-turbo", "demo-crowd"], "order": "weight"})
    box = at.selectbox(key="profiles_scope")
    assert box.value == "Advice"
    want = stored(shared_store_path, dataset="demo-synthetic", scope="Advice", method="fast")
    assert f"Advice · n={want['demo-gpt-4-turbo']['n']}" in box.options  # n per scope in the picker
    assert at.multiselect[0].value == ["demo-gpt-4-turbo", "demo-crowd"]
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    y_sort = spec["layer"][1]["encoding"]["y"]["sort"]
    # ordered by the first judge's weight; terms with no estimate (too few samples differ) last, in catalogue order
    mine = profile_frame([want["demo-gpt-4-turbo"]])
    estimated = mine[mine["status"] == "measured"]
    assert len(estimated) >= 20 and y_sort[:len(estimated)] == list(
        estimated.sort_values(["mean", "index"], ascending=[False, True], kind="stable")["label"])
    assert y_sort[len(estimated):] == list(mine[mine["status"] != "measured"]["label"])


def test_difference_table_equals_weight_difference_of_the_stored_draws(shared_store_path):
    at = open_page(PAGE)
    at.selectbox(key="profiles_diff_a").set_value("demo-gpt-4-turbo").run()
    at.selectbox(key="profiles_diff_b").set_value("demo-crowd").run()
    assert not at.exception
    table = frames_with(at, "diff", "p_pos")[0]
    rows = stored(shared_store_path, dataset="demo-synthetic", scope="all", method="fast", with_draws=True)
    a, b = rows["demo-gpt-4-turbo"], rows["demo-crowd"]
    assert a["draws"].shape == (1000, len(a["attributes"]))  # the position term, 29 attributes (and the tie parameter)
    # the tie parameter (log nu) is no attribute's weight: the difference leaves it out
    assert a["attributes"][-1] == b["attributes"][-1] == TIE
    want = compare.weight_difference(np.asarray(a["mean"][:-1]), np.asarray(b["mean"][:-1]),
                                     draws_a=a["draws"][:, :-1], draws_b=b["draws"][:, :-1],
                                     attributes=a["attributes"][:-1])
    assert TIE not in set(table["label"]) and len(table) == len(a["attributes"]) - 1
    assert list(table["label"]) == [LABELS.get(k, POSITION_LABEL) for k in want["attribute"]]
    for col in ("a", "b", "diff", "lo", "hi", "p_pos"):
        assert np.allclose(table[col], want[col]), col
    # the crowd dislikes admitted limitations, GPT-4-Turbo does not (the paper's finding): an interval clear of zero
    sev = want.set_index("attribute").loc["admits_limits"]
    assert sev["lo"] > 0 and sev["p_pos"] > 0.99
    # and the chart shows the same numbers
    shown = chart_data(at, 1).sort_values("index")
    assert np.allclose(shown["diff"], want["diff"]) and np.allclose(shown["lo"], want["lo"])


def test_accuracy_and_diagnostics_are_the_stored_ones(shared_store_path):
    at = open_page(PAGE)
    table = frames_with(at, "accuracy", "max_rhat")[0].set_index("judge")
    want = stored(shared_store_path, dataset="demo-synthetic", scope="all", method="fast")
    assert sorted(table.index) == JUDGES
    for judge, row in want.items():
        assert table.loc[judge, "accuracy"] == pytest.approx(row["accuracy"])
        assert table.loc[judge, "log_loss"] == pytest.approx(row["log_loss"])
        assert table.loc[judge, "n"] == row["n"] == demo_samples()
        assert table.loc[judge, "max_rhat"] == pytest.approx(max(row["rhat"]))
        assert table.loc[judge, "min_ess"] == pytest.approx(min(row["ess"]))
        assert table.loc[judge, "divergences"] == row["provenance"]["diagnostics"]["divergences"]
    prov = frames_with(at, "sampler", "fitted_at")[0].set_index("judge")
    assert set(prov["sampler"]) == {sampler.FAST_SAMPLER}
    assert prov.loc["demo-crowd", "fitted_at"] == want["demo-crowd"]["provenance"]["fitted_at"]
    assert "pymc " + want["demo-crowd"]["provenance"]["versions"]["pymc"] in prov.loc["demo-crowd", "versions"]


@pytest.fixture
def downloads(monkeypatch) -> list[tuple[bytes, str, str | None]]:
    """What the page's download buttons deliver: a spy on Streamlit's media file manager, which is
    handed each button's file, or the callable that makes it on a click (called here, as a click does)."""
    seen: list[tuple[bytes, str, str | None]] = []
    real_add, real_deferred = MediaFileManager.add, MediaFileManager.add_deferred

    def keep(data, mimetype, filename):
        seen.append((data.encode() if isinstance(data, str) else bytes(data), mimetype, filename))

    def add(self, path_or_data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        keep(path_or_data, mimetype, file_name)
        return real_add(self, path_or_data, mimetype, coordinates, file_name, is_for_static_download)

    def add_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        keep(data_callable(), mimetype, file_name)
        return real_deferred(self, data_callable, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add", add)
    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return seen


def test_downloads_carry_the_stored_weights_intervals_and_provenance(shared_store_path, downloads):
    at = open_page(PAGE)
    assert [b.label for b in at.download_button] == ["Weights (CSV)", "Weights (JSON)", "Chart (PNG)", "Chart (SVG)"]
    files = {name: data for data, _, name in downloads}
    want = stored(shared_store_path, dataset="demo-synthetic", scope="all", method="fast")
    csv = pd.read_csv(io.BytesIO(files["profiles_demo-synthetic_all_fast.csv"]))
    assert len(csv) == sum(len(drawn(r)["attributes"]) for r in want.values())
    for judge, full in want.items():
        row = {**full, **drawn(full)}
        mine = csv[csv["judge"] == judge].sort_values("index")
        for col in ("mean", "sd", "lo", "hi", "p_pos"):
            assert np.allclose(mine[col], row[col]), col
        assert np.allclose(mine["accuracy"], row["accuracy"]) and set(mine["n"]) == {row["n"]}
        assert set(mine["fingerprint"]) == {row["fingerprint"]} and set(mine["sampler"]) == {sampler.FAST_SAMPLER}
    doc = json.loads(files["profiles_demo-synthetic_all_fast.json"])
    assert [p["judge"] for p in doc] == JUDGES
    for p in doc:
        row = {**want[p["judge"]], **drawn(want[p["judge"]])}
        assert [a["attribute"] for a in p["attributes"]] == row["attributes"]
        assert np.allclose([a["lo"] for a in p["attributes"]], row["lo"])
        assert np.allclose([a["percent"] for a in p["attributes"]], 100 * special.expit(row["mean"]))
        assert p["provenance"]["seed"] == row["provenance"]["seed"] and p["accuracy"] == pytest.approx(row["accuracy"])
        assert p["provenance"]["prior"] == {"family": "laplace", "scale": 0.1}


def test_chart_image_export_png_and_svg(shared_store_path):
    with Store(shared_store_path) as s:
        frame = profile_frame(s.profiles(dataset="demo-synthetic", scope="all", method="fast",
                                                 judges=["demo-crowd"]))
    chart = charts.profile_chart(frame)
    png = charts.chart_image(chart, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    svg = charts.chart_image(chart, "svg").decode()
    assert svg.lstrip().startswith("<svg") and "no severe errors" in svg and "demo-crowd" in svg
    with pytest.raises(ValueError):
        charts.chart_image(chart, "gif")


def test_downloads_made_on_click_by_a_real_server_carry_the_stored_weights(store_path):
    """The downloads are deferred: the server makes them in its own thread when the browser asks,
    outside any page run. Asked over Streamlit's protocol, as a click does, and fetched over HTTP."""
    from tests import browserkit
    from tests.stsession import Session

    proc, url = browserkit.start_streamlit(store_path)
    try:
        with Session(url, timeout=120) as session:
            run = session.run("profiles")
            assert run.status == "ok" and not run.exceptions
            files = {label: session.download(b) for label, b in run.downloads.items()}
    finally:
        browserkit.stop(proc)
    want = stored(store_path, dataset="demo-synthetic", scope="all", method="fast")
    csv = pd.read_csv(io.BytesIO(files["Weights (CSV)"]))
    assert sorted(set(csv["judge"])) == JUDGES and len(csv) == sum(len(drawn(r)["attributes"]) for r in want.values())
    for judge, row in want.items():
        assert np.allclose(csv[csv["judge"] == judge].sort_values("index")["mean"], drawn(row)["mean"])
    assert [p["judge"] for p in json.loads(files["Weights (JSON)"])] == JUDGES
    assert files["Chart (PNG)"].startswith(b"\x89PNG") and files["Chart (SVG)"].startswith(b"<svg")


def test_drill_down_links_name_dataset_attribute_judge_scope_and_features(shared_store_path):
    at = open_page(PAGE)
    links = at.page_link
    assert len(links) == 29
    with Store(shared_store_path) as s:
        X = s.design("demo-synthetic", "demo", scope="all").X
    differ = dict(zip(catalogue.attribute_keys(), (X != 0).sum(axis=0)))
    shown = {p.value.rsplit(" · ", 1)[0]: int(p.value.rsplit(" · ", 1)[1].replace(",", "")) for p in links}
    assert shown == {LABELS[k]: int(n) for k, n in differ.items()}
    proto = next(p.proto for p in links if p.value.startswith("lengthy"))
    assert proto.page == "samples"
    assert parse_qs(proto.query_string) == {"dataset": ["demo-synthetic"], "attr": ["lengthy"],
                                            "judge": [JUDGES[0]], "scope": ["all"], "source": ["demo"]}


def test_imported_profiles_show_means_without_intervals_or_samples(store_path, shared_data):
    with Store(store_path) as s:
        fit.import_published(s, shared_data / "gair" / "fitted_paras_comparison")
    at = open_page(PAGE, {"dataset": "published", "scope": "Code", "judge": ["human", "gpt-4-1106-preview"]})
    assert at.selectbox(key="profiles_method").value == "imported"
    shown = chart_data(at)
    published = load_published_profiles(shared_data / "gair" / "fitted_paras_comparison")["Code"]
    for judge in ("human", "gpt-4-1106-preview"):
        mine = shown[shown["judge"] == judge].sort_values("index")
        assert np.allclose(mine["mean"], published[judge])
        assert mine["percent_lo"].isna().all()
    captions = " ".join(c.value for c in at.caption)
    assert "no samples stored" in captions and "no stored posterior draws" in captions
    assert not at.page_link


def test_no_profiles_says_how_to_fit(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFDISSECT_STORE", str(tmp_path / "empty.db"))
    monkeypatch.setenv("PREFDISSECT_SEED_DEMO", "0")
    at = open_page(PAGE)
    text = " ".join(i.value for i in at.info)
    assert "python -m core fit --dataset" in text and "Annotate & fit" in text
    assert [p.value for p in at.page_link] == ["Annotate & fit"]
    assert not at.get("vega_lite_chart")


# --------------------------------------------------------------------------- chart builders


def _frame() -> pd.DataFrame:
    rows = []
    for judge, scale in (("j1", 1.0), ("j2", -0.5)):
        w = scale * np.linspace(-1, 1, 29)
        rows.append({"judge": judge, "attributes": catalogue.attribute_keys(), "mean": list(w), "lo": list(w - 0.2),
                     "hi": list(w + 0.2), "sd": [0.1] * 29, "scope": "all", "method": "fast"})
    return profile_frame(rows)


def _layers(chart) -> list[dict]:
    return chart.to_dict()["layer"]


def test_profile_chart_has_the_fifty_percent_rule_and_intervals():
    whiskers, bars, fifty = _layers(charts.profile_chart(_frame()))  # bars drawn over the whiskers: clickable
    assert bars["encoding"]["x"]["field"] == "percent" and bars["encoding"]["x2"] == {"datum": 50}
    assert whiskers["mark"]["type"] == "rule"
    assert (whiskers["encoding"]["x"]["field"], whiskers["encoding"]["x2"]["field"]) == ("percent_lo", "percent_hi")
    assert fifty["mark"]["type"] == "rule" and fifty["encoding"]["x"]["field"] == "x"
    spec = charts.profile_chart(_frame()).to_dict()
    fifty_data = next(v for k, v in spec["datasets"].items() if len(v) == 1)
    assert fifty_data == [{"x": 50.0}]
    assert bars["encoding"]["yOffset"]["field"] == "judge"  # judges dodged within an attribute's row
    assert spec["params"][0]["name"] == charts.PROFILE_PICK
    assert spec["params"][0]["select"]["fields"] == ["attribute", "judge"]
    lo, hi = bars["encoding"]["x"]["scale"]["domain"]
    f = _frame()
    assert lo <= f["percent_lo"].min() and hi >= f["percent_hi"].max() and lo < 50 < hi
    # regression: without its own scale the whisker layer's default zero=True stretched the shared axis to 0%
    assert whiskers["encoding"]["x"]["scale"] == bars["encoding"]["x"]["scale"]
    assert bars["encoding"]["x"]["scale"]["zero"] is False
    ticks = bars["encoding"]["x"]["axis"]["values"]
    assert 50 in ticks and all(b - a == 10 for a, b in zip(ticks, ticks[1:])) and lo <= ticks[0] and ticks[-1] <= hi


def test_profile_chart_tooltip_writes_percentages_as_the_tables_do():
    """The bar's tooltip read "preferred (%) 57.6" (a number in percent units through d3's .1f): it reads
    "57.6%", as the tables (fmt.percent_of_100), and so do its interval and a synthetic judge's true value."""
    f = _frame()
    truth = f[["judge", "label"]].assign(percent=62.25)
    spec = charts.profile_chart(f, truth=truth).to_dict()
    bars = spec["layer"][1]
    tips = {t["title"]: t["field"] for t in bars["encoding"]["tooltip"] if "title" in t}
    data = next(v for v in spec["datasets"].values() if len(v) == len(f))
    first = data[0]
    assert first[tips["preferred"]] == fmt.percent_of_100(first["percent"]) and first[tips["preferred"]].endswith("%")
    assert first[tips["interval from"]] == fmt.percent_of_100(first["percent_lo"])
    assert first[tips["interval to"]] == fmt.percent_of_100(first["percent_hi"])
    diamonds = spec["layer"][-1]
    (true_field,) = [t["field"] for t in diamonds["encoding"]["tooltip"] if t.get("title") == "true"]
    known = next(v for v in spec["datasets"].values() if v and true_field in v[0])
    assert {row[true_field] for row in known} == {"62.2%"}


def test_profile_chart_orders_by_catalogue_or_by_first_judges_weight():
    f = _frame()
    cat = _layers(charts.profile_chart(f))[1]["encoding"]["y"]["sort"]
    assert cat == [LABELS[k] for k in catalogue.attribute_keys()]
    by_weight = _layers(charts.profile_chart(f, order="weight"))[1]["encoding"]["y"]["sort"]
    assert by_weight == cat[::-1]  # j1's weights rise along the catalogue
    single = f[f["judge"] == "j2"]
    assert _layers(charts.profile_chart(single, order="weight"))[1]["encoding"]["y"]["sort"] == cat  # j2's fall
    assert "yOffset" not in _layers(charts.profile_chart(single))[1]["encoding"]
    assert "params" not in charts.profile_chart(single, select=False).to_dict()
    with pytest.raises(ValueError):
        charts.attribute_order(f, "alphabet")


def test_difference_chart_marks_the_credible_differences():
    diff = compare.weight_difference(np.zeros(29), np.zeros(29), draws_a=np.zeros((100, 29)),
                                     draws_b=np.zeros((100, 29)))
    diff.loc[0, ["diff", "lo", "hi"]] = [1.0, 0.5, 1.5]
    diff.loc[1, ["diff", "lo", "hi"]] = [-1.0, -1.5, -0.5]
    diff["label"], diff["index"] = [LABELS[k] for k in diff["attribute"]], range(29)
    spec = charts.difference_chart(diff, "a", "b").to_dict()
    data = next(v for v in spec["datasets"].values() if len(v) == 29)
    verdicts = [d["verdict"] for d in data]
    assert verdicts[:2] == ["a rewards more", "b rewards more"] and set(verdicts[2:]) == {"no clear difference"}
    whiskers, points, zero = spec["layer"]
    assert (whiskers["encoding"]["x"]["field"], whiskers["encoding"]["x2"]["field"]) == ("lo", "hi")
    assert points["encoding"]["x"]["field"] == "diff" and zero["mark"]["type"] == "rule"


# --------------------------------------------------------------------------- the same downloads from the CLI


def test_cli_export_profiles_writes_the_stored_numbers(shared_store_path, tmp_path, capsys):
    from core import cli

    out = tmp_path / "crowd.json"
    assert cli.main(["export-profiles", "--dataset", "demo-synthetic", "--scope", "Code", "--judges", "demo-crowd",
                     "--format", "json", "-o", str(out)]) == 0
    assert "wrote 1 profiles (fast" in capsys.readouterr().out
    want = stored(shared_store_path, dataset="demo-synthetic", scope="Code", method="fast")["demo-crowd"]
    (doc,) = json.loads(out.read_text())
    assert doc["scope"] == "Code" and doc["n"] == want["n"]
    # estimates as stored; an attribute too few samples differ on is exported with its status, no number
    est = [a["status"] == "measured" for a in doc["attributes"]]
    assert np.allclose([a["hi"] for a, e in zip(doc["attributes"], est) if e], [h for h, e in zip(want["hi"], est) if e])
    assert all(a["hi"] is None and a["differing"] < MIN_DIFFERING for a, e in zip(doc["attributes"], est) if not e)
    assert cli.main(["export-profiles", "--dataset", "demo-synthetic", "--method", "truth"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(csv) == 44 * 29 and set(csv["method"]) == {"truth"} and csv["lo"].isna().all()
    assert cli.main(["export-profiles", "--dataset", "demo-synthetic", "--method", "exact"]) == 2
    assert "no 'exact' profiles" in capsys.readouterr().err


def test_a_judge_name_with_markup_is_shown_inert(store_path):
    evil = "![x](http://127.0.0.1:9/x.png) <b>bold</b>"
    with Store(store_path) as s:
        row = s.profiles(dataset="demo-synthetic", scope="all", method="fast", judges=["demo-crowd"])[0]
        row = {k: v for k, v in row.items() if k not in ("id", "created_at")}
        s.save_profile({**row, "judge": evil})
    at = open_page(PAGE, {"judge": [evil, "demo-crowd"]})
    assert at.multiselect[0].value == [evil, "demo-crowd"]
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [p.value for p in at.page_link]
    assert not any("![x](" in t or "<b>" in t for t in texts)
    assert any(r"\!\[x\]\(http\:" in t for t in texts)  # shown, as text


@pytest.mark.parametrize("scope", ["all", "Code", "w_constraints", "express_feeling"])
def test_differing_counts_agree_with_the_design_the_fit_reads(shared_store_path, scope):
    with Store(shared_store_path) as s:
        counts = s.differing_counts("demo-synthetic", "demo", scope)
        d = s.design("demo-synthetic", "demo", scope=scope)
    want = {k: int(n) for k, n in zip(d.attributes, (d.X != 0).sum(axis=0)) if n}
    assert counts == want and sum(counts.values()) > 0
