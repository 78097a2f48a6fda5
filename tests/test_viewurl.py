"""Every view a link (dashboard/viewurl.py, issue 17): Profiles, Similarity, Simulator and Judges write
their view into the URL, and the URL written opens the same view in a fresh session (round trip)."""

from streamlit.testing.v1 import AppTest

from core import demo
from tests.conftest import demo_samples
from tests.stsession import open_page


def widget(at, kind: str, label: str):
    return next(w for w in at.get(kind) if w.label == label)


def url_of(at) -> dict:
    return {k: list(v) if isinstance(v, list) else [v] for k, v in at.query_params.items()}


def reopen(page: str, url: dict) -> AppTest:
    """A fresh session (another browser) following the link."""
    return open_page(page, {k: v if len(v) > 1 else v[0] for k, v in url.items()})


def test_profiles_view_round_trips_through_its_url(shared_store_path):
    at = open_page("profiles")
    widget(at, "selectbox", "Scope").set_value("Code").run()
    widget(at, "multiselect", "Judges").set_value(["demo-gpt-4-turbo", "demo-crowd"]).run()
    widget(at, "radio", "Order").set_value("weight").run()
    url = url_of(at)
    assert url["scope"] == ["Code"] and url["judge"] == ["demo-gpt-4-turbo", "demo-crowd"] and url["order"] == ["weight"]
    again = reopen("profiles", url)
    assert widget(again, "selectbox", "Scope").value == "Code"
    assert widget(again, "multiselect", "Judges").value == ["demo-gpt-4-turbo", "demo-crowd"]
    assert widget(again, "radio", "Order").value == "weight"


def test_similarity_view_round_trips_through_its_url(shared_store_path):
    at = open_page("similarity")
    widget(at, "radio", "Correlation").set_value("spearman").run()
    widget(at, "selectbox", "Scenarios").set_value("Code").run()
    widget(at, "multiselect", "Judges").set_value(["demo-crowd", "demo-gpt-4-turbo", "demo-tulu-7b"]).run()
    url = url_of(at)
    assert url["corr"] == ["spearman"] and url["scope"] == ["Code"]
    assert url["judge"] == ["demo-crowd", "demo-gpt-4-turbo", "demo-tulu-7b"]
    again = reopen("similarity", url)
    assert widget(again, "radio", "Correlation").value == "spearman"
    assert widget(again, "selectbox", "Scenarios").value == "Code"
    assert widget(again, "multiselect", "Judges").value == ["demo-crowd", "demo-gpt-4-turbo", "demo-tulu-7b"]


def test_simulator_view_round_trips_through_its_url(shared_store_path):
    at = open_page("simulate")
    widget(at, "multiselect", "Judges (side by side)").set_value(["demo-tulu-7b"]).run()
    widget(at, "multiselect", "Inject (+): the model shows more of").set_value(["well_formatted"]).run()
    widget(at, "slider", "success rate: + well formatted").set_value(0.8).run()
    widget(at, "multiselect", "Suppress (-): the model shows less of").set_value(["funny"]).run()
    assert "analysis" not in url_of(at)  # the first analysis tab is the default view
    at.session_state["sim_analysis"] = "Calibration"
    at.run()
    url = url_of(at)
    assert url["judge"] == ["demo-tulu-7b"] and url["inject"] == ["well_formatted@0.8"]
    assert url["suppress"] == ["funny@0.5"] and url["analysis"] == ["Calibration"]
    again = reopen("simulate", url)
    assert not again.exception
    assert again.session_state["sim_analysis"] == "Calibration"
    assert widget(again, "multiselect", "Judges to calibrate")  # the open tab ran
    assert widget(again, "multiselect", "Judges (side by side)").value == ["demo-tulu-7b"]
    assert widget(again, "multiselect", "Inject (+): the model shows more of").value == ["well_formatted"]
    assert widget(again, "slider", "success rate: + well formatted").value == 0.8
    assert widget(again, "multiselect", "Suppress (-): the model shows less of").value == ["funny"]
    assert url_of(again) == url


def test_a_simulator_link_keeps_a_measured_success_rate(shared_store_path):
    """Regression (issue 17): the success-rate sliders stepped by 5%, so a link's measured rate
    (@0.83) opened at 85%; they step by whole percents now, and a link keeps one."""
    url = {"judge": ["demo-tulu-7b"], "inject": ["well_formatted@0.83"], "suppress": ["funny@0.071"]}
    at = reopen("simulate", url)
    assert not at.exception
    assert widget(at, "slider", "success rate: + well formatted").value == 0.83
    assert widget(at, "slider", "success rate: - funny").value == 0.07  # on the sliders' step
    assert url_of(at)["inject"] == ["well_formatted@0.83"] and url_of(at)["suppress"] == ["funny@0.07"]


def test_judges_view_round_trips_and_a_stale_link_opens_the_default_view(shared_store_path):
    at = open_page("judges")
    widget(at, "selectbox", "Reference judge").set_value("demo-gpt-4-turbo").run()
    widget(at, "selectbox", "Judge").set_value("demo-tulu-7b").run()
    url = url_of(at)
    assert url["reference"] == ["demo-gpt-4-turbo"] and url["card"] == ["demo-tulu-7b"]
    again = reopen("judges", url)
    assert widget(again, "selectbox", "Reference judge").value == "demo-gpt-4-turbo"
    assert widget(again, "selectbox", "Judge").value == "demo-tulu-7b"
    stale = open_page("judges", {"reference": "no-such-judge"})
    assert widget(stale, "selectbox", "Reference judge").value in set(demo.JUDGES)


def test_similarity_with_three_judges_groups_them_in_two_clusters(shared_store_path):
    """Regression: three judges chosen made the Clusters slider run from 2 to 2, which Streamlit refuses
    (StreamlitInvalidMinMaxError), and the page stopped there."""
    at = open_page("similarity", {"judge": ["demo-crowd", "demo-gpt-4-turbo", "demo-tulu-7b"]})
    widget(at, "radio", "Group the judges by").set_value("clusters").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Two clusters" in c.value for c in at.caption)


# --------------------------------------------------------------------------- every result a download


def test_every_result_offers_csv_and_json(shared_store_path):
    import json

    import pandas as pd

    from core.store import Store
    from dashboard import data, data_samples

    want = {
        "overview": ["Agreement (CSV)", "Agreement (JSON)"],
        "judges": ["Agreement (CSV)", "Agreement (JSON)"],
        "similarity": ["Matrix (CSV)", "Matrix (JSON)"],
        "simulate": ["Win rates (CSV)", "Win rates (JSON)"],
        "samples": [f"The filtered list, all {demo_samples():,} rows (CSV)",
                    f"The filtered list, all {demo_samples():,} rows (JSON)"],
    }
    for page, labels in want.items():
        at = open_page(page)
        shown = [b.proto.label for b in at.get("download_button")]
        for label in labels:
            assert label in shown, (page, label, shown)
    # the filtered list's download is every row of the filter, not one page, each with its sample id
    from core.store import SampleFilter

    with Store(shared_store_path) as s:
        n = s.table_counts()["samples"]
    frame = data_samples.browse_all(("x",), SampleFilter(dataset="demo-synthetic"))
    assert len(frame) == n and frame["id"].is_unique
    back = pd.DataFrame(json.loads(data.json_download(frame)))
    assert list(back["id"]) == list(frame["id"])
    import io

    csv = pd.read_csv(io.StringIO(data.csv_download(frame, index=False)))
    assert list(csv.columns)[0] == "id" and list(csv["id"]) == list(frame["id"])


def _widget_keys(at) -> set[str]:
    kinds = ("selectbox", "multiselect", "radio", "slider", "number_input", "text_input", "checkbox", "toggle")
    return {w.key for kind in kinds for w in at.get(kind) if w.key}


def test_similarity_and_simulator_share_no_widget_key(shared_store_path):
    """Regression (issue 13): Similarity and the Simulator both keyed their widgets ``sim_...``, so
    the dataset, judges and scope chosen on one page were read as the other's. Each profile page
    has its own prefix now, and their cascades come from one picker (dashboard/picker.py)."""
    at = open_page("similarity")
    similarity = _widget_keys(at)
    at.switch_page("../pages/simulate.py").run()
    assert not at.exception, [e.value for e in at.exception]
    simulator = _widget_keys(at)
    at.switch_page("../pages/profiles.py").run()
    profiles = _widget_keys(at)
    assert similarity and simulator and profiles
    assert all(k.startswith("similarity_") for k in similarity), sorted(similarity)
    assert all(k.startswith("sim_") for k in simulator), sorted(simulator)
    assert all(k.startswith("profiles_") for k in profiles), sorted(profiles)
    assert {"similarity_dataset", "sim_dataset", "profiles_dataset"} <= similarity | simulator | profiles


def test_profiles_link_is_restored_once_like_the_other_pages(shared_store_path):
    """Profiles reads its link through viewurl.restore (as Similarity and the Simulator do): the link's
    values open the view, then the widgets rule (a changed scope is not pulled back to the link's)."""
    at = open_page("profiles", {"scope": "Code", "judge": ["demo-crowd", "demo-gpt-4-turbo"], "order": "weight"})
    assert widget(at, "selectbox", "Scope").value == "Code"
    assert widget(at, "multiselect", "Judges").value == ["demo-crowd", "demo-gpt-4-turbo"]
    assert widget(at, "radio", "Order").value == "weight"
    widget(at, "selectbox", "Scope").set_value("all").run()
    assert widget(at, "selectbox", "Scope").value == "all"
    assert url_of(at)["scope"] == ["all"]
    assert widget(at, "multiselect", "Judges").value == ["demo-crowd", "demo-gpt-4-turbo"]  # carried over
