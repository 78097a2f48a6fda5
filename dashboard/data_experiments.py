"""Cached reads and actions of the Simulator page's experiment section (dashboard/experimentview.py):
the stored experiments, one experiment's result as the page's frames, the profiles an experiment can
use, and creating one (core/experiment.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import experiment as _experiment
from dashboard.data import store


@st.cache_data(show_spinner=False, max_entries=16)
def experiments(fp: tuple) -> list[dict]:
    """The stored experiments, newest first: id, name, status, judge, model, created."""
    return [{"id": r["id"], "name": r["name"], "status": r["status"], "created_at": r["created_at"],
             "judge": (r["spec"] or {}).get("judge_name"), "model": ((r["spec"] or {}).get("model") or {}).get("model")}
            for r in store().experiments()]


def _long(arms: list[dict], pairs: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    rows = []
    for a in arms:
        for stage, field in pairs:
            e = a.get(field) or {}
            mean = e.get("rate", e.get("mean"))
            if mean is None:
                continue
            rows.append({"arm": a["arm"], "stage": stage, "mean": mean, "lo": e.get("lo"), "hi": e.get("hi"),
                         "pred_lo": e.get("pred_lo"), "pred_hi": e.get("pred_hi")})
    return pd.DataFrame(rows, columns=["arm", "stage", "mean", "lo", "hi", "pred_lo", "pred_hi"])


@st.cache_data(show_spinner=False, max_entries=16)
def experiment_view(fp: tuple, experiment_id: int) -> dict | None:
    """One experiment: its record, and its result as frames for the page (win rates and shifts, measured
    beside predicted, long form for the charts; the arms' table; the attributes' success rates)."""
    rec = store().experiment(experiment_id)
    if rec is None:
        return None
    result = rec.get("result") or {}
    arms = result.get("arms", [])
    return {"record": rec,
            "rates": _long(arms, (("measured", "measured"), ("predicted", "predicted"),
                                  ("simulated", "simulated"))),
            "shifts": _long(arms, (("measured", "shift"), ("predicted", "predicted_shift"))),
            "table": _experiment.arms_frame(result), "success": _experiment.success_frame(result),
            "within": _experiment.within(result)}


@st.cache_data(show_spinner=False, max_entries=8)
def experiment_profiles(fp: tuple) -> list[dict]:
    """Profiles an experiment can use: fitted on features new answers can get (heuristics or LLM ones)."""
    cols = ["dataset", "scope", "judge", "feature_source", "method"]
    rows = store().profiles(columns=cols)
    ok = [r for r in rows if r["feature_source"] == _experiment.HEURISTIC_SOURCE or r["feature_source"].startswith("llm:")]
    return sorted({tuple(r[c] for c in cols) for r in ok})


def experiment_estimate(experiment_id: int):
    return _experiment.estimate(store(), experiment_id)


def create_experiment(spec: "_experiment.Spec") -> int:
    return _experiment.create(store(), spec)
