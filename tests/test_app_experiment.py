"""The Simulator page's experiment section (AppTest) and its chart builder: the numbers shown are
core.experiment's, and ``?experiment=ID`` opens that experiment."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core import experiment
from core.store import Store
from dashboard import charts
from tests.stsession import frame_with, open_page, rerun
from tests.test_experiment import _queries, _save_known_profile, _server, _spec


def _finished_experiment(path: Path, tmp_path: Path) -> dict:
    with Store(path) as store, _server(0.9, 2) as server:
        _save_known_profile(store)
        exp_id = experiment.create(store, _spec(server, _queries(tmp_path, 10), name="page test"))
        assert experiment.run(store, exp_id).status == "done"
        return store.experiment(exp_id)


def test_a_link_opens_the_experiment_with_measured_and_predicted_shifts(store_path, tmp_path):
    rec = _finished_experiment(store_path, tmp_path)
    at = open_page("simulate", {"experiment": str(rec["id"])}, timeout=180)
    shown = {m.label: m.value for m in at.metric}
    arms = {a["arm"]: a for a in rec["result"]["arms"]}
    for arm in ("liked", "disliked"):
        assert shown[f"{arm}: measured shift"] == f"{arms[arm]['shift']['mean']:+.1%}"
        assert shown[f"{arm}: predicted shift"] == f"{arms[arm]['predicted_shift']['mean']:+.1%}"
    success = frame_with(at, "could_move")
    assert set(success["attribute"]) == set(arms["liked"]["show"]) | set(arms["disliked"]["show"])
    assert at.query_params["experiment"] == str(rec["id"])  # the view keeps the link


def test_experiment_chart_draws_each_stage_with_its_intervals():
    frame = pd.DataFrame([
        {"arm": "control", "stage": "measured", "mean": 0.5, "lo": 0.4, "hi": 0.6, "pred_lo": None, "pred_hi": None},
        {"arm": "liked", "stage": "predicted", "mean": 0.6, "lo": 0.6, "hi": 0.6, "pred_lo": 0.5, "pred_hi": 0.7}])
    spec = charts.experiment_chart(frame).to_dict()
    assert len(spec["layer"]) == 4
    shifted = charts.experiment_chart(frame.assign(mean=frame["mean"] - 0.5), shift=True).to_dict()
    assert shifted["layer"][1]["encoding"]["x"]["axis"]["format"] == "+%"


def test_the_form_creates_an_experiment_and_shows_its_estimate_before_anything_is_sent(store_path):
    with Store(store_path) as store:
        _save_known_profile(store)
    at = open_page("simulate", timeout=180)
    at.selectbox(key="sim_exp_profile").set_value(("profiles-src", "all", "known-judge", "heuristic:v1", "truth"))
    at.number_input(key="sim_exp_limit").set_value(3)
    rerun(at.button(key="sim_exp_create").click())
    with Store(store_path) as store:
        rec = store.experiments()[0]
        assert [a["name"] for a in rec["spec"]["arms"]] == ["control", "liked", "disliked"]
        assert rec["status"] == "created" and store.scalar("SELECT COUNT(*) FROM annotations "
                                                           "WHERE step = 'generate'") == 0
    assert any("27 requests to send" in c.value for c in at.code)  # 3 queries x 3 arms: 9 answers, 18 verdicts
