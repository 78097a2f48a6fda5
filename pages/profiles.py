"""Profiles: what each judge rewards and dislikes, in one scope (a scenario group, a query case, or all).

The paper's chart (100 * sigmoid(weight): the probability that the response better on an attribute is
preferred, with the 50% line and credible intervals), each judge's top and bottom attributes, the
difference of two judges, held-out accuracy, fit diagnostics and provenance, downloads, and a
drill-down from an attribute to the samples that differ on it.
"""

from pathlib import Path

import streamlit as st

from core import catalogue
from dashboard import charts, data, data_profiles, fmt, guide, picker, viewurl
from dashboard.render import plain as md  # data-derived text in markdown: escaped

PAGES = Path(__file__).resolve().parent
SAMPLES = PAGES / "samples.py"

st.title("Preference profiles")
guide.how_to_read("profiles")
fp = data.fingerprint()
index = data_profiles.profile_index(fp)

if index.empty:
    st.info(
        "No profiles are stored yet. Fit them from the command line, e.g. "
        "`python -m core fit --dataset NAME` (one Bayesian logistic regression per scenario group, query case and "
        "judge; `--method exact` for NUTS), import the paper's with `python -m core profiles --import DIR`, "
        "or start a fit on the Annotate & fit page."
    )
    st.page_link(PAGES / "annotate.py", label="Annotate & fit", icon=":material/model_training:")
    st.stop()


def _scope_label(scope: str, n) -> str:
    name = catalogue.scope_label(scope)
    return f"{name} · n={int(n):,}" if n == n and n is not None else name


def _scope_format(rows):
    scope_n = rows.groupby("scope")["n"].max().to_dict()
    return lambda s: _scope_label(s, scope_n.get(s))


def _default_judges(in_scope: list[str]) -> list[str]:
    # the judges chosen last carry over to another scope where they have a profile
    return [j for j in st.session_state.get("profiles_judges_last", []) if j in in_scope] or in_scope[:4]


# A link can preselect the view: /profiles?dataset=D&features=F&method=M&scope=S&judge=J1&judge=J2&order=weight
# (restored once per link by dashboard/viewurl.py, as on the other pages)
c1, c2, c3 = st.columns(3)
s1, s3 = st.columns(2)
s2 = st.container()  # the judges on a row of their own: four or more names fit without clipping a chip
pick = picker.profile_picker(
    "profiles", sorted(index["dataset"].unique()), lambda d: data_profiles.index_rows(fp, d),
    where={"dataset": c1, "features": c2, "method": c3, "scope": s1, "judges": s2},
    helps={"method": "fast: batched HMC; exact: NUTS; truth: the demo's known weights; imported: published means",
           "scope": "a scenario group, a query-specific case, or all samples; n = labelled samples used"},
    formats={"scope": _scope_format}, default_judges=_default_judges)
dataset, feature_source, method, scope = pick.dataset, pick.feature_source, pick.method, pick.scope
in_scope, chosen = pick.in_scope, pick.judges
st.session_state["profiles_judges_last"] = chosen
orders = ["catalogue", "weight"]
viewurl.restore("profiles_order", "order", orders)
order = s3.radio("Order", orders, horizontal=True, key="profiles_order",
                 format_func=lambda o: "by attribute" if o == "catalogue" else "by weight (first judge)")
# the view goes back into the URL, so that the address bar shares it (the link format above)
viewurl.keep({"dataset": dataset, "features": feature_source, "method": method, "scope": scope, "judge": chosen,
              "order": order})

if not chosen:
    st.info("Choose at least one judge.")
    st.stop()

view = data_profiles.profile_view(fp, dataset, feature_source, method, scope, tuple(chosen))
frame, summary = view["frame"], view["summary"]

# ------------------------------------------------------------------ the chart, and the click to drill down
st.caption(
    "Bars: the probability (in %) that a judge prefers the response that is better on this attribute alone, "
    "100·sigmoid(weight); the dashed line is 50% (indifferent); whiskers: the "
    f"{'94% equal-tailed credible interval' if frame['lo'].notna().any() else 'interval (none stored: means only)'}. "
    "Click a bar to open the samples that differ on that attribute, with that judge's choices."
)
weak = summary[summary["beats_baseline"] == False]  # noqa: E712 (None: no held-out accuracy to compare)
if not weak.empty:
    st.warning(
        "Predicts no better than the obvious: "
        + "; ".join(f"{md(r.judge)} (held-out {fmt.percent(r.accuracy)} vs {md(r.baseline)}-only "
                    f"{fmt.percent(r.baseline_accuracy)})"
                    for r in weak.itertuples())
        + ". Read these profiles as descriptions of the fit, not of what drives the judge.", icon=":material/warning:")
unmeasured = frame.loc[frame["status"] != "measured", "label"].unique()
if len(unmeasured):
    st.caption(f"{len(unmeasured)} attributes have no estimate here (marked on the chart): the feature set did not "
               f"measure them, or fewer than the threshold of samples differ on them; their posterior would only "
               f"repeat the prior.")
truth = view.get("truth")
if truth is not None:
    st.caption("◆ black diamonds: the true weights the synthetic judges' labels were drawn from (method 'truth').")
event = charts.show(charts.profile_chart, frame, order=order, truth=truth, on_select="rerun", key="profiles_chart",
                    width="stretch")
picked = charts.selection_of(event, charts.PROFILE_PICK)
if picked:
    pick = (picked[0].get("attribute"), picked[0].get("judge"))
    if pick != st.session_state.get("profiles_last_pick") and all(pick) and pick[0] in catalogue.attribute_keys():
        st.session_state["profiles_last_pick"] = pick
        st.switch_page(SAMPLES, query_params={"dataset": dataset, "attr": pick[0], "judge": pick[1], "scope": scope,
                                              "source": feature_source})
else:
    st.session_state.pop("profiles_last_pick", None)

d1, d2, d3, d4 = st.columns(4)
stem = f"profiles_{dataset}_{scope}_{method}".replace(" ", "_")
shown = (dataset, feature_source, method, scope, tuple(chosen))
d1.download_button("Weights (CSV)", lambda: data_profiles.profile_export(*shown, "csv"), file_name=stem + ".csv",
                   mime="text/csv", on_click="ignore", icon=":material/download:", key="profiles_csv")
d2.download_button("Weights (JSON)", lambda: data_profiles.profile_export(*shown, "json"), file_name=stem + ".json",
                   mime="application/json", on_click="ignore", icon=":material/download:", key="profiles_json")
d3.download_button("Chart (PNG)", lambda: charts.chart_image(charts.profile_chart(frame, order=order), "png"),
                   file_name=stem + ".png", mime="image/png", on_click="ignore", icon=":material/image:",
                   key="profiles_png")
d4.download_button("Chart (SVG)", lambda: charts.chart_image(charts.profile_chart(frame, order=order), "svg"),
                   file_name=stem + ".svg", mime="image/svg+xml", on_click="ignore", icon=":material/image:",
                   key="profiles_svg")

guide.attribute_catalogue(key="profiles_catalogue")

# ------------------------------------------------------------------ top and bottom attributes
st.subheader("Most and least rewarded attributes")
top = view["top"]
for i, judge in enumerate(chosen):
    st.markdown(f"**{md(judge)}**")
    mine = top[top["judge"] == judge]
    for col, (end, title) in zip(st.columns(2), (("top", "rewards"), ("bottom", "dislikes"))):
        part = guide.with_definitions(mine[mine["end"] == end][["label", "percent", "percent_lo", "percent_hi", "mean"]])
        with col:
            fmt.dataframe(part, hide_index=True, key=f"profiles_{end}_{i}", column_config={
                "label": st.column_config.TextColumn(title), "definition": guide.DEFINITION_COLUMN,
                "percent": fmt.percent_of_100_column("preferred", help="100·sigmoid(weight): how often the response "
                                                     "better on this attribute alone is preferred; 50% is indifferent"),
                "percent_lo": fmt.percent_of_100_column("from", help="94% interval"),
                "percent_hi": fmt.percent_of_100_column("to", help="94% interval"),
                "mean": st.column_config.NumberColumn("weight", format=fmt.WEIGHT, help="log-odds")})

# ------------------------------------------------------------------ drill-down links
counts = data_profiles.differing_samples(fp, dataset, feature_source, scope)
st.subheader("Samples behind an attribute")
if not counts:
    st.caption(f"Dataset {md(repr(dataset))} has no samples stored (its profiles were imported), so there is nothing to open.")
else:
    judge = st.selectbox("Judge whose choices to show", chosen, key="profiles_link_judge") if len(chosen) > 1 else chosen[0]
    st.caption(f"Open the samples of scope {md(repr(scope))} that differ on an attribute, with {md(judge)}'s choices:")
    labels = frame.drop_duplicates("attribute").set_index("label")["attribute"]
    link_cols = st.columns(4)
    attribute_keys = set(catalogue.attribute_keys())  # the position term is no attribute to filter on
    for i, label in enumerate(l for l in charts.attribute_order(frame, order) if labels[l] in attribute_keys):
        key = labels[label]
        link_cols[i % 4].page_link(
            SAMPLES, label=f"{md(label)} · {counts.get(key, 0):,}",
            query_params={"dataset": dataset, "attr": key, "judge": judge, "scope": scope, "source": feature_source})

# ------------------------------------------------------------------ two judges compared
st.subheader("Difference between two judges")
if len(in_scope) < 2:
    st.caption("Only one judge has a profile in this scope.")
else:
    c1, c2 = st.columns(2)
    first = c1.selectbox("Judge", in_scope, index=in_scope.index(chosen[0]), key="profiles_diff_a")
    others = [j for j in in_scope if j != first]
    default_b = next((j for j in chosen if j != first), others[0])
    second = c2.selectbox("minus judge", others, index=others.index(default_b), key="profiles_diff_b")
    diff = data_profiles.weight_difference(fp, dataset, feature_source, method, scope, first, second)
    if diff["lo"].isna().all():
        st.caption("These profiles have no stored posterior draws (imported or known weights: means only), so the "
                   "difference has no interval.")
    else:
        st.caption("Difference of weights (log-odds), with its 94% interval from randomly paired posterior draws "
                   f"of the two fits, and P({md(first)} > {md(second)}).")
    charts.show(charts.difference_chart, diff, first, second, order=charts.attribute_order(frame, order),
                width="stretch", key="profiles_diff_chart")
    fmt.dataframe(guide.with_definitions(diff[["label", "a", "b", "diff", "lo", "hi", "p_pos"]]), hide_index=True,
                  key="profiles_diff_table",
                  column_config={"label": "attribute", "definition": guide.DEFINITION_COLUMN,
                                 "a": st.column_config.NumberColumn(first, format=fmt.WEIGHT),
                                 "b": st.column_config.NumberColumn(second, format=fmt.WEIGHT),
                                 "diff": st.column_config.NumberColumn("difference", format=fmt.WEIGHT),
                                 "lo": st.column_config.NumberColumn("from", format=fmt.WEIGHT),
                                 "hi": st.column_config.NumberColumn("to", format=fmt.WEIGHT),
                                 "p_pos": fmt.percent_column(f"P({first} > {second})",
                                                             help="posterior probability that the difference is positive")})

# ------------------------------------------------------------------ accuracy, diagnostics, provenance
st.subheader("Held-out accuracy and fit diagnostics")
st.caption("Accuracy and log loss are out of fold (k-fold: each fold predicted by a fit on the others), beside the "
           "best of three baselines on the same folds: the majority verdict, the response shown first wins, the longer "
           "response wins. R-hat near 1 and a large effective sample size (ESS) mean the sampler converged.")
fmt.dataframe(summary[["judge", "n", "accuracy", "baseline_accuracy", "baseline", "beats_baseline", "log_loss", "model",
                      "tie_rate", "measured", "folds", "max_rhat", "min_ess", "divergences", "accept_rate"]],
             hide_index=True, key="profiles_accuracy", column_config={
                 "n": st.column_config.NumberColumn("samples"),
                 "accuracy": fmt.percent_column("held-out accuracy"),
                 "baseline_accuracy": fmt.percent_column("best baseline"),
                 "baseline": st.column_config.TextColumn("which baseline"),
                 "beats_baseline": st.column_config.CheckboxColumn("beats it"),
                 "tie_rate": fmt.percent_column("ties"),
                 "measured": st.column_config.TextColumn("attributes measured"),
                 "log_loss": st.column_config.NumberColumn("log loss", format="%.3f"),
                 "folds": st.column_config.NumberColumn("folds"),
                 "divergences": st.column_config.NumberColumn("divergences"),
                 "max_rhat": st.column_config.NumberColumn("max R-hat", format="%.3f"),
                 "min_ess": st.column_config.NumberColumn("min ESS", format="%.0f"),
                 "accept_rate": st.column_config.NumberColumn("acceptance", format="%.2f")})
with st.expander("Provenance"):
    fmt.dataframe(summary[["judge", "method", "sampler", "prior", "seed", "draws", "interval", "fitted_at", "versions",
                           "fingerprint", "imported"]], hide_index=True, key="profiles_provenance",
                  column_config={"fitted_at": st.column_config.TextColumn("fitted at", help="as recorded (UTC)"),
                                 "fingerprint": st.column_config.TextColumn("data fingerprint"),
                                 "imported": st.column_config.CheckboxColumn("imported")})
