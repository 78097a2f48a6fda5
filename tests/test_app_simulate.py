"""The Simulator page (AppTest) and its chart builders: the numbers shown are core.simulate's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import demo
from core import simulate as sim
from core.store import Store
from dashboard import charts
from tests.stsession import frame_with, open_page

PAGE = "simulate"  # pages/simulate.py
DS = demo.DEMO_DATASET


def pct(x: float) -> str:
    return f"{x:.1%}"


def metrics_by_judge(at: AppTest, n: int) -> list[dict[str, tuple[str, str]]]:
    ms = [(m.label, m.value, m.delta) for m in at.metric]
    assert len(ms) == 3 * n
    return [{label: (value, delta) for label, value, delta in ms[3 * i:3 * i + 3]} for i in range(n)]


def check_against_core(at: AppTest, store_path: Path, judges, model, opponent, inject, suppress):
    with Store(store_path) as s:
        want = sim.simulate(s, DS, judges, model=model, opponent=opponent, inject=inject, suppress=suppress,
                            method="fast", feature_source="demo")
    shown = metrics_by_judge(at, len(judges))
    for got, w in zip(shown, want):
        assert got["Observed"][0] == pct(w.observed)
        assert got["Predicted before"][0] == pct(w.before.mean)
        assert got["Predicted after"] == (pct(w.after.mean), f"{w.change.mean * 100:+.1f} points")
    rates = frame_with(at, "judge", "stage", "pred_lo")
    for w in want:
        mine = rates[rates["judge"] == w.judge].set_index("stage")
        assert mine.loc["observed", "mean"] == pytest.approx(w.observed)
        assert mine.loc["observed", "lo"] == pytest.approx(w.observed_lo)
        for stage, e in (("predicted before", w.before), ("predicted after", w.after)):
            assert list(mine.loc[stage, ["mean", "lo", "hi", "pred_lo", "pred_hi"]]) == pytest.approx(
                [e.mean, e.lo, e.hi, e.pred_lo, e.pred_hi])
    return want


def test_default_view_shows_cores_numbers_for_two_judges(shared_store_path):
    at = open_page(PAGE, timeout=180)
    judges = at.multiselect(key=f"sim_judges|{DS}|demo|all|fast").value
    assert len(judges) == 2
    model = at.selectbox(key=f"sim_model|{DS}").value
    with Store(shared_store_path) as s:
        assert model == sim.models(s, DS)[0]["model"]  # the model with the most pairs
    assert at.selectbox(key=f"sim_opponent|{DS}|{model}").value == "all"
    want = check_against_core(at, shared_store_path, judges, model, "all", {"lengthy": 0.5}, {})
    contrib = frame_with(at, "judge", "label", "applies")
    assert list(contrib["mean"]) == pytest.approx([w.contributions[0].mean for w in want])
    prov = frame_with(at, "profile_id", "fingerprint")
    assert list(prov["profile_id"]) == [w.profile["profile_id"] for w in want]
    assert list(prov["pairs_fingerprint"]) == [w.settings["pairs_fingerprint"] for w in want]


def test_changed_manipulation_judges_and_opponent_recompute(shared_store_path):
    at = open_page(PAGE, timeout=180)
    at.multiselect(key=f"sim_judges|{DS}|demo|all|fast").set_value(["demo-crowd", "demo-tulu-70b"])
    at.selectbox(key=f"sim_model|{DS}").set_value("demo-model-alpha")
    at.multiselect(key="sim_inject").set_value(["well_formatted", "lengthy"])
    at.run()
    # the opponent list, the suppress options and the sliders follow the choices above
    at.selectbox(key="sim_opponent|demo-synthetic|demo-model-alpha").set_value("demo-model-beta")
    at.slider(key="sim_rate_inject_well_formatted").set_value(1.0)
    at.slider(key="sim_rate_inject_lengthy").set_value(0.25)
    at.multiselect(key="sim_suppress").set_value(["admits_limits"])
    at.run()
    at.slider(key="sim_rate_suppress_admits_limits").set_value(0.8).run()
    assert not at.exception, [e.value for e in at.exception]
    want = check_against_core(at, shared_store_path, ["demo-crowd", "demo-tulu-70b"], "demo-model-alpha", "demo-model-beta",
                              {"well_formatted": 1.0, "lengthy": 0.25}, {"admits_limits": 0.8})
    contrib = frame_with(at, "judge", "label", "applies")
    for w in want:
        mine = contrib[contrib["judge"] == w.judge]
        assert list(mine["label"]) == ["well formatted", "lengthy", "admits limits"]
        assert list(mine["mean"]) == pytest.approx([c.mean for c in w.contributions])
        assert list(mine["rate"]) == pytest.approx([1.0, 0.25, 0.8])
        assert mine["mean"].sum() == pytest.approx(w.change.mean)  # Shapley: they add up to the change


def test_ranking_leaderboard_and_calibration_are_cores(shared_store_path):
    at = open_page(PAGE, timeout=180)
    judges = at.multiselect(key=f"sim_judges|{DS}|demo|all|fast").value
    model = at.selectbox(key=f"sim_model|{DS}").value
    # the analyses are tabs of which only the open one runs: the ranking's is open first
    assert at.session_state["sim_analysis"] == "What to inject"
    assert "sim_control" not in [m.key for m in at.multiselect]  # the leaderboard's tab did not run
    at.selectbox(key="sim_rank_judge").set_value(judges[1]).run()
    table = frame_with(at, "attribute", "p_positive")
    at.session_state["sim_analysis"] = "Calibration"
    at.run()
    assert "sim_rank_judge" not in [s.key for s in at.selectbox]  # the closed tab did not run
    every = list(at.multiselect(key=f"sim_cal_judges|{DS}|demo|all|fast").options)
    assert len(every) == 4  # any fitted judge can be calibrated; the default is the judges compared
    at.multiselect(key=f"sim_cal_judges|{DS}|demo|all|fast").set_value(every).run()
    summary = frame_with(at, "judge", "ece")
    at.session_state["sim_analysis"] = "Attribute-controlled win rates"
    at.run()
    at.multiselect(key="sim_control").set_value(["lengthy", "well_formatted"]).run()
    assert not at.exception, [e.value for e in at.exception]
    with Store(shared_store_path) as s:
        rank = sim.injection_ranking(s, DS, judges[1], model=model, method="fast", feature_source="demo")
        boards = [sim.controlled_win_rates(s, DS, j, ["lengthy", "well_formatted"], method="fast",
                                           feature_source="demo") for j in judges]
        cals = sim.calibration(s, DS, scope="all", method="fast", feature_source="demo")
    assert list(table["attribute"]) == [g.attribute for g in rank.gains]
    assert list(table["mean"]) == pytest.approx([g.mean for g in rank.gains])
    for judge, lb in zip(judges, boards):
        at.selectbox(key="sim_lb_judge").set_value(judge).run()
        (got,) = [d.value for d in at.dataframe if {"raw", "controlled", "rank_change"} <= set(d.value.columns)]
        assert list(got["model"]) == [r.model for r in lb.rows]
        assert list(got["raw"]) == pytest.approx([r.raw for r in lb.rows])
        assert list(got["controlled"]) == pytest.approx([r.controlled for r in lb.rows])
        assert list(got["rank_change"]) == [r.rank_change for r in lb.rows]
    assert dict(zip(summary["judge"], summary["ece"])) == pytest.approx({c.judge: c.ece for c in cals})


def test_no_profiles_says_how_to_fit_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFDISSECT_STORE", str(tmp_path / "empty.db"))
    monkeypatch.setenv("PREFDISSECT_SEED_DEMO", "0")
    at = open_page(PAGE, timeout=180)
    assert any("python -m core fit" in i.value for i in at.info)
    assert not at.metric


# --------------------------------------------------------------------------- chart builders


def _layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def test_simulation_chart_encodes_estimates_and_intervals():
    frame = pd.DataFrame([
        {"judge": "j1", "stage": "observed", "mean": 0.45, "lo": 0.38, "hi": 0.52, "pred_lo": None, "pred_hi": None},
        {"judge": "j1", "stage": "predicted before", "mean": 0.5, "lo": 0.49, "hi": 0.51, "pred_lo": 0.43,
         "pred_hi": 0.57},
        {"judge": "j1", "stage": "predicted after", "mean": 0.6, "lo": 0.55, "hi": 0.65, "pred_lo": 0.5,
         "pred_hi": 0.7},
    ])
    spec = charts.simulation_chart(frame).to_dict()
    layers = _layers(spec)
    ci = next(l for l in layers if l["encoding"].get("x2", {}).get("field") == "hi")
    assert ci["encoding"]["x"]["field"] == "lo" and ci["encoding"]["yOffset"]["field"] == "stage"
    band = next(l for l in layers if l["encoding"].get("x2", {}).get("field") == "pred_hi")
    assert band["transform"][0]["filter"] == "isValid(datum.pred_lo)"
    assert spec["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["observed", "predicted before",
                                                                        "predicted after"]
    data = next(iter(spec["datasets"].values()))
    assert [d["mean"] for d in data] == [0.45, 0.5, 0.6]


def test_contribution_ranking_leaderboard_and_calibration_charts():
    contrib = pd.DataFrame([{"judge": "j", "label": "lengthy", "direction": "inject", "rate": 0.5, "mean": 0.1,
                             "lo": 0.05, "hi": 0.15},
                            {"judge": "j", "label": "admits limits", "direction": "suppress", "rate": 1.0,
                             "mean": -0.02, "lo": -0.04, "hi": 0.0}])
    spec = charts.contribution_chart(contrib).to_dict()
    data = next(iter(spec["datasets"].values()))
    assert [d["change"] for d in data] == ["+ lengthy", "- admits limits"]
    assert _layers(spec)[0]["encoding"]["x"]["field"] == "mean"

    ranking = pd.DataFrame({"label": ["a", "b", "c"], "mean": [0.2, -0.1, 0.05], "lo": [0.1, -0.2, 0.0],
                            "hi": [0.3, 0.0, 0.1], "p_positive": [1.0, 0.0, 0.9], "part": ["top 5", "bottom 5", "top 5"]})
    spec = charts.injection_ranking_chart(ranking).to_dict()
    assert _layers(spec)[0]["encoding"]["y"]["sort"] == ["a", "c", "b"]  # largest gain on top

    board = pd.DataFrame({"model": ["m1", "m2"], "raw": [0.6, 0.4], "controlled": [0.45, 0.55],
                          "controlled_lo": [0.43, 0.53], "controlled_hi": [0.47, 0.57], "sharp": [True, True]})
    spec = charts.leaderboard_chart(board).to_dict()
    points = next(l for l in _layers(spec) if l["mark"]["type"] == "point")
    assert points["encoding"]["y"]["sort"] == ["m1", "m2"]
    long = spec["datasets"][points["data"]["name"]]
    assert sorted((d["model"], d["rate"], d["win_rate"]) for d in long) == [
        ("m1", "controlled", 0.45), ("m1", "raw", 0.6), ("m2", "controlled", 0.55), ("m2", "raw", 0.4)]

    cal = pd.DataFrame({"judge": ["j"] * 3, "bin": [1, 2, 3], "pairs": [10, 10, 10], "predicted": [0.2, 0.5, 0.8],
                        "observed": [0.1, 0.5, 0.9], "lo": [0.02, 0.3, 0.7], "hi": [0.3, 0.7, 0.98]})
    spec = charts.calibration_chart(cal).to_dict()
    line = next(l for l in _layers(spec) if l["mark"]["type"] == "line" and l["encoding"]["y"]["field"] == "observed")
    assert line["encoding"]["x"]["field"] == "predicted"
    assert np.allclose([d["observed"] for d in spec["datasets"][line["data"]["name"]]], [0.1, 0.5, 0.9])
