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
    """A judge's bias card (``core.bias.bias_card``) as a table, but for its one slow figure: the
    own-family covariate is fitted in the background (``self_preference``) and filled in by
    ``with_covariate``. ``families``: the user's "PATTERN=FAMILY" items, checked before the built-in map
    (``core.bias.families_with``; a bad item is a ValueError)."""
    from core import bias

    return pd.DataFrame(bias.card_rows(bias.bias_card(store(), judge, dataset, families=bias.families_with(families),
                                                      fit_self=False)))


def _stop_fits(fits: dict) -> None:
    fits["pool"].shutdown(wait=False, cancel_futures=True)


@st.cache_resource(show_spinner=False, on_release=_stop_fits)
def _covariate_fits() -> dict:
    """One background thread for the bias card's covariate fits, shared by the sessions, and the fits
    started (the newest 64 kept; a cleared cache stops the thread)."""
    import threading
    from collections import OrderedDict
    from concurrent.futures import ThreadPoolExecutor

    return {"pool": ThreadPoolExecutor(max_workers=1, thread_name_prefix="bias-covariate", initializer=_background_priority),
            "futures": OrderedDict(), "lock": threading.Lock()}


def _background_priority() -> None:
    """The fit thread yields the CPU to page runs (Linux schedules threads one by one; elsewhere: no-op)."""
    import os
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not allowed
        pass


def _fit_covariate(path: str, judge: str, dataset: str | None, families: dict[str, str]):
    from core import bias
    from core.store import open_store

    return bias.self_preference_covariate(open_store(path), judge, dataset, families=families)


def self_preference(fp: tuple, judge: str, dataset: str | None, families: tuple[str, ...] = (), *,
                    start: bool = True):
    """The bias card's own-family covariate (``core.bias.self_preference_covariate``: a fit, about a
    second at the paper's scale) as a future: started once per (store version, judge, dataset, families)
    on a background thread, so the Judges page renders without waiting for it. ``start=False`` only looks
    it up (None when not started): the page draws the card first and starts the fit as its run ends, so
    the fit (and the import of its compiled kernels, which holds the GIL) does not slow the page's run."""
    from core import bias

    bg = _covariate_fits()
    key = (fp, judge, dataset, families)
    with bg["lock"]:
        fut = bg["futures"].get(key)
        if fut is None and start:
            fut = bg["futures"][key] = bg["pool"].submit(_fit_covariate, str(store().path), judge, dataset,
                                                         bias.families_with(families))
            while len(bg["futures"]) > 64:
                bg["futures"].popitem(last=False)
    return fut


def with_covariate(card: pd.DataFrame, covariate) -> pd.DataFrame:
    """The card with its own-family covariate row filled from the ``self_preference`` future: the fitted
    figure when it is done, the error when it failed, "being fitted" while it runs or is yet to start
    (None; no figure shown)."""
    from core import bias

    rows = card["measure"] == bias.COVARIATE
    if not rows.any():
        return card
    card = card.copy()
    if covariate is None or not covariate.done():
        card.loc[rows, "note"] = "being fitted (fills in by itself in a few seconds)"
        return card
    try:
        item = covariate.result()
    except Exception as e:  # shown in its row; the rest of the card stands
        card.loc[rows, "note"] = f"the fit failed: {type(e).__name__}: {e}"
        return card
    if item is not None:
        for col, value in bias.card_rows([item])[0].items():
            card.loc[rows, col] = value
    return card
