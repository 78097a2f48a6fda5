"""Overview: what is in the store: datasets, scenarios, judges, and how the judges agree."""

from pathlib import Path

import streamlit as st

from core.judges import each_pair_once
from dashboard import charts, data, fmt, guide

st.title("Overview")
guide.how_to_read("overview")
fp = data.fingerprint()
ov = data.overview(fp)
counts = ov["counts"]

if not counts["samples"]:
    st.info("The store is empty. Import a file on the **Your data** page (editors), or with "
            "`python -m core import FORMAT PATH`; or build the demo with `python -m core demo`.")
    st.page_link(Path(__file__).resolve().parent / "data.py", label="Your data: import a file", icon=":material/upload_file:")
    st.stop()

datasets = ov["datasets"]
if datasets["synthetic"].astype(bool).any():
    names = ", ".join(datasets.loc[datasets["synthetic"].astype(bool), "name"])
    st.caption(f":orange-badge[synthetic] {names}: generated texts and judges with known profiles, for trying the "
               "tool. The built-in demo's judges follow the profiles the paper published for a human crowd (with "
               "ties), GPT-4-Turbo and a large and a small open model (in both orders, the small one favouring "
               "the response shown first).")

cols = st.columns(4)
cols[0].metric("Datasets", f"{counts['datasets']:,}")
cols[1].metric("Samples", f"{counts['samples']:,}")
cols[2].metric("Judges", f"{counts['judges']:,}")
cols[3].metric("Labels", f"{counts['labels']:,}")

st.subheader("Datasets")
fmt.dataframe(
    datasets[["name", "samples", "judges", "labels", "source", "licence", "synthetic", "imported_at"]],
    hide_index=True,
    column_config={"synthetic": st.column_config.CheckboxColumn("synthetic"),
                   "imported_at": fmt.time_column("imported", help="when the dataset was imported into this store")},
)

st.subheader("Samples per scenario group")
scen = ov["scenarios"]
charts.show(charts.scenario_bars, scen, width="stretch")

cats = data.category_counts(fp)
if not cats.empty:
    st.subheader("Samples per category (your own taxonomy)")
    st.caption("The categories your data brought (a category column at import); each is a Samples filter and a fit "
               "scope (category:NAME). The scenario group shown is the one all of a category's samples share.")
    fmt.dataframe(cats, hide_index=True, column_config={"scenario_group": "scenario group"})

st.subheader("Judges")
judges = ov["judges"]
fmt.dataframe(
    judges[["name", "kind", "size_b", "labels", "a", "b", "tie", "with_prob", "both_orders"]],
    hide_index=True,
    column_config={
        "size_b": fmt.size_column(),
        "a": "chose A", "b": "chose B", "tie": "ties",
        "with_prob": "with probability", "both_orders": "both orders",
    },
)

st.subheader("Agreement between judges on shared samples")
choice = st.selectbox("Dataset", list(datasets["name"]), key="agreement_dataset")
agree = data.agreement(fp, choice)
if agree.empty or agree["judge_a"].nunique() < 2:
    st.info("This dataset has fewer than two judges.")
else:
    st.caption("Colour: Cohen's kappa (agreement beyond what the two judges' choice frequencies give by chance; "
               "white is chance, the scale fits the pairs shown); text: the agreement rate.")
    charts.show(charts.agreement_heatmap, agree, width="content")
    pairs = each_pair_once(agree)
    fmt.dataframe(
        pairs, hide_index=True,
        column_config=fmt.agreement_columns(),
    )
    data.download_buttons(pairs, f"agreement_{choice}", "agreement_download", what="Agreement")
