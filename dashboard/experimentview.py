"""The Simulator page's experiment section: the manipulation run for real (core/experiment.py), its
measured win rates and shifts beside the profile's predictions, and a form that starts a new one."""

from __future__ import annotations

import streamlit as st

from core import catalogue
from dashboard import charts, data, data_experiments, data_simulator, fmt, guide, viewurl, workbench
from dashboard.render import plain


def pct(x, signed: bool = False) -> str:
    return fmt.percent(x, signed=signed)


def _arm_columns() -> dict:
    """The arms table's columns: measured and predicted win rates and shifts, in the house style."""
    cols: dict = {"show": "asked to show", "avoid": "asked to avoid", "n": st.column_config.NumberColumn("pairs")}
    for stem, label, signed in (("measured", "measured win rate", False), ("predicted", "predicted win rate", False),
                                ("shift", "measured shift", True), ("predicted_shift", "predicted shift", True),
                                ("simulated", "simulated win rate", False)):
        cols[stem] = fmt.percent_column(label, signed=signed)
        for end, word in (("lo", "from"), ("hi", "to")):
            cols[f"{stem}_{end}"] = fmt.percent_column(f"{label}: 94% {word}", signed=signed)
            cols[f"{stem}_pred_{end}"] = fmt.percent_column(f"{label}: predictive {word}", signed=signed)
    return cols


def section(fp: tuple) -> int | None:
    """Render the section; the experiment shown (for the page's URL: ``?experiment=ID``), or None."""
    exps = data_experiments.experiments(fp)
    ids = [e["id"] for e in exps]
    linked = bool(ids) and viewurl.restore("sim_experiment", "experiment", ids, parse=int)
    chosen = None
    with st.expander("Experiments: the manipulation run for real, measured against the prediction",
                     expanded=linked or "experiment" in st.query_params, icon=":material/science:"):
        st.caption("An experiment asks the model under test to show (or avoid) attributes, by default the judge's "
                   "top and bottom ones from its profile, beside a plain control arm; the judge compares every answer "
                   "with a baseline's in both orders. Measured win rates (94% Jeffreys) and shifts against the "
                   "control (94% normal) sit beside the profile's prediction from the answers' actual features "
                   "(credible interval, and the predictive band where the measurement should land).")
        if exps:
            by_id = {e["id"]: e for e in exps}
            chosen = st.selectbox("Experiment", ids, key="sim_experiment", format_func=lambda i: (
                f"#{i} {by_id[i]['name']} · {by_id[i]['status']} · model {by_id[i]['model']} · judge {by_id[i]['judge']}"))
            _show(fp, chosen)
        else:
            st.caption("No experiments yet: start one below or with `python -m core experiment run`.")
        with st.popover("New experiment", icon=":material/add:"):
            _form(fp)
        workbench.show_flash()
        workbench.watch(("experiment",), key="sim_exp_watch")
    return chosen


def _show(fp: tuple, experiment_id: int) -> None:
    view = data_experiments.experiment_view(fp, experiment_id)
    if view is None:
        st.warning(f"No experiment {experiment_id}.")
        return
    rec = view["record"]
    if not rec.get("result"):
        st.info(f"Experiment {experiment_id} is {rec['status']}: no result yet (its job is below).")
        return
    table = view["table"]
    for _, row in table.iterrows():
        if row["arm"] == "control":
            continue
        c1, c2, c3 = st.columns(3)
        c1.metric(f"{row['arm']}: measured shift", pct(row["shift"], True),
                  help=f"94% interval {pct(row['shift_lo'], True)} to {pct(row['shift_hi'], True)}")
        c2.metric(f"{row['arm']}: predicted shift", pct(row["predicted_shift"], True),
                  help=f"predictive 94% {pct(row['predicted_shift_pred_lo'], True)} to "
                       f"{pct(row['predicted_shift_pred_hi'], True)}")
        inside = view["within"].get(row["arm"])
        c3.metric(f"{row['arm']}: measurement within the prediction", "yes" if inside else "no")
    charts.show(charts.experiment_chart, view["rates"], width="stretch", key="sim_exp_rates_chart")
    charts.show(charts.experiment_chart, view["shifts"], shift=True, width="stretch", key="sim_exp_shift_chart")
    fmt.dataframe(table, hide_index=True, key="sim_exp_table", column_config=_arm_columns())
    data.download_buttons(table, f"experiment_{experiment_id}_arms", "sim_exp_download", what="Arms")
    st.markdown("**Success rate per asked-for attribute**: how often the arm's comparison with the baseline moved "
                "in the asked direction against the control's on the same query, among queries where it could.")
    success = view["success"].assign(label=lambda f: f["attribute"].map(lambda k: catalogue.attribute(k).label))
    fmt.dataframe(guide.with_definitions(success), hide_index=True, key="sim_exp_success", column_config={
        "attribute": None, "label": "attribute", "definition": guide.DEFINITION_COLUMN,
        "rate": fmt.percent_column("success rate"), "could_move": "could move", "queries": "queries",
        "at_target_arm": "at target (arm)", "at_target_control": "at target (control)",
        "measured_by_profile": st.column_config.CheckboxColumn("measured by the profile")})
    data.download_buttons(success, f"experiment_{experiment_id}_attributes", "sim_exp_success_download",
                          what="Success rates")
    with st.expander("Settings and provenance"):
        st.json({"spec": rec["spec"], "provenance": rec["provenance"], "profile": rec["result"].get("profile")})


def _form(fp: tuple) -> None:
    from core.experiment import Arm, ExperimentError, Spec
    from core.llm import LLMSettings

    profiles = data_experiments.experiment_profiles(fp)
    if not profiles:
        st.caption("An experiment needs a judge's profile fitted on features new answers can get: the offline "
                   "heuristics (heuristic:v1) or LLM annotations. Fit one on the Annotate & fit page.")
        return
    prof = st.selectbox("Judge's profile", profiles, key="sim_exp_profile",
                        format_func=lambda p: f"{p[2]} · {p[0]} · {catalogue.scope_label(p[1])} · {p[3]} · {p[4]}")
    datasets = [d for d in data_simulator.simulation_datasets(fp)] or [prof[0]]
    qds = st.selectbox("Queries from dataset (baseline: its response B)", datasets, key="sim_exp_queries")
    limit = st.number_input("Queries", 1, 5000, 50, key="sim_exp_limit")
    default = LLMSettings.from_env()
    model = st.text_input("Model under test", default.model, key="sim_exp_model")
    base_url = st.text_input("Its base URL (blank: the configured endpoint)", "", key="sim_exp_base_url")
    judge_model = st.text_input("Judge model", default.model, key="sim_exp_judge_model")
    judge_url = st.text_input("Judge base URL (blank: the configured endpoint)", "", key="sim_exp_judge_url")
    arms_text = st.text_input("Arms (blank: liked = top-5 shown, disliked = bottom-5 shown)", "",
                              key="sim_exp_arms", placeholder="terse=-lengthy,+clear; fancy=+well_formatted")
    budget = st.number_input("Budget (USD, 0: none)", 0.0, 10_000.0, 0.0, key="sim_exp_budget")
    if st.button("Create and estimate", key="sim_exp_create"):
        try:
            spec = Spec(name=f"{model} vs {prof[2]}",
                        model=LLMSettings.from_env(model=model, base_url=base_url or None).public(),
                        judge=LLMSettings.from_env(model=judge_model, base_url=judge_url or None).public(),
                        judge_name=judge_model, profile={"dataset": prof[0], "scope": prof[1], "judge": prof[2],
                                                         "feature_source": prof[3], "method": prof[4]},
                        arms=[Arm.parse(a) for a in arms_text.split(";") if a.strip()],
                        queries={"dataset": qds, "limit": int(limit)})
            st.session_state["sim_exp_created"] = data_experiments.create_experiment(spec)
        except (ExperimentError, ValueError) as e:
            st.error(plain(str(e)))
    created = st.session_state.get("sim_exp_created")
    if created:
        est = data_experiments.experiment_estimate(created)
        st.code(est.text(), language=None)
        if st.button(f"Start experiment #{created}", key="sim_exp_start", type="primary"):
            st.session_state.pop("sim_exp_created")
            workbench.start("experiment", {"experiment": created},
                            budget=budget or None, watch_key="sim_exp_watch")
