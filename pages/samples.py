"""Samples: filter and page through the stored samples, and open one: the query, both responses
side by side (markdown rendered inert), the annotators' ratings with their reasons and the errors
they found, every judge's vote, and why a judge chose what it chose (each attribute's
contribution to its predicted choice, from its profile). The page keeps its state in the URL
(see dashboard/sampleurl.py), so any view is a link."""

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from core import catalogue

from dashboard import charts, data, data_samples, fmt, guide, sampleurl
from dashboard.render import figure, inert_markdown, plain, plain_lines

st.title("Samples")
guide.how_to_read("samples")
guide.attribute_catalogue(key="samples_catalogue")
fp = data_samples.samples_fingerprint()
datasets = data_samples.sample_datasets(fp)
if not datasets:
    st.info("The store has no samples yet. Import data with `python -m core import FORMAT PATH` or build the demo "
            "with `python -m core demo`.")
    st.stop()

CATALOGUE = data_samples.sample_catalogue()
RULES = {a.key: catalogue.rule_text(a) for a in catalogue.attributes()}  # how each attribute is compared, in words
ATTR_LABEL, GROUPS, CASES = CATALOGUE["attributes"], CATALOGUE["groups"], CATALOGUE["cases"]
SIDE = {1: "A better", -1: "B better", 0: "equal"}
LABELS = {a.key: a.label for a in catalogue.attributes()}
MEANS = {a.key: a.definition for a in catalogue.attributes()}
ORDERS = {"AB": "A shown first", "BA": "B shown first"}
SCORE_HELP = ("The annotator's rating (0-3; stances -2 to 2), the error count for the error attributes, the word "
              "count for length; empty where a query-specific attribute does not apply.")
K = "samples_"  # session-state prefix of this page's widgets


def options_for(dataset: str) -> sampleurl.Options:
    return data_samples.sample_options(fp, dataset)


def load(state: sampleurl.State) -> None:
    """Put a state into the widgets (before they are drawn in this run)."""
    ss = st.session_state
    for name in ("dataset", "scenario", "case", "judge", "source", "direction", "id", "scope", "vjudge", "category"):
        ss[K + name] = getattr(state, name)
    ss[K + "disagree"] = list(state.disagree)
    ss[K + "attributes"] = list(state.attributes)
    ss[K + "excluded"] = state.excluded
    ss[K + "q"] = state.q
    ss[K + "page"] = state.page
    ss[K + "size"] = state.size


def current() -> sampleurl.State:
    ss = st.session_state
    return sampleurl.State(
        dataset=ss.get(K + "dataset"), scenario=ss.get(K + "scenario"), case=ss.get(K + "case"),
        judge=ss.get(K + "judge"), disagree=tuple(ss.get(K + "disagree") or ()),
        attributes=tuple(ss.get(K + "attributes") or ()), source=ss.get(K + "source"),
        direction=ss.get(K + "direction"), excluded=bool(ss.get(K + "excluded")), q=ss.get(K + "q") or "",
        page=int(ss.get(K + "page") or 1), size=int(ss.get(K + "size") or sampleurl.DEFAULT_SIZE), id=ss.get(K + "id"),
        scope=ss.get(K + "scope"), vjudge=ss.get(K + "vjudge"), category=ss.get(K + "category"))


# ------------------------------------------------------------------ the URL -> the widgets
url_now = sampleurl.normalised({k: st.query_params.get_all(k) for k in st.query_params})
if url_now and url_now != st.session_state.get(K + "url"):  # a link, a reload, back / forward
    state, problems = sampleurl.parse(url_now, datasets=datasets, dataset_of=lambda i: data_samples.sample_dataset_of(fp, i),
                                      options=options_for)
    if state.id and "page" not in url_now:  # open the list at the page that holds the linked sample
        state = sampleurl.with_page_of(state, data_samples.browse_index(fp, state.id, state.filter()))
    load(state)
    st.session_state[K + "problems"] = problems
elif K + "dataset" not in st.session_state or st.session_state[K + "dataset"] not in datasets:
    load(sampleurl.State(dataset=datasets[0], source=sampleurl.default_source(options_for(datasets[0]).sources)))
for problem in st.session_state.get(K + "problems") or []:
    st.warning(problem, icon=":material/link_off:")


def reset_page() -> None:
    st.session_state[K + "page"] = 1
    st.session_state[K + "problems"] = []


def dataset_changed() -> None:
    reset_page()
    st.session_state[K + "id"] = None
    st.session_state[K + "source"] = sampleurl.default_source(options_for(st.session_state[K + "dataset"]).sources)


# ------------------------------------------------------------------ filters
ss = st.session_state
opts = options_for(ss[K + "dataset"])
scenario_options = [None] + list(dict.fromkeys([g for g in GROUPS if g in opts.scenarios] + opts.scenarios))
for key, valid in (("scenario", scenario_options), ("case", [None] + list(CASES)), ("judge", [None] + opts.judges),
                   ("source", opts.sources or [None]), ("direction", [None, "A", "B"]),
                   ("category", [None, sampleurl.UNCATEGORISED] + opts.categories)):
    if ss.get(K + key) not in valid:  # left over from another dataset
        ss[K + key] = valid[0] if key == "source" else None
ss[K + "disagree"] = [j for j in ss.get(K + "disagree") or [] if j in opts.judges]

c1, c2, c3, c4 = st.columns(4)
c1.selectbox("Dataset", datasets, key=K + "dataset", on_change=dataset_changed)
c2.selectbox("Scenario group", scenario_options, key=K + "scenario", on_change=reset_page, placeholder="any",
             format_func=lambda g: "any" if g is None else g)
c3.selectbox("Query case", [None] + list(CASES), key=K + "case", on_change=reset_page, placeholder="any",
             format_func=lambda c: "any" if c is None else CASES[c])
c4.selectbox("Judge", [None] + opts.judges, key=K + "judge", on_change=reset_page, placeholder="any",
             format_func=lambda j: "any" if j is None else j,
             help="Only the samples this judge labelled, with its choice as a column; the sample view explains it.")
if opts.categories:  # the dataset brought its own categories
    st.selectbox("Category (yours)", [None, sampleurl.UNCATEGORISED] + opts.categories, key=K + "category", on_change=reset_page,
                 placeholder="any", format_func=lambda c: "any" if c is None else c,
                 help="The category column of your data (task family, bias type, benchmark subset...).")
c1, c2, c3, c4 = st.columns([2, 3, 2, 2])
c1.multiselect("Judges that disagree", opts.judges, key=K + "disagree", on_change=reset_page,
               help="Two or more judges: the samples where their choices (ties aside) are not all the same.")
c2.multiselect("Attributes on which A and B differ", list(ATTR_LABEL), key=K + "attributes", on_change=reset_page,
               format_func=ATTR_LABEL.get,
               help="The samples whose comparison feature is non-zero on every attribute picked (samples whose errors "
                    "could not be checked are left out, as in fitting, unless included below).")
c3.selectbox("Feature source", opts.sources or [None], key=K + "source", on_change=reset_page,
             format_func=lambda s: "(none yet)" if s is None else s,
             help="Whose comparison features: an LLM annotator's, the demo's, the offline heuristics'.")
c4.radio("Better on them", [None, "A", "B"], key=K + "direction", on_change=reset_page, horizontal=True,
         format_func=lambda d: {None: "either", "A": "A", "B": "B"}[d])
c1, c2 = st.columns([4, 1])
c1.text_input("Search queries and responses", key=K + "q", on_change=reset_page, placeholder="words, all required")
c2.checkbox("Keep excluded samples", key=K + "excluded", on_change=reset_page,
            help="Samples whose errors could not be checked are left out of fitting, and so of the attribute "
                 "filter; tick to keep them there.")
if len(ss[K + "disagree"]) == 1:
    st.caption("Judges that disagree: pick one more judge.")
if ss[K + "attributes"] and not opts.sources:
    st.caption("This dataset has no comparison features yet (annotate it first): the attribute filter is off.")

state = current()
filt = state.filter()

# ------------------------------------------------------------------ the list, one page at a time
try:
    listing = data_samples.browse(fp, filt, (state.page - 1) * state.size, state.size)
    total = listing["total"]
    pages = max(1, -(-total // state.size))
    if state.page > pages:  # a link to a page past the end, or a list that shrank
        ss[K + "page"] = pages
        state = current()
        listing = data_samples.browse(fp, filt, (state.page - 1) * state.size, state.size)
except ValueError as e:  # a filter the store refuses (named in the message)
    st.error(str(e))
    st.stop()
offset = (state.page - 1) * state.size
p1, p2, p3 = st.columns([1, 1, 4])
p1.selectbox("Rows per page", sampleurl.PAGE_SIZES, key=K + "size", on_change=reset_page)
p2.number_input("Page", min_value=1, max_value=pages, step=1, key=K + "page")
shown = f"{offset + 1:,}–{offset + len(listing['ids']):,}" if listing["ids"] else "0"
p3.markdown(f"Showing **{shown}** of **{total:,}**" + (" (best match first)" if filt.text else " (dataset order)"))

# a new list or page is a new table (no selection carried over)
table_key = K + "table_" + str(abs(hash((filt, state.page, state.size))))
if listing["ids"]:
    cfg = {j: st.column_config.TextColumn(f"{j}: choice") for j in listing["choice_columns"]}
    cfg["query"] = st.column_config.TextColumn("query", width="large")
    event = fmt.dataframe(listing["frame"], hide_index=True, on_select="rerun", selection_mode="single-row",
                         key=table_key, column_config=cfg, height=min(38 + 35 * len(listing["ids"]), 420))
    rows = list(event.selection.rows)
    if (table_key, rows) != ss.get(K + "selected"):  # a new pick (previous / next leave the table as it is)
        ss[K + "selected"] = (table_key, rows)
        if rows and rows[0] < len(listing["ids"]):
            ss[K + "id"] = listing["ids"][rows[0]]
            ss[K + "problems"] = []
    st.caption("Select a row to open the sample.")
    data.download_buttons(lambda: data_samples.browse_all(fp, filt), f"samples_{filt.dataset or 'all'}", K + "list_download",
                          what=f"The filtered list, all {total:,} rows")
else:
    st.info("No samples match these filters.")

# ------------------------------------------------------------------ one sample
sample_id = ss.get(K + "id")
view = data_samples.sample_view(fp, sample_id) if sample_id else None
if sample_id and view is None:
    st.warning(f"No sample with id {plain(sample_id)}.")
    ss[K + "id"] = None
    sample_id = None


def go(index: int) -> None:
    target = data_samples.sample_at(fp, filt, index)
    if target:
        ss[K + "id"] = target
        ss[K + "page"] = index // current().size + 1
        ss[K + "problems"] = []


if view is not None:
    s = view.sample
    st.divider()
    index = data_samples.browse_index(fp, sample_id, filt)
    h1, h2, h3 = st.columns([1, 3, 1])
    h1.button("Previous", icon=":material/arrow_back:", on_click=go, args=(index - 1 if index is not None else -1,),
              disabled=not index, key=K + "prev", width="stretch")
    h3.button("Next", icon=":material/arrow_forward:", on_click=go, args=(index + 1 if index is not None else -1,),
              disabled=index is None or index + 1 >= total, key=K + "next", width="stretch")
    where = (f"{index + 1:,} of {total:,} in this list" if index is not None
             else "not in the current list (previous / next follow the list)")
    h2.markdown(f"**Sample {s['position'] + 1:,}** of dataset {plain(s['dataset'])} · {where}")
    cases = [CASES.get(k, k) for k, v in (s.get("cases") or {}).items() if v]
    st.caption(" · ".join(plain(x) for x in [
        f"id {s['id']}", f"scenario group: {s.get('scenario_group') or 'not classified yet'}",
        ("query cases: " + ", ".join(cases)) if cases else "no query-specific case",
        f"turns: {s.get('turns') or 1}"] + ([f"your category: {s['category']}"] if s.get("category") else [])))

    raw = st.toggle("Show the texts as raw text", key=K + "raw",
                    help="Off: markdown, rendered inert (no HTML, no images, only web links). On: exactly as stored.")

    def show(text) -> None:
        if raw:
            st.text(text or "")
        else:
            st.markdown(inert_markdown(text))

    st.markdown("**Query**")
    with st.container(border=True):
        show(s["query"])
    ca, cb = st.columns(2)
    for col, side, model, words, text in ((ca, "A", s.get("model_a"), s.get("words_a"), s["response_a"]),
                                          (cb, "B", s.get("model_b"), s.get("words_b"), s["response_b"])):
        with col:
            st.markdown(f"**Response {side}** · {plain(model or 'model not recorded')} · {words or 0:,} words")
            with st.container(border=True):
                show(text)
    if view.reference:
        who = "from the data" if view.reference_from == "data" else f"written by the annotator {view.reference_from}"
        with st.expander(f"Reference answer ({plain(who)})"):
            show(view.reference)
    else:
        st.caption("No reference answer (the annotator writes one when it checks for errors).")

    # -------------------------------------------------------------- votes
    st.subheader("Votes")
    if view.votes:
        votes = pd.DataFrame(view.votes)
        votes["consistent"] = [None if pd.isna(a) or pd.isna(b) else a == b
                               for a, b in zip(votes["verdict_ab"], votes["verdict_ba"])]
        columns = ["judge", "kind", "choice", "prob_a"]
        if votes[["verdict_ab", "verdict_ba"]].notna().any().any():  # both-order verdicts, where known
            columns += ["verdict_ab", "verdict_ba", "consistent"]
        if votes[["strength_ab", "strength_ba"]].notna().any().any():  # A>>B (2) or A>B (1), where given
            strength = {1: "slightly", 2: "clearly"}
            for k in ("strength_ab", "strength_ba"):
                votes[k] = votes[k].map(strength.get)
            columns += ["strength_ab"] + (["strength_ba"] if votes["strength_ba"].notna().any() else [])
        fmt.dataframe(votes[columns], hide_index=True, key=K + "votes", column_config={
                         "prob_a": fmt.percent_column("P(A)", help="the judge's own probability of A, from its answer "
                                                      "tokens; not applicable where the judge gave only a choice"),
                         "verdict_ab": "verdict, A shown first", "verdict_ba": "verdict, B shown first",
                         "strength_ab": "how strongly (A shown first)", "strength_ba": "how strongly (B shown first)",
                         "consistent": st.column_config.CheckboxColumn("same in both orders")})
    else:
        st.caption("No judge has labelled this sample.")

    # -------------------------------------------------------------- contributions
    st.subheader("Why this choice")
    profiled = data_samples.profiled_judges(fp, s["dataset"])
    if not profiled:
        st.info("No judge has a profile on this dataset yet: fit them (`python -m core fit --dataset NAME`, or the "
                "Annotate & fit page) to see each attribute's contribution to a judge's choice.")
    else:
        default_judge = state.judge if state.judge in profiled else profiled[0]
        scopes = data_samples.sample_scopes(s)
        default_scope = next((x for x in (state.case, state.scenario) if x in scopes), scopes[0])
        if ss.get(K + "vjudge") not in profiled:
            ss[K + "vjudge"] = None
        if ss.get(K + "scope") not in scopes:
            ss[K + "scope"] = None
        # the pickers show the page state (set from the URL too); a pick becomes the page state
        ss[K + "vjudge_pick"] = ss[K + "vjudge"] or default_judge
        ss[K + "scope_pick"] = ss[K + "scope"] or default_scope
        e1, e2 = st.columns(2)
        vjudge = e1.selectbox("Explain with the profile of", profiled, key=K + "vjudge_pick",
                              on_change=lambda: ss.update({K + "vjudge": ss[K + "vjudge_pick"]}))
        scope = e2.selectbox("Profile scope", scopes, format_func=lambda x: CASES.get(x, x), key=K + "scope_pick",
                             on_change=lambda: ss.update({K + "scope": ss[K + "scope_pick"]}),
                             help="The sample's scenario group, its query cases, or all samples.")
        ex = data_samples.explanation(fp, sample_id, vjudge, scope)
        e, frame = ex["explanation"], ex["frame"]
        if e.contributions is None:
            st.info(plain(e.problem))
        else:
            c = e.contributions
            prof = e.profile
            trust = e.trust
            if trust["beats_baseline"] is False:
                st.warning(plain(
                    f"This profile predicts held-out choices no better than the obvious ({fmt.percent(prof['accuracy'])} "
                    f"against {fmt.percent(trust['baseline_accuracy'])} for the {trust['baseline']} baseline): the waterfall shows what "
                    "the fit adds up to, not what drives the judge."), icon=":material/warning:")
            left, right = st.columns([3, 1])
            with left:
                charts.show(charts.contribution_waterfall, frame, width="stretch", key=K + "waterfall")
            with right:
                vote = e.vote or {}
                st.metric("Actual choice", vote.get("choice") or "no label")
                if vote.get("prob_a") is not None:
                    st.caption(f"The judge's own probability of A when it answered (from its answer tokens): "
                               f"{fmt.percent(vote['prob_a'])}; the waterfall is the profile's prediction, not this.")
                st.metric("Predicted P(A)" if trust["ties"] != "davidson" else "Predicted P(A | not a tie)",
                          fmt.percent(c.p_a))
                st.metric("Predicted choice", c.predicted)
            acc = f", held-out accuracy {fmt.percent(prof['accuracy'])}" if prof.get("accuracy") is not None else ""
            st.caption(plain(
                f"Profile used: judge {vjudge}, scope {scope}, method {prof['method']}, features {prof['feature_source']}"
                f", {prof.get('n') or '?'} samples{acc}; posterior-mean weights. logit P(A) = sum of weight x feature"
                f" = {c.logit:+.3f} (exact for the logistic model); only attributes on which A and B differ contribute."))
            if c.missing:
                st.caption(plain("No feature on this sample for: " + ", ".join(c.missing) + " (counted as equal)."))
            with st.expander("Contributions as a table"):
                fmt.dataframe(guide.with_definitions(frame.assign(contribution=frame["contribution"].round(4))),
                              hide_index=True, key=K + "contrib_table", column_config={
                                  "attribute": None, "label": "attribute", "definition": guide.DEFINITION_COLUMN,
                                  "x": st.column_config.NumberColumn("A vs B (x)", format="%+d",
                                                                     help="+1 A better, -1 B better, 0 equal"),
                                  "weight": st.column_config.NumberColumn("weight", format=fmt.WEIGHT),
                                  "contribution": st.column_config.NumberColumn("contribution", format=fmt.WEIGHT,
                                                                                help="weight × x, to logit P(A)")})

    # -------------------------------------------------------------- attributes, errors, query analysis
    st.subheader("Attributes")
    sources = list(view.features)
    if not sources:
        st.caption("No comparison features for this sample yet: annotate it (an LLM annotator, or the offline heuristics).")
    else:
        src = state.source if state.source in sources else sources[0]
        if len(sources) > 1:
            ss[K + "source_pick"] = src
            src = st.radio("Feature source", sources, horizontal=True, key=K + "source_pick", format_func=plain,
                           on_change=lambda: ss.update({K + "source": ss[K + "source_pick"]}))
        who = view.source_notes.get(src)
        st.caption(plain(f"Source {src}: " + (f"ratings and reasons by {who}" if who else
                                               "no stored annotator answers (e.g. the offline heuristics: text "
                                               "statistics, no reasons)")))
        rows = view.features[src]
        both = any(r["orders"] for r in rows)
        rated = {a: f" (rated: {r})" for a, r in CATALOGUE["rated_as"].items()}
        table = pd.DataFrame([{
            "attribute": r["label"] + rated.get(r["attribute"], ""), "comparison": SIDE.get(r["value"], r["value"]),
            "A": figure(r["score_a"]),
            "B": figure(r["score_b"]), **({"A first": SIDE.get(r["orders"].get("AB")), "B first": SIDE.get(r["orders"].get("BA"))}
                                 if both else {}),
            "reasons": " | ".join(r["reasons"]), "left out of fitting": r["excluded"],
            "compared as": RULES.get(r["attribute"], "")} for r in rows])
        # what each attribute means (the catalogue's words; how it is compared has its own column)
        table.insert(1, "definition", [MEANS.get(r["attribute"]) for r in rows])
        if not table["reasons"].str.len().any():  # no reasons stored (the demo's generator, the heuristics)
            table = table.drop(columns="reasons")
        fmt.dataframe(table, hide_index=True, key=K + "attributes_table", height=38 + 35 * len(table),
                     column_config={"definition": guide.DEFINITION_COLUMN,
                                    "A": st.column_config.TextColumn("A", help=SCORE_HELP),
                                    "B": st.column_config.TextColumn("B", help=SCORE_HELP),
                                    "reasons": st.column_config.TextColumn("annotator's reasons", width="large")})
        notes = view.notes_for(src)
        st.markdown("**Detected errors**")
        if notes is None:
            st.caption("This source has no error check.")
        elif notes.checkable is False:
            st.caption("The annotator could not check the errors against the reference: the sample is left out of "
                       "fitting.")
        elif notes.errors:
            fmt.dataframe(pd.DataFrame(notes.errors).assign(order=lambda f: f["order"].map(ORDERS).fillna(f["order"])),
                          hide_index=True, key=K + "errors", column_config={"order": "rated with"})
        else:
            st.caption("None found in either response.")
        if notes is not None and notes.items:
            with st.expander("Per-item ratings (constraints, stances, mistakes)"):
                items = pd.DataFrame(notes.items)
                items = items.assign(attribute=items["attribute"].map(LABELS).fillna(items["attribute"]),
                                     order=items["order"].map(ORDERS).fillna(items["order"]),
                                     A=items["A"].map(figure), B=items["B"].map(figure))
                fmt.dataframe(guide.with_definitions(items, by="attribute"), hide_index=True, key=K + "items",
                              column_config={"order": "rated with", "definition": guide.DEFINITION_COLUMN})
        if notes is not None and notes.failed:
            st.caption(plain("Failed requests: " + "; ".join(f"{a} ({b}): {c}" for a, b, c in notes.failed)))

    st.subheader("Query analysis")
    analysed = [n for n in view.notes if n.analysis]
    if not analysed:
        st.caption("Not analysed yet.")
    for n in analysed:
        a = n.analysis
        st.markdown(plain_lines("\n".join([
            f"By {n.annotator} (prompts {n.prompt_version}):",
            f"intent clear: {'yes' if a['clear_intent'] else 'no'}; "
            f"expresses feelings: {'yes' if a['expresses_feelings'] else 'no'}",
            *[f"{title}: " + ("; ".join(a[k]) if a[k] else "none")
              for k, title in (("constraints", "explicit constraints"), ("stances", "subjective stances"),
                               ("mistakes", "mistakes or biases"))]])))

    # -------------------------------------------------------------- the shareable link
    link_state = current()
    link = sampleurl.to_params(link_state, default_source_=sampleurl.default_source(opts.sources))
    base = st.context.url or "/samples"
    st.markdown("**Link to this view**")
    st.code(base + "?" + urlencode(link, doseq=True), language=None)

# ------------------------------------------------------------------ the widgets -> the URL
final = current()
params = sampleurl.to_params(final, default_source_=sampleurl.default_source(opts.sources))
if sampleurl.normalised(params) != url_now:
    st.query_params.from_dict(params)
st.session_state[K + "url"] = sampleurl.normalised(params)
