"""Cached reads of the Profiles and Similarity pages (pages/profiles.py, pages/similarity.py):
the index of stored profiles, one scope's profiles and their view, differences, similarity and
judge groups. Keyed by ``data.fingerprint()`` like every cached read."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import compare, scopes as _scopes
from core.profile import export_profiles, method_rank, profile_view as _profile_view
from dashboard.data import store



@st.cache_data(show_spinner=False, max_entries=64)
def index_rows(fp: tuple, dataset: str, min_judges: int = 1) -> pd.DataFrame:
    """One dataset's rows of ``profile_index`` in the pickers' reading order (dashboard/picker.py):
    feature sets by name, methods in the order profiles are chosen in (``core.profile.method_rank``),
    scopes in reading order (``core.scopes.order``), judges by name. ``min_judges``: only the
    (feature set, method) pairs with profiles of that many judges (Similarity needs two). Cached: the
    picker reads it twice a run (ordering 500+ rows each time was about 6% of a Profiles interaction)."""
    index = profile_index(fp, min_judges)
    rows = index[index["dataset"] == dataset]
    m_rank = {m: i for i, m in enumerate(sorted(dict.fromkeys(rows["method"]), key=method_rank))}
    s_rank = {sc: i for i, sc in enumerate(_scopes.order(rows["scope"]))}
    return (rows.assign(_m=rows["method"].map(m_rank), _s=rows["scope"].map(s_rank))
            .sort_values(["feature_source", "_m", "_s", "judge"], kind="stable").drop(columns=["_m", "_s"]))


@st.cache_data(show_spinner=False, max_entries=16)
def profile_index(fp: tuple, min_judges: int = 1) -> pd.DataFrame:
    """Which profiles are stored: one row per profile (its key, samples used, imported or fitted);
    ``min_judges``: only the (dataset, feature set, method) triples with profiles of that many judges."""
    cols = ["dataset", "feature_source", "method", "scope", "judge", "n", "imported"]
    index = pd.DataFrame(store().profiles(columns=cols), columns=cols)
    if min_judges > 1:
        index = index[index.groupby(["dataset", "feature_source", "method"])["judge"].transform("nunique") >= min_judges]
    return index


def _profiles_in_order(dataset: str, feature_source: str, method: str, scope: str, judges: tuple[str, ...]):
    rows = store().profiles(dataset=dataset, scope=scope, feature_source=feature_source, method=method,
                            judges=list(judges), with_draws=True)
    rank = {j: i for i, j in enumerate(judges)}
    return sorted(rows, key=lambda r: rank.get(r["judge"], len(rank)))


@st.cache_data(show_spinner=False, max_entries=64)
def profile_rows(fp: tuple, dataset: str, feature_source: str, method: str, scope: str,
                 judges: tuple[str, ...]) -> list[dict]:
    """Stored profiles of these judges in one scope, with their posterior draws, in the judges' order."""
    return _profiles_in_order(dataset, feature_source, method, scope, judges)


@st.cache_data(show_spinner=False, max_entries=64)
def profile_view(fp: tuple, dataset: str, feature_source: str, method: str, scope: str,
                 judges: tuple[str, ...], k: int = 5) -> dict:
    """What the Profiles page shows: per-attribute frame, top/bottom attributes, accuracy and diagnostics."""
    rows = profile_rows(fp, dataset, feature_source, method, scope, judges)
    # a synthetic dataset's known weights, drawn over the fitted ones
    known = _profiles_in_order(dataset, feature_source, "truth", scope, judges) if method != "truth" else None
    return _profile_view(rows, known, k)


def profile_export(dataset: str, feature_source: str, method: str, scope: str, judges: tuple[str, ...],
                   fmt: str) -> str:
    """The weights download (CSV or JSON), made when the button is clicked, not on every view. It
    runs in Streamlit's download thread, outside any page run, so it reads the store directly."""
    return export_profiles(_profiles_in_order(dataset, feature_source, method, scope, judges), fmt)


@st.cache_data(show_spinner=False, max_entries=64)
def weight_difference(fp: tuple, dataset: str, feature_source: str, method: str, scope: str, a: str,
                      b: str) -> pd.DataFrame:
    """Judge a minus judge b per attribute, with intervals from the stored posterior draws."""
    rows = {r["judge"]: r for r in profile_rows(fp, dataset, feature_source, method, scope, (a, b))}
    return compare.difference_of(rows[a], rows[b])


@st.cache_data(show_spinner=False, max_entries=64)
def differing_samples(fp: tuple, dataset: str, feature_source: str, scope: str) -> dict[str, int]:
    """Per attribute, how many samples of the scope differ on it (A and B compare unequal);
    empty when the dataset has no samples stored (imported profiles)."""
    return store().differing_counts(dataset, feature_source, scope)


@st.cache_data(show_spinner=False, max_entries=16)
def judge_details(fp: tuple) -> pd.DataFrame:
    """Every judge with labels: kind and size (billions of parameters, when known)."""
    return pd.DataFrame(store().judges(), columns=["name", "kind", "size_b", "notes", "labels"])


@st.cache_data(show_spinner=False, max_entries=16)
def profile_weights(fp: tuple, dataset: str, feature_source: str, method: str) -> dict:
    """{scope: {judge: mean weights}} of every stored profile: read once for every scope's similarity."""
    return compare.weights_from_rows(store().profiles(dataset=dataset, feature_source=feature_source, method=method,
                                                      columns=["scope", "judge", "attributes", "mean",
                                                               "provenance"]))


@st.cache_data(show_spinner=False, max_entries=32)
def similarity(fp: tuple, dataset: str, feature_source: str, method: str, scope: str | None,
               judges: tuple[str, ...], corr: str) -> compare.SimilarityReport:
    """Judge similarity (``compare.similarity_report``, as the CLI prints it)."""
    return compare.similarity_report(profile_weights(fp, dataset, feature_source, method), scope=scope,
                                     judges=judges, corr=corr)


@st.cache_data(show_spinner=False, max_entries=32)
def judge_groups(fp: tuple, dataset: str, feature_source: str, method: str, scope: str | None,
                 judges: tuple[str, ...], corr: str, by: str, split: float = 30.0, k: int = 2) -> dict[str, list[str]]:
    """Automatic judge groups: by size (``judges.size_b``, else read off the name, split at
    ``split`` B), by kind, or by cutting the clustering into ``k`` clusters."""
    if by == "clusters":
        return compare.auto_groups(judges, by, k=k,
                                   matrix=similarity(fp, dataset, feature_source, method, scope, judges, corr).matrix)
    details = judge_details(fp).set_index("name")
    return compare.auto_groups(judges, by, kinds=details["kind"].to_dict(), sizes=details["size_b"].dropna().to_dict(),
                               split=split)


@st.cache_data(show_spinner=False, max_entries=32)
def group_similarity(fp: tuple, dataset: str, feature_source: str, method: str, scope: str | None,
                     judges: tuple[str, ...], corr: str, groups: tuple[tuple[str, tuple[str, ...]], ...]) -> pd.DataFrame:
    """Intra- and inter-group similarity of judge groups, as a table (see ``compare.group_table``)."""
    matrix = similarity(fp, dataset, feature_source, method, scope, judges, corr).matrix
    return compare.group_similarity_table(matrix, dict(groups))
