"""Similarity: how alike judges prefer, as the correlation of their weight vectors.

Following the paper, two judges' similarity is the Pearson (or Spearman) correlation of their 29
weights within a scope, averaged over the scenario groups (or within one chosen scope). The heatmap
is ordered by hierarchical clustering; judge groups (by size, by kind, by cluster, or your own) get
their intra- and inter-group similarity; a click on a cell shows the two profiles side by side.
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import catalogue, scopes
from dashboard import charts, data, data_profiles, fmt, guide, picker, viewurl
from dashboard.render import plain as md  # data-derived text in markdown: escaped

PAGES = Path(__file__).resolve().parent
AVERAGED = "averaged over the scenario groups"

st.title("Judge similarity")
guide.how_to_read("similarity")
fp = data.fingerprint()
index = data_profiles.profile_index(fp, min_judges=2)

if index.empty:
    st.info(
        "Similarity needs profiles of at least two judges on one dataset. Fit them with "
        "`python -m core fit --dataset NAME`, import the paper's with `python -m core profiles --import DIR`, "
        "or start a fit on the Annotate & fit page."
    )
    st.page_link(PAGES / "annotate.py", label="Annotate & fit", icon=":material/model_training:")
    st.stop()

# the view is in the URL (dashboard/viewurl.py): /similarity?dataset=D&features=F&method=M&corr=C&scope=S&judge=J...
c1, c2, c3, c4 = st.columns(4)
s1, s2 = st.columns([1, 3])
pick = picker.profile_picker(
    "similarity", sorted(index["dataset"].unique()), lambda d: data_profiles.index_rows(fp, d, min_judges=2),
    where={"dataset": c1, "features": c2, "method": c3, "scope": s1, "judges": s2},
    labels={"scope": "Scenarios"}, every_scope=AVERAGED,
    formats={"scope": lambda rows: lambda s: s if s == AVERAGED else catalogue.scope_label(s)})
dataset, feature_source, method, scope, judges = pick.dataset, pick.feature_source, pick.method, pick.scope, pick.judges
rows = pick.rows
viewurl.restore("similarity_corr", "corr", ["pearson", "spearman"])
corr = c4.radio("Correlation", ["pearson", "spearman"], horizontal=True, key="similarity_corr",
                format_func=str.capitalize)
viewurl.keep({"dataset": dataset, "features": feature_source, "method": method, "corr": corr,
              "scope": None if scope is None else scope, "judge": judges})
if len(judges) < 2:
    st.info("Choose at least two judges.")
    st.stop()

sim = data_profiles.similarity(fp, dataset, feature_source, method, scope, tuple(judges), corr)
matrix = sim.matrix
st.caption(
    f"{corr.capitalize()} correlation of the judges' weight vectors"
    + (f", averaged over {len(sim.scopes)} scenario groups" if scope is None else f" in {md(repr(scope))}")
    + "; ordered by hierarchical clustering (average linkage on 1 − similarity). Click a cell to see the two "
    "profiles side by side below."
)
if sim.attribute_range:
    lo, hi = sim.attribute_range
    st.caption(f"Computed over the attributes both judges' profiles measured: {lo}"
               + ("" if lo == hi else f" to {hi}")
               + " of 29 per scope (the position term, the tie parameter and attributes with no or too few differing "
                 "samples are left out).")
event = charts.show(charts.similarity_heatmap, matrix, on_select="rerun", key="similarity_heatmap", width="content")
with st.expander("The matrix as a table"):
    fmt.dataframe(matrix, key="similarity_matrix",
                  column_config={j: st.column_config.NumberColumn(j, format=fmt.COEFFICIENT) for j in matrix.columns})
    st.download_button("Matrix (CSV)", data.csv_download(matrix), file_name=f"similarity_{dataset}_{corr}.csv".replace(" ", "_"),
                       mime="text/csv", on_click="ignore", key="similarity_csv", icon=":material/download:")
    st.download_button("Matrix (JSON)", lambda: data.json_download(matrix.rename_axis("judge").reset_index()),
                       file_name=f"similarity_{dataset}_{corr}.json".replace(" ", "_"), mime="application/json",
                       on_click="ignore", key="similarity_json", icon=":material/download:")

# ------------------------------------------------------------------ judge groups
st.subheader("Groups of judges")
modes = {"size": "size (parameters)", "kind": "kind", "clusters": "clusters", "custom": "my own groups"}
by_size = data_profiles.judge_groups(fp, dataset, feature_source, method, scope, tuple(judges), corr, "size")
sized = sum(1 for js in by_size.values() if js) >= 2  # else start from the clustering (e.g. unnamed sizes)
by = st.radio("Group the judges by", list(modes), index=0 if sized else 2, format_func=modes.get, horizontal=True,
              key="similarity_group_by")
members: dict[str, list[str]] = {}
if by == "size":
    split = st.number_input("Split at (billions of parameters)", min_value=0.5, value=30.0, step=5.0, key="similarity_split")
    members = data_profiles.judge_groups(fp, dataset, feature_source, method, scope, tuple(judges), corr, "size", split=split)
elif by == "kind":
    members = data_profiles.judge_groups(fp, dataset, feature_source, method, scope, tuple(judges), corr, "kind")
elif by == "clusters":
    most = min(8, len(judges) - 1)
    if most > 2:
        k = st.slider("Clusters", 2, most, 2, key="similarity_k")
    else:  # two or three judges: two clusters is the only split (a slider from 2 to 2 is refused by Streamlit)
        k = 2
        st.caption("Two clusters (with three judges or fewer there is no other split).")
    members = data_profiles.judge_groups(fp, dataset, feature_source, method, scope, tuple(judges), corr, "clusters", k=k)
else:
    n_groups = st.number_input("Groups", min_value=2, max_value=6, value=2, key="similarity_n_groups")
    cols = st.columns(int(n_groups))
    for g, col in enumerate(cols):
        name = col.text_input("Name", value=f"group {g + 1}", key=f"similarity_group_name_{g}")
        members[name or f"group {g + 1}"] = col.multiselect("Judges", judges, key=f"similarity_group_{g}")

members = {name: js for name, js in members.items() if js}
left_out = [j for j in judges if not any(j in js for js in members.values())]
if len(members) < 2:
    reason = {"size": "fewer than two size groups have judges of known size (`judges.size_b`, or a size in the name "
              "such as 7b / 70b)", "kind": "the judges are all of one kind (or of no recorded kind)"}.get(
        by, "define at least two non-empty groups")
    st.info(f"No group comparison: {reason}.")
else:
    table = data_profiles.group_similarity(fp, dataset, feature_source, method, scope, tuple(judges), corr,
                                  tuple((name, tuple(js)) for name, js in members.items()))
    c1, c2 = st.columns([3, 2])
    with c1:
        fmt.dataframe(table, hide_index=True, key="similarity_groups", column_config={
            "pairs": st.column_config.NumberColumn("pairs", help="pairs of judges compared (a group of one has none)"),
            "similarity": st.column_config.NumberColumn("mean similarity", format=fmt.COEFFICIENT,
                                                        help="not applicable where no pair of judges is compared")})
    with c2:
        fmt.dataframe(pd.DataFrame([{"group": name, "judges": ", ".join(js)} for name, js in members.items()]),
                      hide_index=True, key="similarity_members")
    if left_out:
        st.caption("Not in any group: " + ", ".join(map(md, left_out)))

# ------------------------------------------------------------------ two profiles side by side
st.subheader("Two profiles side by side")
cell = charts.cell_selection(event)
if cell:
    pair = (cell[0].get("judge_a"), cell[0].get("judge_b"))
    if pair != st.session_state.get("similarity_last_cell") and all(p in judges for p in pair):
        st.session_state["similarity_last_cell"] = pair
        st.session_state["similarity_a"], st.session_state["similarity_b"] = pair
else:
    st.session_state.pop("similarity_last_cell", None)
if st.session_state.get("similarity_a") not in judges:
    st.session_state["similarity_a"] = sim.order[0]
if st.session_state.get("similarity_b") not in judges:
    st.session_state["similarity_b"] = sim.order[1]

side_scopes = [scope] if scope else scopes.order(rows["scope"])
c1, c2, c3 = st.columns(3)
a = c1.selectbox("Judge", judges, key="similarity_a")
b = c2.selectbox("and judge", judges, key="similarity_b")
side_scope = c3.selectbox("Scope", side_scopes, key="similarity_side_scope", disabled=scope is not None)
st.caption(f"Similarity of {md(a)} and {md(b)}: **{matrix.loc[a, b]:.3f}** ({corr}"
           + (", averaged over the scenario groups)" if scope is None else f", in {md(repr(scope))})"))
st.page_link(PAGES / "profiles.py", label=f"Open {md(a)} and {md(b)} on the Profiles page (difference, intervals, samples)",
             icon=":material/bar_chart:", query_params={"dataset": dataset, "features": feature_source,
                                                         "method": method, "scope": side_scope, "judge": [a, b]})
views = {judge: data_profiles.profile_view(fp, dataset, feature_source, method, side_scope, (judge,))["frame"] for judge in (a, b)}
shown = [f for f in views.values() if not f.empty]
domain = charts.percent_domain(pd.concat(shown)) if shown else None  # one x scale for both
left, right = st.columns(2)
for side, col, judge in (("a", left, a), ("b", right, b)):
    with col:
        if views[judge].empty:
            st.caption(f"{md(judge)} has no profile in {md(repr(side_scope))}.")
        else:
            charts.show(charts.profile_chart, views[judge], select=False, title=judge, domain=domain,
                        width="stretch", key=f"similarity_profile_{side}")
