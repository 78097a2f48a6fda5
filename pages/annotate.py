"""Annotate & fit: rate a dataset's pairs with an LLM (or the offline heuristics), then fit the
judges' profiles. Both run as background jobs recorded in the store and watched from here."""

import streamlit as st

from dashboard import auth, data, data_judges, guide, workbench

st.title("Annotate & fit")
guide.how_to_read("annotate")
st.caption("Long work runs as a job in a worker process and is recorded in the store: reload the page or open it "
           "in another browser and you follow the same job; a job never runs twice at once. Every answer is stored "
           "the moment it arrives, so running a job again (after a stop, a crash or new data) pays only for what "
           "has not succeeded.")
workbench.show_flash()

fp = data.fingerprint()
ov = data.catalog(fp)
if ov["datasets"].empty:
    st.info("The store is empty. Import data with `python -m core import FORMAT PATH` or build the demo with "
            "`python -m core demo`.")
    st.stop()

st.subheader("Job")
workbench.watch(key="annotate_watch")

# keyed: the tab in use stays selected when a button reruns the page (a click on Fit used to jump back to Annotate)
annotate_tab, fit_tab, history_tab = st.tabs(["Annotate", "Fit profiles", "History"], key="annotate_tab",
                                             on_change="rerun")

with annotate_tab:
    selection, n_samples = workbench.selection_form("ann", ov)
    configured = workbench.llm_configured()
    mode = st.radio("Annotator", ["llm", "heuristic"], index=0 if configured else 1, horizontal=True, key="ann_mode",
                    format_func=lambda m: "LLM (OpenAI-compatible)" if m == "llm" else "Offline heuristics (no LLM)")
    if not configured:
        st.info("No LLM is configured (no API key, no base URL). The offline heuristic annotator judges what text "
                "statistics can (length, formatting, steps, slang and emoji, refusals, questions back, repetition, "
                "links) and needs no LLM.")
    if mode == "llm":
        llm = workbench.endpoint_form("ann")
        both = st.checkbox("Both orders", key="ann_both",
                           help="also rate with A and B swapped, reconcile the two and report order consistency")
        budget = st.number_input("Budget (USD; 0: none)", min_value=0.0, value=0.0, step=0.5, format="%.2f",
                                 key="ann_budget", help="the job stops cleanly before its projected spend passes it")
        st.markdown("**Cost estimate** (before anything is sent)")
        est = data_judges.job_estimate(data.activity_fingerprint(), "annotate", selection["dataset"],
                                tuple(selection["scenarios"]), selection["limit"], tuple(sorted(llm.items())), both)
        workbench.show_estimate(est, llm)
        kind, params = "annotate", {**selection, "both_orders": both, "llm": llm}
        total, job_budget = est["estimate"].samples, (budget or None)
        if not (llm["base_url"] or workbench.key_source()):
            total = 0  # nothing to send requests to: OpenAI needs a key
            st.warning("Set an API key, or a base URL of a server that needs none, to start.")
    else:
        st.caption(f"Offline: {n_samples:,} samples, no requests, no cost. The features go to the feature set "
                   "heuristic:v1.")
        kind, params, total, job_budget = "heuristic", selection, n_samples, None
    if auth.require_editor("starting a job"):
        if st.button("Start", type="primary", key="ann_start", disabled=not total, icon=":material/play_arrow:"):
            workbench.start(kind, params, total=total, budget=job_budget, watch_key="annotate_watch")

with fit_tab:
    st.caption("One Bayesian logistic regression per (scope, judge) on the chosen feature set. A profile whose "
               "inputs did not change is not fitted again.")
    workbench.fit_form("fit", ov, watch_key="annotate_watch")

with history_tab:
    workbench.history()
