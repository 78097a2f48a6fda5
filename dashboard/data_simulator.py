"""Cached reads of the Simulator page (pages/simulate.py): the datasets and options it can run on,
a scope's pairs (a shared resource), and core.simulate's results as the page's frames."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import simulate as _simulate
from dashboard.data import store



@st.cache_data(show_spinner=False, max_entries=16)
def simulation_datasets(fp: tuple) -> list[str]:
    """Datasets with a profile whose features they have: the ones the simulator can run on."""
    return _simulate.datasets(store())


@st.cache_data(show_spinner=False, max_entries=16)
def simulation_options(fp: tuple, dataset: str) -> dict:
    """Per feature set, scope and method the judges with a profile; the responding models of a dataset."""
    return _simulate.simulation_options(store(), dataset)


@st.cache_data(show_spinner=False, max_entries=16)
def simulation_index(fp: tuple, dataset: str) -> pd.DataFrame:
    """``simulation_options``' index as rows for the profile picker (dashboard/picker.py): one per
    (feature set, scope, method, judge) with a profile, in the simulator's reading order."""
    index = simulation_options(fp, dataset)["index"]
    return pd.DataFrame([{"dataset": dataset, "feature_source": src, "scope": sc, "method": m, "judge": j}
                         for src, scopes in index.items() for sc, methods in scopes.items()
                         for m, judges in methods.items() for j in judges],
                        columns=["dataset", "feature_source", "scope", "method", "judge"])


@st.cache_resource(show_spinner=False, max_entries=8)
def simulation_pairs(fp: tuple, dataset: str, feature_source: str, scope: str):
    """The scope's pairs (features, models, where conditional attributes apply), read once: moving a
    slider then costs only the simulation, not a read of every feature of the dataset. A shared
    resource, not a copy per call (the simulator only reads it): unpickling 5,000 pairs on every
    rerun cost more than the simulation."""
    return _simulate.load_pairs(store(), dataset, feature_source, scope)


def _pairs_or_none(fp: tuple, dataset: str, feature_source: str | None, scope: str):
    return simulation_pairs(fp, dataset, feature_source, scope) if feature_source else None


@st.cache_data(show_spinner=False, max_entries=32)
def simulation(fp: tuple, dataset: str, judges: tuple[str, ...], scope: str, model: str | None, opponent: str,
               inject: tuple[tuple[str, float], ...], suppress: tuple[tuple[str, float], ...],
               method: str | None, feature_source: str | None = None) -> dict:
    """core.simulate.simulate for several judges, with frames for the page's tables and charts."""
    sims = _simulate.simulate(store(), dataset, list(judges), scope=scope, model=model, opponent=opponent,
                              inject=dict(inject), suppress=dict(suppress), method=method,
                              feature_source=feature_source,
                              pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    return _simulate.simulation_frames(sims)


@st.cache_data(show_spinner=False, max_entries=32)
def injection_ranking(fp: tuple, dataset: str, judge: str, scope: str, model: str | None, opponent: str,
                      method: str | None, feature_source: str | None = None) -> dict:
    """What to inject: every attribute alone (rate 1), ranked by M's predicted gain under one judge."""
    r = _simulate.injection_ranking(store(), dataset, judge, scope=scope, model=model, opponent=opponent,
                                    method=method, feature_source=feature_source,
                                    pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    return _simulate.ranking_frames(r)


@st.cache_data(show_spinner=False, max_entries=32)
def controlled_leaderboard(fp: tuple, dataset: str, judge: str, attributes: tuple[str, ...], scope: str,
                           method: str | None, feature_source: str | None = None) -> dict:
    """Raw and attribute-controlled win rates of every responding model under one judge."""
    lb = _simulate.controlled_win_rates(store(), dataset, judge, list(attributes), scope=scope, method=method,
                                        feature_source=feature_source,
                                        pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    return _simulate.leaderboard_frames(lb)


@st.cache_data(show_spinner=False, max_entries=32)
def calibration(fp: tuple, dataset: str, judges: tuple[str, ...], scope: str, method: str | None,
                feature_source: str | None = None) -> dict:
    """Predicted against observed P(A preferred) by decile, per judge, and each judge's calibration error."""
    cals = _simulate.calibration(store(), dataset, list(judges), scope=scope, method=method,
                                 feature_source=feature_source,
                                 pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    return _simulate.calibration_frames(cals)
