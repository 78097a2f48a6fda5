"""Your data, from the browser: import a file (upload, format or column mapping with a preview,
the full validation report, the import as a job with progress) and delete what is stored (with a
confirmation that says what goes, and a backup first). Editors only for anything that writes.

Every action is a core function (``core.importers``, ``Store.delete``), as the CLI's ``import``
and ``delete`` commands; this module only lays out the widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import importers
from core.importers import GENERIC_COLUMNS, InputError, InputErrors

from dashboard import auth, data, fmt, workbench
from dashboard.render import plain

NONE = "(not in the file)"
FORMAT_HELP = {
    "generic": "any table of pairs: map its columns below",
    "autoj": "Auto-J's pairwise test set (its two output files cannot come along in an upload)",
    "pandalm": "PandaLM's test set (human annotators only in an upload)",
    "alpaca_eval": "one AlpacaEval annotations.json",
    "arena": "Chatbot Arena conversations, or the paper's raw rows",
    "hf": "the paper's Hugging Face layout (a parquet or JSONL file)",
}
#: what each generic field means, shown beside its column picker
FIELD_HELP = {
    "query": "the user's query (required)", "response_a": "response A (required)", "response_b": "response B (required)",
    "label": "the judge's verdict: A / B / tie, A>>B, A>B, A=B..., or an answer ending in [[A>B]]",
    "label_ba": "the same judge's verdict with B shown first, as that run gave it (mapped back)",
    "prob_a": "P(A)", "scores": "two scores [shown first, shown second]", "scores_ba": "the same, B shown first",
    "score_a": "score of A", "score_b": "score of B", "id": "your own id of the pair (unique)",
    "model_a": "model behind A", "model_b": "model behind B", "scenario": "a scenario name",
    "scenario_group": "one of the paper's 11 groups", "category": "your own category (any taxonomy)",
    "reference": "a reference answer", "chosen": "the chosen response (chosen / rejected pairs)",
    "rejected": "the rejected response (chosen / rejected pairs)",
}


def _problems_frame(e: InputError) -> pd.DataFrame:
    items = e.problems if isinstance(e, InputErrors) else [e]
    return pd.DataFrame([{"file": Path(p.file).name if p.file else "", "row": p.row, "field": p.field,
                          "problem": p.message} for p in items])


def show_report(batch: importers.ParsedFile) -> None:
    """What an import would write: counts, and what a researcher should know."""
    c = batch.counts
    cols = st.columns(4)
    cols[0].metric("Rows", f"{c.get('rows', 0):,}")
    cols[1].metric("Samples", f"{len(batch.samples):,}")
    cols[2].metric("Labels", f"{len(batch.labels):,}")
    cols[3].metric("Judges", f"{len(batch.judges):,}")
    report = importers.ImportReport(dataset=batch.dataset.name, samples_added=len(batch.samples),
                                    samples_seen=len(batch.samples), labels_written=len(batch.labels),
                                    judges=[j.name for j in batch.judges], counts=dict(c), repeats=batch.repeats)
    for note in report.notes():
        st.caption(plain(note))
    categories = sorted({s.category for s in batch.samples if s.category})
    if categories:
        st.caption(plain(f"{len(categories)} categories: " + ", ".join(categories[:20])
                         + (", ..." if len(categories) > 20 else "")))


def _mapping_form(columns: list[str]) -> dict[str, str]:
    """One picker per field of the generic format; a field is preselected when a column has its name."""
    st.caption("Map the file's columns to our fields (a field whose name is a column is picked already). A column "
               "may also be a path into nested JSON, typed below (e.g. judgments.0.decision).")
    mapping: dict[str, str] = {}
    choices = [NONE] + columns
    grid = st.columns(3)
    for i, name in enumerate(GENERIC_COLUMNS):
        default = choices.index(name) if name in columns else 0
        pick = grid[i % 3].selectbox(name, choices, index=default, key=f"own_map_{name}", help=FIELD_HELP.get(name))
        if pick != NONE and pick != name:
            mapping[name] = pick
        elif pick == name and name in ("label", "label_ba", "scores", "scores_ba", "score_a", "score_b", "prob_a",
                                       "category"):
            mapping[name] = pick  # verdict fields: read only when mapped (see the README)
    nested = st.text_input("Nested paths (FIELD=PATH, comma-separated)", key="own_map_nested",
                           placeholder="label=judgments.0.judgment.response, label_ba=judgments.1.judgment.response")
    for part in filter(None, (p.strip() for p in nested.split(","))):
        key, sep, value = part.partition("=")
        if sep and key.strip() in GENERIC_COLUMNS and value.strip():
            mapping[key.strip()] = value.strip()
    return mapping


def import_section() -> None:
    st.caption("Upload a CSV, TSV, JSONL, JSON or parquet file, map its columns, check it, then import it. The check "
               "lists every problem with its row and field; nothing is written until the whole file is right.")
    if not auth.require_editor("importing data"):
        return
    upload = st.file_uploader("Data file", type=[s.lstrip(".") for s in importers.UPLOAD_SUFFIXES], key="own_file")
    if upload is None:
        return
    try:
        path = importers.save_upload(data.store().path, upload.name, upload.getvalue())
        columns, first = importers.preview_rows(path)
    except InputError as e:
        st.error("This file cannot be read: " + plain(e))
        return
    st.markdown("**The first rows** (as text)")
    st.dataframe(pd.DataFrame(first).astype(str), hide_index=True)
    file_format = st.selectbox("Format", list(FORMAT_HELP), key="own_format", format_func=lambda f: f"{f}: {FORMAT_HELP[f]}")
    options: dict[str, Any] = {"dataset": st.text_input("Dataset name", value=Path(upload.name).stem, key="own_dataset")}
    if file_format == "generic":
        options["columns"] = _mapping_form(columns)
        c1, c2 = st.columns(2)
        options["judge"] = c1.text_input("Judge name (whose verdicts the file holds)", value="human", key="own_judge")
        options["judge_kind"] = c2.selectbox("Judge kind", ["human", "llm", "gold", "synthetic"], key="own_kind")
        c1, c2 = st.columns(2)
        values = c1.text_input("Other verdict spellings (label_values)", key="own_values", placeholder="1=A,2=B,0=tie",
                               help="raw value = A, B or tie; an empty right side means no verdict")
        groups = c2.text_input("File categories under the paper's groups (category_groups)", key="own_groups",
                               placeholder="mmlu*=Exam Questions,livecodebench=Code")
        if values.strip():
            options["label_values"] = values.strip()
        if groups.strip():
            options["category_groups"] = groups.strip()
        c1, c2, c3 = st.columns(3)
        if c1.checkbox("Keep empty responses (allow_empty)", key="own_empty"):
            options["allow_empty"] = True
        if c2.checkbox("label_ba is already in A/B terms (ba_mapped)", key="own_ba_mapped"):
            options["ba_mapped"] = True
        scale = c3.number_input("Score scale (P(A) = sigmoid((score A - score B) / scale))", min_value=0.001,
                                value=1.0, key="own_scale")
        if scale != 1.0:
            options["score_scale"] = scale
    replace = st.checkbox("Replace this judge's labels on the dataset if the file changes them", key="own_replace",
                          help="without it, a file that would change a stored label, or a judge's kind, is refused")
    if st.button("Check the file", key="own_check", icon=":material/fact_check:"):
        try:
            st.session_state["own_checked"] = (str(path), file_format, repr(options))
            st.session_state["own_report"] = importers.check_file(file_format, path, **options)
            st.session_state.pop("own_error", None)
        except InputError as e:
            st.session_state["own_error"] = e
            st.session_state.pop("own_report", None)
    checked = st.session_state.get("own_checked") == (str(path), file_format, repr(options))
    if checked and "own_error" in st.session_state:
        e = st.session_state["own_error"]
        n = len(e.problems) + e.more if isinstance(e, InputErrors) else 1
        st.error(f"Not importable: {n:,} problem(s). Nothing was written.")
        fmt.dataframe(_problems_frame(e), hide_index=True, column_config={
            "row": st.column_config.NumberColumn("row", help="not applicable: the problem is with the whole file"),
            "field": st.column_config.TextColumn("field", help="not applicable: the problem is with the whole row")})
        if isinstance(e, InputErrors) and e.more:
            st.caption(f"... and {e.more:,} more (the first {len(e.problems)} are listed).")
        return
    if not (checked and "own_report" in st.session_state):
        st.caption("Check the file to see what would be imported.")
        return
    show_report(st.session_state["own_report"])
    if st.button("Import", type="primary", key="own_import", icon=":material/upload:"):
        params = {"dataset": options["dataset"], "format": file_format, "path": str(path),
                  "options": {**options, "replace": replace}}
        workbench.start("import", params, total=importers.estimate_rows(path) + 1, watch_key="own_watch")


def delete_section() -> None:
    st.caption("Delete a dataset, a judge, a feature set or a profile. You see what goes with it first; a copy of "
               "the whole store is saved beside it before anything is deleted.")
    if not auth.require_editor("deleting data"):
        return
    s = data.store()
    what = st.radio("What", ["dataset", "judge", "features", "profile"], horizontal=True, key="own_del_what",
                    format_func={"dataset": "a dataset", "judge": "a judge", "features": "a feature set",
                                 "profile": "a profile"}.get)
    dataset = None
    if what == "dataset":
        names = [d["name"] for d in s.datasets()]
    elif what == "judge":
        names = s.judge_names()
    elif what == "features":
        names = [r["source"] for r in s.feature_sources()]
    else:
        names = [str(p["id"]) for p in s.profiles(columns=["id", "dataset", "scope", "judge", "method"])]
    if not names:
        st.info("Nothing of that kind is stored.")
        return
    labels = {}
    if what == "profile":
        labels = {str(p["id"]): f"#{p['id']} {p['dataset']} · {p['scope']} · {p['judge']} · {p['method']}"
                  for p in s.profiles(columns=["id", "dataset", "scope", "judge", "method"])}
    name = st.selectbox("Name", names, key="own_del_name", format_func=lambda n: labels.get(n, n))
    if what in ("judge", "features"):
        only = st.selectbox("Only on dataset", [None] + [d["name"] for d in s.datasets()], key="own_del_dataset",
                            format_func=lambda d: "every dataset" if d is None else d)
        dataset = only
    try:
        plan = s.delete_plan(what, name, dataset=dataset)
    except ValueError as e:
        st.warning(plain(e))
        return
    st.markdown("**This removes:** " + ", ".join(f"{n:,} {table}" for table, n in plan.items() if n))
    nonce = st.session_state.get("own_del_nonce", 0)  # a new checkbox after each deletion: confirm every time
    sure = st.checkbox("I understand; delete it (a backup is taken first)", key=f"own_del_sure_{nonce}")
    if st.button("Delete", type="primary", key="own_del_go", disabled=not sure, icon=":material/delete:"):
        try:
            removed, backup = s.delete(what, name, dataset=dataset)
        except ValueError as e:
            st.error(plain(e))
            return
        st.session_state["own_del_nonce"] = nonce + 1
        workbench.flash("Deleted: " + ", ".join(f"{n:,} {t}" for t, n in removed.items() if n)
                        + f". The store as it was is kept in {backup.name}.")
        st.rerun()


def watch() -> None:
    workbench.watch(kinds=("import",), key="own_watch")

