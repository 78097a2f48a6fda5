"""Cached reads of the Samples page (pages/samples.py): the filters' choices, one page of the
filtered list, a sample in full and a judge's contributions on it. ``sample_options`` also feeds
the job widgets' choices (dashboard/workbench.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import catalogue as _catalogue, samples as _samples, scopes as _scopes
from core.store import SampleFilter
from dashboard import sampleurl as _sampleurl
from dashboard.data import fingerprint, store



def samples_fingerprint() -> tuple:
    """``fingerprint()`` and the last feature and annotation written: an annotation job adds those
    (and fills scenario groups and query cases) without touching samples, labels or profiles."""
    s = store()
    return fingerprint() + s.content_marks()


def sample_catalogue() -> dict:
    """Attribute labels, scenario groups and query-case labels, for the filters."""
    return {"attributes": {a.key: a.label for a in _catalogue.attributes()}, "groups": _catalogue.group_keys(),
            "cases": {c.key: c.label for c in _catalogue.query_cases()},
            "rated_as": {a.key: a.annotated_as for a in _catalogue.attributes() if a.annotated_as}}


def sample_scopes(sample: dict) -> list[str]:
    """The profile scopes a sample belongs to: its scenario group, its query cases, "all"."""
    return _scopes.of_sample(sample)


@st.cache_data(show_spinner=False, max_entries=8)
def sample_datasets(fp: tuple) -> list[str]:
    """Datasets that have samples (imported profiles alone have none), largest first."""
    rows = [d for d in store().datasets() if d["samples"]]
    return [d["name"] for d in sorted(rows, key=lambda d: (-d["samples"], d["name"]))]


@st.cache_data(show_spinner=False, max_entries=64)
def sample_dataset_of(fp: tuple, sample_id: str) -> str | None:
    return store().dataset_of(sample_id)


@st.cache_data(show_spinner=False, max_entries=16)
def sample_options(fp: tuple, dataset: str) -> _sampleurl.Options:
    """The filters' choices on one dataset: scenario groups present, labelled judges, feature sources."""
    s = store()
    return _sampleurl.Options(scenarios=[r["scenario_group"] for r in s.scenario_counts(dataset)],
                              judges=s.judge_names(dataset),
                              sources=[r["source"] for r in s.feature_sources(dataset)],
                              categories=s.categories(dataset))


@st.cache_data(show_spinner=False, max_entries=64)
def browse(fp: tuple, f: SampleFilter, offset: int, limit: int) -> dict:
    """One page of the filtered list: ``ids`` (in order), the ``frame`` the table shows (its columns:
    ``core.samples.list_rows``), ``total``."""
    rows, total = store().browse(f, offset=offset, limit=limit)
    return {"ids": [r["id"] for r in rows], "frame": pd.DataFrame(_samples.list_rows(rows)), "total": total,
            "choice_columns": list(f.shown_judges())}


@st.cache_data(show_spinner=False, max_entries=64)
def browse_all(fp: tuple, f: SampleFilter) -> pd.DataFrame:
    """Every row of the filtered list (not one page), with each sample's id first: the list's download."""
    total = store().browse(f, offset=0, limit=1)[1]
    got = browse(fp, f, 0, max(total, 1))
    return got["frame"].assign(id=got["ids"])[["id", *got["frame"].columns]] if got["ids"] else got["frame"]


@st.cache_data(show_spinner=False, max_entries=64)
def browse_index(fp: tuple, sample_id: str, f: SampleFilter) -> int | None:
    return store().browse_index(sample_id, f)


@st.cache_data(show_spinner=False, max_entries=64)
def sample_at(fp: tuple, f: SampleFilter, index: int) -> str | None:
    """The id at a position (0-based) of the filtered list, for previous / next."""
    if index < 0:
        return None
    rows, _ = store().browse(f, offset=index, limit=1)
    return rows[0]["id"] if rows else None


@st.cache_data(show_spinner=False, max_entries=32)
def sample_view(fp: tuple, sample_id: str) -> _samples.SampleView | None:
    return _samples.sample_view(store(), sample_id)


@st.cache_data(show_spinner=False, max_entries=32)
def profiled_judges(fp: tuple, dataset: str) -> list[str]:
    """Judges with a stored profile on the dataset (any scope, any method)."""
    return sorted({p["judge"] for p in store().profiles(dataset=dataset, columns=["judge"])})


@st.cache_data(show_spinner=False, max_entries=64)
def explanation(fp: tuple, sample_id: str, judge: str, scope: str) -> dict:
    """A judge's contributions on one sample (``core.samples.explain``) and the frame the chart draws."""
    e = _samples.explain(store(), sample_id, judge, scope)
    return {"explanation": e, "frame": pd.DataFrame(e.frame_rows, columns=["attribute", "label", "x", "weight",
                                                                            "contribution"])}
