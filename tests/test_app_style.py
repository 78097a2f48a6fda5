"""Every page in one number style and in people's words (issue 17, points 2 and 3): no table cell or label
reads "None", "nan" or a snake_case key; every percentage in a table or metric has the one precision
(dashboard/fmt.py); every table that lists attributes carries their definitions; the Overview says when each
dataset was imported; a judge's unknown size reads "unknown"."""

from __future__ import annotations

import json
import re

import pytest

from core import catalogue, jobs
from core.store import Store
from dashboard import fmt
from tests.stsession import open_page, shown_tables

#: one decimal, optionally signed, e.g. "57.6%", "+5.5%", "100.0%"
PERCENT = re.compile(r"^[+-]?\d{1,3}(,\d{3})*\.\d%$")
#: what raw names look like: "raw_rank", "imported_at", "no_severe_errors", "w_constraints"
SNAKE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)+$")
RAW = {"None", "nan", "NaN", "NaT", "<NA>", "null"}
KEYS = {k for k in catalogue.attribute_keys() + catalogue.case_keys() if "_" in k}
LABELS = {a.label for a in catalogue.attributes()}


def _problems(page: str, at) -> list[str]:
    problems = []
    for d in at.dataframe:  # Streamlit's own "percent" shows two decimals ("57.64%" beside "78%")
        problems += [f"{page}: column {c!r} has Streamlit's two-decimal percent format"
                     for c, cfg in json.loads(d.proto.columns or "{}").items()
                     if ((cfg or {}).get("type_config") or {}).get("format") == "percent"]
    for i, table in enumerate(shown_tables(at)):
        where = f"{page} table {i} {list(table.columns)[:4]}"
        for label in table.columns:
            if SNAKE.match(label) or label in RAW:
                problems.append(f"{where}: column {label!r}")
        for label, column in table.items():
            for cell in column:
                if cell in RAW:
                    problems.append(f"{where}: {label!r} cell {cell!r}")
                elif cell in KEYS:
                    problems.append(f"{where}: {label!r} cell is a key {cell!r}")
                elif isinstance(cell, str) and cell.endswith("%") and not PERCENT.match(cell):
                    problems.append(f"{where}: {label!r} percentage {cell!r}")
        listed = {c for col in table.columns for c in table[col] if c in LABELS}
        if len(listed) >= 3 and not ({"what it means", "means"} & set(table.columns)):
            problems.append(f"{where}: lists attributes without their definitions")
    for m in at.metric:
        for number in re.findall(r"[+-]?\d[\d,]*(?:\.\d+)?%", m.value):
            if not PERCENT.match(number):
                problems.append(f"{page} metric {m.label!r}: {number!r}")
        if m.value in RAW:
            problems.append(f"{page} metric {m.label!r}: {m.value!r}")
    return problems


def _with_a_finished_job(path) -> int:
    """An offline annotation job run to its end in this process (as a worker runs it): the Annotate & fit
    page then has a job panel and a history row to show."""
    with Store(path) as s:
        job = jobs.submit(s, "heuristic", {"dataset": "demo-synthetic", "scenarios": ["Code"]})
        assert jobs.claim(s, job.id)
        jobs.run(s, job.id)
        return job.id


def test_every_page_reads_in_words_and_one_number_style(store_path):
    with Store(store_path) as s:
        sample_id = s.conn.execute("SELECT id FROM samples ORDER BY rowid LIMIT 1").fetchone()[0]
    _with_a_finished_job(store_path)
    problems = []
    for page, query in (("overview", None), ("samples", {"id": sample_id}), ("profiles", None), ("similarity", None),
                        ("judges", None), ("simulate", None), ("annotate", None)):
        problems += _problems(page, open_page(page, query))
    assert not problems, "\n".join(problems)


def test_the_check_catches_what_issue_17_found(shared_store_path):
    """The sweep above can fail: Streamlit's own percent format (two decimals), its "None" for an empty
    cell and a raw column name are each caught."""
    from streamlit.testing.v1 import AppTest

    def page():
        import pandas as pd
        import streamlit as st

        st.dataframe(pd.DataFrame({"raw_rank": [1, 2], "rate": [0.5764, None]}), hide_index=True,
                     column_config={"rate": st.column_config.NumberColumn("agreement", format="percent")})
        st.metric("Observed", "57.64%")

    at = AppTest.from_function(page).run()
    found = "\n".join(_problems("test", at))
    assert "column 'raw_rank'" in found and "cell 'None'" in found and "'57.64%'" in found
    assert "column 'rate' has Streamlit's two-decimal percent format" in found


def test_the_overview_says_when_each_dataset_was_imported_and_an_unknown_size_is_unknown(shared_store_path):
    at = open_page("overview")
    datasets = next(t for t in shown_tables(at) if "imported" in t.columns)
    with Store(shared_store_path) as s:
        stored = {d["name"]: d["imported_at"] for d in s.datasets()}
    assert stored["demo-synthetic"]  # the store records it
    assert list(datasets["imported"]) == [fmt.timestamp(stored[n]) for n in datasets["name"]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", datasets["imported"].iloc[0])
    judges = next(t for t in shown_tables(at) if "chose A" in t.columns)
    assert set(judges["size"]) == {"unknown"}  # the demo's judges give no size: not "None", not an empty cell


@pytest.mark.parametrize("value, text", [(0.5764, "57.6%"), (0.78, "78.0%"), (1.0, "100.0%"), (None, "not applicable"),
                                         (float("nan"), "not applicable")])
def test_one_percent_style(value, text):
    assert fmt.percent(value) == text
    assert fmt.percent(0.055, signed=True) == "+5.5%" and fmt.points(0.055) == "+5.5 points"
    assert fmt.size(None) == "unknown" and fmt.size(7) == "7B" and fmt.size(0.5) == "0.5B"


def _display_texts(styler) -> "pd.DataFrame":
    """The cell texts Streamlit sends for a Styler (what the browser shows)."""
    import pyarrow as pa
    from streamlit.elements.lib.pandas_styler_utils import marshall_styler
    from streamlit.proto.ArrowData_pb2 import ArrowData

    proto = ArrowData()
    marshall_styler(proto, styler, "uuid")
    assert not proto.styler.styles  # no CSS: the Styler only carries texts
    return pa.ipc.open_stream(proto.styler.display_values).read_all().to_pandas().astype(str)


def test_table_texts_are_what_pandas_styler_format_gives():
    """fmt.dataframe hands Streamlit its cell texts directly (pandas' Styler route cost 10-20 ms a table on
    every rerun); the texts are the ones ``Styler.format`` gives with the same formatters, for every kind
    of column a page shows: shares, signed shares, percent units, other numbers, nullable integers, text
    with gaps, booleans, lists, mixed objects."""
    import numpy as np
    import pandas as pd

    n = 12
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "judge": [f"judge {i}" for i in range(n)], "label": ["clear"] * (n - 1) + [None],
        "n": rng.integers(0, 500, n), "share": rng.random(n), "shift": rng.random(n) - 0.5,
        "percent": rng.random(n) * 100, "weight": rng.normal(size=n), "f32": rng.random(n).astype(np.float32),
        "flag": [True, False] * (n // 2), "maybe": [True, None] * (n // 2), "list": [["a", "b"]] * n,
        "mixed": [1.5, "x", None, 3] * (n // 4), "count": pd.array([1, None] * (n // 2), dtype="Int64"),
        "when": ["2026-01-01T10:00:00+00:00"] * n})
    frame.loc[2, "share"] = np.nan
    frame.loc[3, "weight"] = np.nan
    config = {"share": fmt.percent_column("share"), "shift": fmt.percent_column("shift", signed=True),
              "percent": fmt.percent_of_100_column("preferred"), "when": fmt.time_column("when"), "judge": "judge"}
    # the reference: pandas' own formatting, as fmt.shown once built it
    expected = frame.assign(when=frame["when"].map(fmt.timestamp))
    numbers = {"share", "shift", "percent"}
    others = [c for c in expected.columns if c not in numbers and pd.api.types.is_numeric_dtype(expected[c])
              and not pd.api.types.is_bool_dtype(expected[c])]
    style = expected.style.format(na_rep=fmt.NOT_APPLICABLE).format(fmt._plain_number, subset=others,
                                                                     na_rep=fmt.NOT_APPLICABLE)
    for c in numbers:
        style = style.format(config[c].text, subset=[c], na_rep=fmt.NOT_APPLICABLE)
    got, want = _display_texts(fmt.shown(frame, config)), _display_texts(style)
    pd.testing.assert_frame_equal(got, want)
    assert got.loc[2, "share"] == fmt.NOT_APPLICABLE and got.loc[0, "shift"].startswith(("+", "-"))
    assert got.loc[0, "when"].endswith(" UTC") and got.loc[1, "count"] == fmt.NOT_APPLICABLE
    # fmt also makes the frame of texts Streamlit would build from the Styler's cells (a column at a time,
    # not cell by cell) and Streamlit takes it: the same frame, to the byte it sends
    from streamlit import dataframe_util
    from streamlit.elements.lib import pandas_styler_utils as psu

    assert psu._use_display_values.takes_ready_frames
    styler = fmt.shown(frame, config)
    styles = styler._translate(False, False)
    ready = psu._use_display_values(styler.data, styles)
    built = psu._use_display_values.__wrapped__(styler.data, {k: v for k, v in styles.items() if k != fmt._DISPLAY_FRAME})
    assert ready is styles[fmt._DISPLAY_FRAME]
    pd.testing.assert_frame_equal(ready, built)
    assert dataframe_util.convert_pandas_df_to_arrow_bytes(ready) == dataframe_util.convert_pandas_df_to_arrow_bytes(built)


@pytest.mark.parametrize("sizes", [[70, 7, None, 0.5, 13], [None, None]])
def test_a_size_column_sorts_by_size_and_shows_the_same_texts(sizes):
    """Regression (issue 17): the judges' size column was text, so a click on its header put "70B" before
    "7B". Its values now stay numbers (the browser sorts a number column by value), with the texts "7B",
    "0.5B" and, where no size was given, "unknown" (not the table's placeholder), which sorts last."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"name": [f"j{i}" for i in range(len(sizes))], "size_b": sizes,
                          "share": [None] * len(sizes)})
    styler = fmt.shown(frame, {"size_b": fmt.size_column(), "share": fmt.percent_column("share")})
    sent = styler.data
    assert pd.api.types.is_float_dtype(sent["size_b"]) and sent["size_b"].notna().all()
    texts = _display_texts(styler)
    assert list(texts["size_b"]) == [fmt.size(s) for s in sizes]
    assert set(texts["share"]) == {fmt.NOT_APPLICABLE}  # the other empty cells keep the one placeholder
    by_size = [texts["size_b"][i] for i in np.argsort(sent["size_b"].to_numpy(), kind="stable")]
    known = sorted(s for s in sizes if s is not None)
    assert by_size == [fmt.size(s) for s in known] + [fmt.UNKNOWN] * sizes.count(None)


def test_the_judges_page_size_column_is_numbers_shown_as_sizes(shared_store_path):
    import pandas as pd

    at = open_page("judges")
    table = next(d for d in at.dataframe if "size_b" in d.value.columns)
    assert pd.api.types.is_float_dtype(table.value["size_b"])  # sorts by size in the browser
    judges = next(t for t in shown_tables(at) if "size" in t.columns and "kind" in t.columns)
    assert set(judges["size"]) == {fmt.UNKNOWN}  # the demo's judges give no size
