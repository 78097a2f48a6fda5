"""Judges: who labelled what, how they agree, how consistent they are when the responses swap
places; add a judge (upload its labels or collect them from a model) and fit it."""

import streamlit as st

from core.judges import each_pair_once
from dashboard import auth, charts, data, data_judges, fmt, guide, viewurl, workbench
from dashboard.render import plain

st.title("Judges")
guide.how_to_read("judges")
workbench.show_flash()

fp = data.fingerprint()
ov = data.catalog(fp)
names = list(ov["datasets"]["name"])
if not names:
    st.info("The store is empty. Import data with `python -m core import FORMAT PATH` or build the demo with "
            "`python -m core demo`.")
    st.stop()

# the view is in the URL (dashboard/viewurl.py): /judges?dataset=D&reference=J&card=J
viewurl.restore("judges_dataset", "dataset", names)
dataset = st.selectbox("Dataset", [None, *names], index=1 if len(names) == 1 else 0, key="judges_dataset",
                       format_func=lambda d: "every dataset" if d is None else d)
base = data_judges.judge_table(fp, dataset, None)

if base.empty:
    st.info("No judge has labels here yet: add one below.")
else:
    kinds = dict(zip(base["name"], base["kind"]))
    options = list(base["name"])
    default = next((i for k in ("human", "gold") for i, n in enumerate(options) if kinds[n] == k), 0)
    viewurl.restore("judges_reference", "reference", options)
    reference = st.selectbox("Reference judge", options, index=default, key="judges_reference",
                             help="agreement is measured against this judge, on the samples both labelled")
    table = data_judges.judge_table(fp, dataset, reference)
    fmt.dataframe(
        table, hide_index=True,
        column_order=["name", "kind", "size_b", "labels", "agreement_ref", "chance_ref", "kappa_ref", "kappa_lo",
                      "kappa_hi", "shared_ref", "consistency", "both_orders",
                      "datasets", "a", "b", "tie", "with_prob", "agree_ref", "consistent"],
        column_config={
            "size_b": fmt.size_column(),
            "datasets": "datasets", "labels": "labels",
            "a": "chose A", "b": "chose B", "tie": "ties", "with_prob": "with probability",
            "both_orders": "both orders known", "consistent": "same verdict both orders",
            "consistency": fmt.percent_column("position consistency",
                                              help="share of samples judged in both orders with the same verdict; "
                                                   "not applicable without verdicts in both orders"),
            "shared_ref": "shared with reference", "agree_ref": "agree with reference",
            "agreement_ref": fmt.percent_column("agreement with reference"),
            "chance_ref": fmt.agreement_columns()["chance"],
            "kappa_ref": fmt.agreement_columns()["kappa"],
            "kappa_lo": fmt.agreement_columns()["kappa_lo"],
            "kappa_hi": fmt.agreement_columns()["kappa_hi"],
        },
    )
    others = table[table["name"] != reference]
    if others["agreement_ref"].notna().any():
        st.markdown(f"**Agreement with {plain(reference)}** (share of shared samples with the same choice; read it "
                    "against the chance level and Cohen's kappa in the table)")
        charts.show(charts.judge_rates, others, "agreement_ref", title="agreement with the reference",
                    count="shared_ref", width="stretch")

    st.subheader("Position bias")
    both = table[table["both_orders"] > 0]
    if both.empty:
        st.info("No judge here has verdicts in both orders yet. Collect a model's labels below with both orders to "
                "see how often it keeps its verdict when A and B swap places.")
    else:
        st.caption("Share of samples on which the judge gave the same verdict with A shown first and with B shown "
                   "first (only where both verdicts are known). 100%: no position bias.")
        charts.show(charts.judge_rates, both, "consistency", title="position consistency", count="both_orders",
                    width="stretch")

    st.subheader("Agreement between every two judges")
    agree = data_judges.judge_pairs(fp, dataset)
    if agree.empty or agree["judge_a"].nunique() < 2:
        st.info("Fewer than two judges here.")
    else:
        st.caption("Colour: Cohen's kappa (agreement beyond what the two judges' choice frequencies give by chance; "
                   "white is chance, the scale fits the pairs shown); text: the agreement rate.")
        charts.show(charts.agreement_heatmap, agree, width="content")
        pairs = each_pair_once(agree)
        fmt.dataframe(pairs, hide_index=True, column_config=fmt.agreement_columns())
        data.download_buttons(pairs, f"agreement_{dataset or 'all'}", "judges_agreement_download", what="Agreement")

covariate_key = None  # the bias card's covariate fit to start once the page is drawn
if not base.empty:
    st.subheader("Bias card")
    st.caption("Position (does the response shown first win?), verbosity, formatting and self-preference (a "
               "response from the judge's own model family): raw rates with 94% Jeffreys intervals, and the weights "
               "net of content from the judge's profile (scope all) as 100·sigmoid(weight); n is the number of pairs "
               "behind each figure. 50% means no bias.")
    b1, b2 = st.columns([1, 2])
    viewurl.restore("judges_bias_judge", "card", list(base["name"]))
    card_judge = b1.selectbox("Judge", list(base["name"]), key="judges_bias_judge")
    viewurl.keep({"dataset": dataset, "reference": reference, "card": card_judge})
    extra = b2.text_input("Extra model families (PATTERN=FAMILY, comma-separated)", key="judges_bias_families",
                          help="Regular expressions on model names, checked before the built-in map "
                               "(gpt/o1 -> openai, claude -> anthropic, llama/vicuna -> llama, qwen, mistral, ...)")
    items = tuple(t.strip() for t in extra.split(",") if t.strip())
    try:
        card = data_judges.bias_card(fp, card_judge, dataset, items)
    except ValueError as e:
        st.info(plain(str(e)))
    else:
        # the card's one slow figure, the own-family covariate (a fit), comes from a background thread
        # started as this run ends (below): the table shows at once and fills that row in when it is done
        covariate_key = (fp, card_judge, dataset, items)
        covariate = data_judges.self_preference(*covariate_key, start=False)

        fmt.dataframe(data_judges.with_covariate(card, covariate), hide_index=True, key="judges_bias_table",
                      column_config={
            "value": fmt.percent_column("estimate", help="not applicable where no pair measures it (see the note)"),
            "lo": fmt.percent_column("94% from"),
            "hi": fmt.percent_column("94% to"),
            "n": st.column_config.NumberColumn("pairs")})

        polls = []

        def await_covariate() -> None:
            """Poll for the fit, drawing nothing (a poll that redrew the table sent it to the browser again
            every half second, unchanged, and Chromium laid the grid out anew each time): when a poll finds
            it in, the page runs once more, shows the figure and stops polling."""
            if polls and (done := data_judges.self_preference(*covariate_key, start=False)) is not None \
                    and done.done():
                st.rerun()
            polls.append(1)

        if covariate is None or not covariate.done():
            st.fragment(await_covariate, run_every=0.5)()

st.subheader("Add a judge")


def upload_labels() -> None:
    st.caption("The paper's format: a JSON list of \"A\" / \"B\" (or \"tie\", or null for no label), one per sample "
               "in the dataset's order. Or a table (CSV, JSONL, JSON list of objects, parquet) with the columns "
               "sample\\_id (ours, or your own id from the import), label (A / B / tie, or A>>B, A>B, A=B...) and, "
               "optionally, label\\_ba (the verdict with B shown first, as that run gave it), prob\\_a, scores / "
               "scores\\_ba. Other layouts: `python -m core labels --help`. A file with an error is rejected whole, naming the row "
               "and field, and the store is left unchanged.")
    upload = st.file_uploader("Labels file", type=["json", "csv", "jsonl", "parquet"], key="labels_file")
    c1, c2, c3 = st.columns([2, 2, 1])
    up_dataset = c1.selectbox("Dataset the labels are for", names, key="upload_dataset")
    up_judge = c2.text_input("Judge name", key="upload_judge", placeholder="e.g. my-model")
    up_kind = c3.selectbox("Kind", ["llm", "human", "gold", "synthetic"], key="upload_kind")
    replace = False
    if up_judge.strip() and up_judge.strip() in set(ov["judges"]["name"]):
        replace = st.checkbox("A judge of this name exists: replace its labels on this dataset with the file's",
                              key="upload_replace", help="without it, a file that would change any of its labels "
                              "(or its kind) is refused and nothing is written")
    if auth.require_editor("adding a judge"):
        if st.button("Add judge", type="primary", key="upload_add", disabled=not (upload and up_judge.strip())):
            try:
                n = workbench.import_labels(upload.name, upload.getvalue(), dataset=up_dataset, judge=up_judge,
                                            kind=up_kind, replace=replace)
            except ValueError as e:  # importers.InputError: file, row and field at fault
                st.error("Not imported; the store is unchanged. " + plain(e))
            else:
                st.session_state["judges_fit_judges"] = [up_judge.strip()]
                st.session_state["judges_next_tab"] = FIT_TAB  # the tabs exist already in this run
                workbench.flash(f"Added {n:,} labels for judge {up_judge.strip()} on dataset {up_dataset}. "
                                "Fit it below.")
                st.rerun()


def collect_labels() -> None:
    st.caption("Ask an OpenAI-compatible model which response is better, in both orders; the answer tokens' "
               "log-probabilities give the probability when the server returns them. Cached and resumable: a rerun "
               "sends only what has not succeeded.")
    selection, _ = workbench.selection_form("collect", ov)
    judge_name = st.text_input("Store the labels as judge", key="collect_judge", placeholder="e.g. gpt-4o-mini-judge")
    llm = workbench.endpoint_form("collect")
    both_orders = st.checkbox("Both orders (A/B and B/A)", value=True, key="collect_both")
    budget = st.number_input("Budget (USD; 0: none)", min_value=0.0, value=0.0, step=0.5, format="%.2f",
                             key="collect_budget")
    st.markdown("**Cost estimate** (before anything is sent)")
    est = data_judges.job_estimate(data.activity_fingerprint(), "judge", selection["dataset"], tuple(selection["scenarios"]),
                            selection["limit"], tuple(sorted(llm.items())), both_orders)
    workbench.show_estimate(est)
    ready = bool(llm["base_url"] or workbench.key_source())
    if not ready:
        st.warning("Set an API key, or a base URL of a server that needs none, to start.")
    if auth.require_editor("collecting labels"):
        if st.button("Start collecting", type="primary", key="collect_start", icon=":material/play_arrow:",
                     disabled=not (ready and judge_name.strip() and est["estimate"].samples)):
            workbench.start("judge", {**selection, "judge": judge_name.strip(), "both_orders": both_orders, "llm": llm},
                            total=est["estimate"].samples, budget=budget or None, watch_key="judges_watch")


def fit_judges() -> None:
    workbench.fit_form("judges_fit", ov, watch_key="judges_watch")


FIT_TAB = "Fit"
ADD_TABS = {"Upload labels": upload_labels, "Collect from a model": collect_labels, FIT_TAB: fit_judges}
if "judges_next_tab" in st.session_state:
    st.session_state["judges_add_tab"] = st.session_state.pop("judges_next_tab")
# only the open tab runs: the collect tab's cost estimate plans every request of its selection
for tab, show in zip(st.tabs(list(ADD_TABS), key="judges_add_tab", on_change="rerun"), ADD_TABS.values()):
    if tab.open:
        with tab:
            show()

st.subheader("Jobs")
workbench.watch(kinds=("judge", "fit"), key="judges_watch")

if covariate_key is not None:  # the page is drawn: now the bias card's covariate fit may take the CPU
    data_judges.self_preference(*covariate_key)
