"""Simulator: how far a judge-based win rate moves when a model's responses show, or hide, attributes.

From each judge's fitted profile (posterior draws of its attribute weights): the observed win rate of a
model under test against an opponent, the predicted win rate before and after injecting (+) or
suppressing (-) attributes with a success rate each, with 94% intervals and each attribute's
contribution; several judges side by side; below, in tabs of which only the open one runs: what to inject
(top-5 / bottom-5), attribute-controlled win rates of every model, calibration of each judge's profile.
The method is in core/simulate.py.
On top, the manipulation experiment run for real (core/experiment.py; dashboard/experimentview.py):
measured win rates and shifts beside the profile's predictions, and a form to start one.
"""

import streamlit as st

from core import catalogue
from dashboard import charts, data, data_simulator, experimentview, fmt, guide, picker, viewurl
from dashboard.render import plain

pct = fmt.percent


st.title("Simulator")
guide.how_to_read("simulate")
st.caption(
    "Estimates from a judge's fitted profile how a model's win rate would move if its responses showed an "
    "attribute more (inject +) or less (suppress -) than the opponent's, in a share of the pairs (the success "
    "rate). Intervals are 94% from the profile's posterior draws; ties count half. The method is under "
    "\"How to read this\" above.")

fp = data.fingerprint()
# the manipulation run for real (core/experiment.py): /simulate?experiment=ID opens one
experiment = experimentview.section(fp)
datasets = data_simulator.simulation_datasets(fp)
if not datasets:
    st.info("No fitted profiles with features to simulate on yet. Fit some with `python -m core fit --dataset NAME` "
            "or on the Annotate & fit page.")
    st.stop()

# the view is in the URL (dashboard/viewurl.py): /simulate?dataset=D&features=F&scope=S&profile=M&judge=J...
# &model=M&opponent=O&inject=KEY@RATE&suppress=KEY@RATE
c1, c2, c3, c4 = st.columns(4)
pick = picker.profile_picker(
    "sim", datasets, lambda d: data_simulator.simulation_index(fp, d), keyed=True,
    levels=("dataset", "features", "scope", "method"), url={"method": "profile"}, labels={"method": "Profile"},
    where={"dataset": c1, "features": c2, "scope": c3, "method": c4},
    helps={"features": "the feature set the profiles were fitted on (and the pairs are read from)",
           "scope": "the scenario group, query case or 'all' whose pairs and profile are used",
           "method": "fast: batched HMC; exact: NUTS; truth / imported: means only (no interval)"},
    formats={"scope": lambda rows: catalogue.scope_label}, judges_label="Judges (side by side)",
    default_judges=lambda in_scope: in_scope[:2])
dataset, feature_source, scope, method = pick.dataset, pick.feature_source, pick.scope, pick.method
in_scope, judges = pick.in_scope, pick.judges
opts = data_simulator.simulation_options(fp, dataset)

model_names = [m["model"] for m in opts["models"]]
c1, c2 = st.columns(2)
if model_names:
    viewurl.restore(f"sim_model|{dataset}", "model", model_names)
    model = c1.selectbox("Model under test", model_names, key=f"sim_model|{dataset}")
    opponents = ["all"] + [m for m in model_names if m != model]
    viewurl.restore(f"sim_opponent|{dataset}|{model}", "opponent", opponents)
    opponent = c2.selectbox("Opponent or baseline", opponents, key=f"sim_opponent|{dataset}|{model}",
                            format_func=lambda o: "all other models" if o == "all" else o)
else:
    c1.caption("This dataset names no responding models: response A of every pair is the one under test.")
    model, opponent = None, "all"

keys = catalogue.attribute_keys()
label = {k: catalogue.attribute(k).label for k in keys}
# attributes a chosen judge's profile has no estimate for (not measured, or too few samples differ) are not offered
no_estimate = sorted({k for j in judges for k in opts["unmeasured"].get(feature_source, {}).get(scope, {})
                      .get(method, {}).get(j, [])})
if no_estimate:
    st.caption("Not offered (no estimate in a chosen judge's profile: not measured, or too few samples differ): "
               + ", ".join(label.get(k, k) for k in no_estimate) + ".")
keys = [k for k in keys if k not in no_estimate]
for part in ("inject", "suppress"):
    if viewurl.restore(f"sim_{part}", part, keys, many=True, parse=lambda v: v.partition("@")[0]):
        for k, r in viewurl.shares(part).items():
            st.session_state[f"sim_rate_{part}_{k}"] = r
c1, c2 = st.columns(2)
inject_keys = c1.multiselect("Inject (+): the model shows more of", keys,
                             default=None if "sim_inject" in st.session_state else
                             (["lengthy"] if "lengthy" in keys else []), key="sim_inject",
                             format_func=label.get, max_selections=6)
suppress_keys = c2.multiselect("Suppress (-): the model shows less of", [k for k in keys if k not in inject_keys],
                               key="sim_suppress", format_func=label.get,
                               max_selections=max(0, 6 - len(inject_keys)) or None)
inject, suppress = {}, {}
# whole percents: a measured success rate (the experiment above reports them, e.g. 83%) is entered as it is,
# and a link keeps it (viewurl.shares); 5% steps rounded it by up to 2.5 points of rate
RATE_STEP = viewurl.SHARE_STEP
RATE_HELP = ("the share of pairs in which the change succeeds; arrow keys move it by one percent")
with c1:
    for k in inject_keys:
        inject[k] = st.slider(f"success rate: + {label[k]}", 0.0, 1.0, 0.5, RATE_STEP, format="percent",
                              key=f"sim_rate_inject_{k}", help=RATE_HELP)
with c2:
    for k in suppress_keys:
        suppress[k] = st.slider(f"success rate: - {label[k]}", 0.0, 1.0, 0.5, RATE_STEP, format="percent",
                                key=f"sim_rate_suppress_{k}", help=RATE_HELP)

# the analyses below the simulation sit in tabs of which only the open one runs (at the paper's scale the
# leaderboard and the calibration are half of the page's first view); the open tab is in the URL too
ANALYSES = ["What to inject", "Attribute-controlled win rates", "Calibration"]
viewurl.restore("sim_analysis", "analysis", ANALYSES)
viewurl.keep({"dataset": dataset, "features": feature_source, "scope": scope, "profile": method, "judge": judges,
              "model": model, "opponent": opponent if model else None,
              "inject": [f"{k}@{r:g}" for k, r in inject.items()],
              "suppress": [f"{k}@{r:g}" for k, r in suppress.items()], "experiment": experiment,
              "analysis": None if st.session_state.get("sim_analysis", ANALYSES[0]) == ANALYSES[0]
              else st.session_state["sim_analysis"]})

if not judges:
    st.info("Choose at least one judge.")
    st.stop()

# ------------------------------------------------------------------ the simulation
try:
    sim = data_simulator.simulation(fp, dataset, tuple(judges), scope, model, opponent, tuple(inject.items()),
                          tuple(suppress.items()), method, feature_source)
except ValueError as e:
    st.warning(str(e))
    st.stop()

cols = st.columns(len(judges))
for col, s in zip(cols, sim["results"]):
    with col:
        st.markdown(f"**{plain(s.judge)}** · {s.pairs:,} pairs")
        m1, m2, m3 = st.columns(3)
        m1.metric("Observed", pct(s.observed),
                  help=None if s.observed is None else f"94% Jeffreys interval {pct(s.observed_lo)} to {pct(s.observed_hi)}")
        m2.metric("Predicted before", pct(s.before.mean), help=f"94% interval {pct(s.before.lo)} to {pct(s.before.hi)}")
        m3.metric("Predicted after", pct(s.after.mean), delta=fmt.points(s.change.mean),
                  help=f"94% interval {pct(s.after.lo)} to {pct(s.after.hi)}")
        if s.profile.get("stale"):
            st.warning("The labels changed since this profile was fitted: refit for current numbers.")
        if s.profile.get("beats_baseline") is False:
            st.warning(f"This profile predicts held-out choices no better than the {s.profile['baseline']} baseline "
                       f"({pct(s.profile['accuracy'])} vs {pct(s.profile['baseline_accuracy'])}): its predictions "
                       "rest on little.", icon=":material/warning:")

charts.show(charts.simulation_chart, sim["rates"], width="stretch", key="sim_rates_chart")
st.caption("Dots and thick bars: the estimate and its 94% interval (observed: Jeffreys; predicted: credible, "
           "from the posterior draws). Faint wide bands: the predictive interval, where the judge's labels on these "
           "pairs would land (posterior uncertainty plus label noise): compare the observed rate with it.")
fmt.dataframe(sim["rates"], hide_index=True, key="sim_rates_table", column_config={
    "mean": fmt.percent_column("win rate"),
    "lo": fmt.percent_column("94% from"),
    "hi": fmt.percent_column("94% to"),
    "pred_lo": fmt.percent_column("predictive from", help="not applicable to the observed rate (it is the data)"),
    "pred_hi": fmt.percent_column("predictive to", help="not applicable to the observed rate (it is the data)")})
data.download_buttons(sim["rates"], f"simulation_{dataset}_{scope}", "sim_rates_download", what="Win rates")

st.subheader("Contribution of each attribute to the change")
contrib = sim["contributions"]
if contrib.empty:
    st.caption("Choose attributes to inject or suppress.")
else:
    charts.show(charts.contribution_chart, contrib, width="stretch", key="sim_contrib_chart")
    st.caption("Shapley values over the changes: each attribute's average marginal effect over the orders in which "
               "the changes could be added; per judge they add up to the change. 'applies' is the share of pairs "
               "where the change can move the comparison (elsewhere the model is already ahead, or behind, on it, "
               "or the query case of a conditional attribute does not arise).")
    fmt.dataframe(guide.with_definitions(contrib[["judge", "label", "direction", "rate", "applies", "mean", "lo", "hi"]]),
                  hide_index=True, key="sim_contrib_table", column_config={
                      "label": "attribute", "definition": guide.DEFINITION_COLUMN,
                      "rate": fmt.percent_column("success rate"),
                      "applies": fmt.percent_column("applies", help="share of pairs where the change can move the comparison"),
                      "mean": fmt.percent_column("contribution", signed=True, help="to the change in win rate"),
                      "lo": fmt.percent_column("94% from", signed=True),
                      "hi": fmt.percent_column("94% to", signed=True)})
    data.download_buttons(contrib, f"contributions_{dataset}_{scope}", "sim_contrib_download", what="Contributions")

with st.expander("Provenance of the profiles used"):
    fmt.dataframe(sim["provenance"], hide_index=True, key="sim_provenance", column_config=fmt.provenance_columns())

tabs = st.tabs(ANALYSES, key="sim_analysis", on_change="rerun")

# ------------------------------------------------------------------ what to inject
if tabs[0].open:
    with tabs[0]:
        st.caption("Every attribute injected alone into every pair where it can apply (rate 100%), ranked by the predicted "
                   "gain in the model's win rate: the top 5 to show and the bottom 5 to avoid, for this judge.")
        rank_judge = st.selectbox("Judge", judges, key="sim_rank_judge") if len(judges) > 1 else judges[0]
        ranking = data_simulator.injection_ranking(fp, dataset, rank_judge, scope, model, opponent, method, feature_source)
        charts.show(charts.injection_ranking_chart, ranking["extremes"], width="stretch", key="sim_rank_chart")
        with st.expander("All attributes"):
            fmt.dataframe(guide.with_definitions(ranking["frame"]), hide_index=True, key="sim_rank_table", column_config={
                "attribute": None, "label": "attribute", "definition": guide.DEFINITION_COLUMN,
                "mean": fmt.percent_column("gain", signed=True),
                "lo": fmt.percent_column("94% from", signed=True),
                "hi": fmt.percent_column("94% to", signed=True),
                "p_positive": fmt.percent_column("P(gain > 0)", help="posterior probability of a gain"),
                "applies": fmt.percent_column("applies", help="share of pairs where the change can move the comparison")})

# ------------------------------------------------------------------ attribute-controlled win rates
if tabs[1].open:
    with tabs[1]:
        st.caption("Each model's raw win rate against all others, and the rate with the chosen attributes' effect "
                   "neutralised: a per-model offset is calibrated so the profile reproduces the raw rate, then the chosen "
                   "features are set to 0 (as AlpacaEval's length-controlled win rate does for length; length and "
                   "formatting together are the idea behind Arena's style control). Flagged: a difference above 10 points "
                   "or a rank move of 2 or more.")
        controls = st.multiselect("Neutralise", keys, default=["lengthy"], key="sim_control", format_func=label.get)
        if not model_names:
            st.caption("This dataset names no responding models, so there is no leaderboard.")
        elif controls:
            # one judge at a time (a tab per judge would compute every leaderboard on every run)
            lb_judge = st.selectbox("Leaderboard under", judges, key="sim_lb_judge") if len(judges) > 1 else judges[0]
            lb = data_simulator.controlled_leaderboard(fp, dataset, lb_judge, tuple(controls), scope, method, feature_source)
            for w in lb["warnings"]:
                st.warning(plain(w))
            frame = lb["frame"]
            if frame.empty:
                st.caption("No labelled pairs between named models.")
            else:
                charts.show(charts.leaderboard_chart, frame, width="stretch", key="sim_lb_chart")
                fmt.dataframe(frame[["model", "pairs", "raw", "controlled", "controlled_lo", "controlled_hi", "shift",
                                     "raw_rank", "controlled_rank", "rank_change", "sharp"]],
                              hide_index=True, key="sim_lb_table", column_config={
                                  "raw_rank": "raw rank", "controlled_rank": "controlled rank", "rank_change": "rank change",
                                  "raw": fmt.percent_column("raw"),
                                  "controlled": fmt.percent_column("controlled"),
                                  "controlled_lo": fmt.percent_column("94% from"),
                                  "controlled_hi": fmt.percent_column("94% to"),
                                  "shift": fmt.percent_column("shift", signed=True),
                                  "sharp": st.column_config.CheckboxColumn("flagged")})
                data.download_buttons(frame, f"leaderboard_{dataset}_{lb_judge}", "sim_lb_download", what="Leaderboard")

# ------------------------------------------------------------------ calibration
if tabs[2].open:
    with tabs[2]:
        st.caption("Pairs sorted by the profile's predicted P(A preferred) and cut into deciles; each point sets a decile's "
                   "mean prediction against the observed share of A (94% interval). On the diagonal, the profile is "
                   "calibrated. In-sample: the profile was fitted on these labels (held-out accuracy is on the Profiles page).")
        cal_judges = st.multiselect("Judges to calibrate", in_scope, default=judges or in_scope[:2],
                                    key=f"sim_cal_judges|{dataset}|{feature_source}|{scope}|{method}",
                                    help="every judge with a profile in this scope can be checked; a few at a time keep the "
                                         "page quick at the paper's scale (33 judges)")
        cal = data_simulator.calibration(fp, dataset, tuple(cal_judges), scope, method, feature_source)
        if cal["bins"].empty:
            st.caption("No labelled pairs to calibrate on.")
        else:
            c1, c2 = st.columns([2, 1])
            charts.show(charts.calibration_chart, cal["bins"], where=c1, key="sim_cal_chart")
            with c2:
                fmt.dataframe(cal["summary"], hide_index=True, key="sim_cal_table", column_config={
                    "ece": fmt.percent_column("calibration error", help="expected calibration error over the deciles")})
