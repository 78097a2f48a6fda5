"""Cached reads of the Judges and Annotate & fit pages and their job widgets (pages/judges.py,
pages/annotate.py, dashboard/workbench.py): job estimates, feature sets, the judges' table and
agreement pairs, a judge's bias card. Live job state is read uncached (dashboard/workbench.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import featureset as _featureset, jobs as _jobs, judges, scopes as _scopes
from dashboard.data import store



@st.cache_data(show_spinner=False, max_entries=16)
def job_estimate(fp: tuple, kind: str, dataset: str, scenarios: tuple[str, ...], limit: int | None,
                 llm: tuple[tuple[str, object], ...], both_orders: bool) -> dict:
    """Cost estimate of an annotate or judge job before it starts (core.annotate.estimate: the
    tokens of the actual prompts x the prices, per step, for the requests not answered yet)."""
    from core.llm import LLMSettings

    params = {"dataset": dataset, "scenarios": list(scenarios), "limit": limit, "both_orders": both_orders}
    settings = LLMSettings(**dict(llm))  # no key: an estimate needs none
    est, sampled = _jobs.estimate(store(), kind, params, settings)
    steps = pd.DataFrame([{"step": k, **v} for k, v in est.by_step.items()],
                         columns=["step", "requests", "input_tokens", "output_tokens", "cost"])
    return {"estimate": est, "sampled": sampled, "steps": steps}


@st.cache_data(show_spinner=False, max_entries=16)
def feature_sources(fp: tuple, dataset: str) -> dict:
    """The dataset's feature sets (with samples covered) and the one fitting uses by default."""
    sources = store().feature_sources(dataset)  # one read: a job writing features cannot come between two
    return {"sources": sources, "default": _featureset.richest(r["source"] for r in sources)}


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_judges(fp: tuple, dataset: str) -> list[str]:
    """Names of the judges with labels on the dataset."""
    return store().judge_names(dataset)


@st.cache_data(show_spinner=False)
def fit_scopes() -> list[str]:
    return _scopes.to_fit()


@st.cache_data(show_spinner=False, max_entries=16)
def judge_summary(fp: tuple, dataset: str | None) -> dict:
    """Per-judge counts and position consistency, and every pair's shared / agreeing samples (one read)."""
    return judges.judge_summary(store(), dataset)


@st.cache_data(show_spinner=False, max_entries=32)
def judge_table(fp: tuple, dataset: str | None, reference: str | None) -> pd.DataFrame:
    """Judges with label counts, datasets, position consistency and agreement with ``reference``."""
    return judges.with_reference(judge_summary(fp, dataset), reference)


@st.cache_data(show_spinner=False, max_entries=16)
def judge_pairs(fp: tuple, dataset: str | None) -> pd.DataFrame:
    """Agreement of every two judges (as ``agreement``), from the same read."""
    return judges.agreement_pairs(judge_summary(fp, dataset))


@st.cache_data(show_spinner=False, max_entries=32)
def bias_card(fp: tuple, judge: str, dataset: str | None, families: tuple[str, ...] = ()) -> pd.DataFrame:
    """A judge's bias card (``core.bias.bias_card``) as a table; ``families``: the user's "PATTERN=FAMILY"
    items, checked before the built-in map (``core.bias.families_with``; a bad item is a ValueError)."""
    from core import bias

    return pd.DataFrame(bias.card_rows(bias.bias_card(store(), judge, dataset, families=bias.families_with(families))))
