"""One number style for every page (issue 17: "57.64%" stood beside "78%", ratings read "3.00", a judge's
unknown size read "None").

The rules, one per kind of number, used by every page, table and chart:

- **shares, rates and probabilities** (agreement, accuracy, win rates, P(A), P(weight > 0)): percent with
  one decimal, ``"57.6%"``; changes in them signed, ``"+5.5%"`` (:func:`percent`, :data:`PERCENT_D3` for
  altair, :func:`percent_column` for tables). Chart axes tick in whole percents (:data:`PERCENT_AXIS`):
  ticks are a scale, not estimates.
- **weights** (log-odds): signed, three decimals (:data:`WEIGHT`).
- **correlations and kappas**: two decimals (:data:`COEFFICIENT`).
- **counts, ratings, word counts**: whole numbers ``"160"``; a mean of ratings up to two decimals
  (``render.figure``).
- **missing**: ``"not applicable"`` where a value cannot exist for the row, ``"unknown"`` where it exists
  but was not given (a judge's size).

Streamlit's own ``format="percent"`` shows two decimals, so percent columns are formatted here, through a
``pandas.Styler`` that leaves the values (sorting, downloads, tests) as they are: :func:`dataframe` is
``st.dataframe`` with this module's column kinds applied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard.stpatch import replace_once

PERCENT_DECIMALS = 1
PERCENT_D3 = f".{PERCENT_DECIMALS}%"  # altair / d3 format of a share 0-1
SIGNED_PERCENT_D3 = f"+.{PERCENT_DECIMALS}%"
PERCENT_AXIS = "%"  # axis ticks: whole percents
SIGNED_PERCENT_AXIS = "+%"
WEIGHT = "%+.3f"  # printf, for st.column_config
WEIGHT_D3 = "+.3f"
COEFFICIENT = "%.2f"
COEFFICIENT_D3 = ".2f"
MONEY = "$%.4f"
NOT_APPLICABLE = "not applicable"
UNKNOWN = "unknown"


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x) or x is pd.NA or x is pd.NaT


def percent(x: Any, *, signed: bool = False, na: str = NOT_APPLICABLE) -> str:
    """A share 0-1 as people read it: ``"57.6%"`` (``"+5.5%"`` signed); ``na`` for none."""
    if _missing(x):
        return na
    return f"{x:+.{PERCENT_DECIMALS}%}" if signed else f"{x:.{PERCENT_DECIMALS}%}"


def percent_of_100(x: Any, *, na: str = NOT_APPLICABLE) -> str:
    """A value already in percent units (0-100, e.g. 100·sigmoid(w)): ``"57.6%"``."""
    return na if _missing(x) else f"{x:.{PERCENT_DECIMALS}f}%"


def points(x: Any, *, na: str = NOT_APPLICABLE) -> str:
    """A change of a share in percentage points: ``"+5.5 points"``."""
    return na if _missing(x) else f"{x * 100:+.{PERCENT_DECIMALS}f} points"


def size(size_b: Any) -> str:
    """A judge's size in billions of parameters: ``"7B"``, ``"0.5B"``; ``"unknown"`` when not given."""
    return UNKNOWN if _missing(size_b) else f"{float(size_b):g}B"


def timestamp(value: Any, *, na: str = NOT_APPLICABLE) -> str:
    """A stored ISO time for people: ``"2026-12-06 11:23:05 UTC"``."""
    if _missing(value) or value == "":
        return na
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError):
        return str(value)
    if t.tzinfo is not None:
        t = t.tz_convert("UTC")
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------- tables


class _Column(dict):
    """A ``st.column_config`` column whose cell text this module writes (see :func:`dataframe`)."""

    text: Any = None  # a callable for one (present) value
    as_text: bool = False  # the column becomes its text (a time); else a Styler shows it
    # a column whose empty cells read a text of their own ("unknown" size), not the table's placeholder:
    # the browser draws the placeholder over any empty cell, whatever its Styler text, so such a cell
    # holds ``fill`` instead (a number that sorts where the missing ones belong) and shows ``missing``
    missing: str | None = None
    fill: Any = None


def _column(base: dict, text: Any, *, as_text: bool = False, missing: str | None = None,
            fill: Any = None) -> _Column:
    col = _Column(base)
    col.text, col.as_text, col.missing, col.fill = text, as_text, missing, fill
    return col


def percent_column(label: str, *, help: str | None = None, signed: bool = False) -> _Column:
    """A table column of shares 0-1 shown as ``"57.6%"`` (values unchanged: they sort as numbers)."""
    return _column(st.column_config.NumberColumn(label, help=help), lambda x: percent(x, signed=signed))


def percent_of_100_column(label: str, *, help: str | None = None) -> _Column:
    """A table column of values in percent units (0-100) shown as ``"57.6%"``."""
    return _column(st.column_config.NumberColumn(label, help=help), percent_of_100)


def size_column(label: str = "size", *, help: str | None = "billions of parameters; unknown when the data "
                "did not give it") -> _Column:
    """A judge's size column: ``"7B"``, or ``"unknown"`` (not an empty cell, not "None"). The values stay
    numbers, so a click on the header sorts by size ("7B" before "70B"; as text "70B" came first), the
    unknown ones last (they hold infinity: an empty cell would show the table's placeholder)."""
    return _column(st.column_config.NumberColumn(label, help=help), size, missing=UNKNOWN, fill=float("inf"))


def time_column(label: str, *, help: str | None = None) -> _Column:
    """A stored ISO time shown as ``"2026-12-06 11:23:05 UTC"``."""
    return _column(st.column_config.TextColumn(label, help=help), timestamp, as_text=True)


def _plain_number(x: Any) -> str:
    """What Streamlit shows for a number without a format: up to four decimals."""
    if isinstance(x, (bool,)) or not isinstance(x, (int, float)):
        return str(x)
    return f"{x:.4f}".rstrip("0").rstrip(".") if isinstance(x, float) else str(x)


def _pandas_default(x: Any) -> Any:
    """What a ``pandas.Styler`` shows for a cell it has no formatter for (its default formatter)."""
    if pd.api.types.is_float(x) or pd.api.types.is_complex(x):
        return f"{x:.{pd.get_option('styler.format.precision')}f}"
    if pd.api.types.is_integer(x):
        return str(x)
    return x


def _texts(values, text, placeholder: str) -> list:
    """Each cell's text: ``placeholder`` where it is missing (a list cell is not), else ``text(cell)``."""
    return [placeholder if pd.isna(v) is True else text(v) for v in values]


def _styler(frame: pd.DataFrame, display: dict[str, list]):
    """A ``pandas.Styler`` of ``frame`` whose cells read ``display`` (column -> text per row), made for
    ``st.dataframe``: Streamlit takes a Styler's cell texts from its ``_compute`` and ``_translate``, which
    in pandas run every cell through per-cell formatter lookups and HTML bookkeeping (10-20 ms a table,
    paid on every rerun of every page). Here the texts are computed a column at a time, and a column whose
    text is its values' own (text, whole numbers, booleans: what Streamlit shows without a Styler) is
    left out. Streamlit then writes those texts into a copy of the frame turned to text, cell by cell
    (``_use_display_values``, a third of the Profiles page's run); the copy is made here, a column at a
    time, and handed to it (:func:`_display_values_once`). tests/test_app_style.py checks that Streamlit
    receives the texts pandas' own route gives."""
    style = frame.style
    body: list[list[dict]] = [[] for _ in range(len(frame))]
    columns = []
    for c, (name, column) in enumerate(frame.items()):
        texts = display.get(name)
        dtype = column.dtype
        if texts is None or (isinstance(dtype, np.dtype) and dtype.kind in "iub") or (
                dtype.kind == "O" and all(type(t) is str for t in column)):
            columns.append(column.astype(str))  # Streamlit's own text of these cells: str of the value
            continue
        texts = [str(t) for t in texts]
        for r, t in enumerate(texts):
            body[r].append({"id": f"row{r}_col{c}", "display_value": t})
        columns.append(pd.Series(texts, index=frame.index, dtype=_TEXT))
    texts_frame = pd.concat(columns, axis=1, ignore_index=True) if columns else frame.astype(str)
    texts_frame.columns = frame.columns
    translated = {"body": body, "table_styles": [], "cellstyle": [], _DISPLAY_FRAME: texts_frame}
    style._compute = lambda: style  # nothing to apply: no style functions
    style._translate = lambda *args, **kwargs: translated
    return style


#: the dtype of ``frame.astype(str)``'s columns (pandas' text dtype), which Streamlit's copy of the frame has
_TEXT = pd.Series([""]).astype(str).dtype
#: the key, in the styles our Stylers translate to, of their frame of cell texts made beforehand
_DISPLAY_FRAME = "prefdissect_display_frame"


def _display_values_once() -> bool:
    """Let Streamlit take a Styler's frame of cell texts from :func:`_styler` when it made one, instead of
    building it (``pandas_styler_utils._use_display_values``: the frame turned to text, then each cell of
    ``body`` written into it through pandas' ``iloc``, slow on text columns). Other Stylers are built as
    before. False where Streamlit moved it (then every table is built Streamlit's way, as before; the
    texts are the same)."""
    try:
        from streamlit.elements.lib import pandas_styler_utils as psu
    except ImportError:  # pragma: no cover
        return False

    def make(build):
        def use_display_values(df, styles):
            ready = styles.get(_DISPLAY_FRAME) if isinstance(styles, dict) else None
            return build(df, styles) if ready is None else ready
        return use_display_values

    return replace_once(psu, "_use_display_values", "takes_ready_frames", make)


_display_values_once()


def shown(frame: pd.DataFrame, column_config: dict | None, placeholder: str = NOT_APPLICABLE):
    """``frame`` as :func:`dataframe` sends it: columns of this module's kinds formatted (the text
    kinds replaced by their text, the number kinds shown through a ``Styler`` whose values stay
    numbers); ``frame`` itself when it has none."""
    ours = {c: v for c, v in (column_config or {}).items() if isinstance(v, _Column) and c in frame.columns}
    if not ours or frame.empty:
        return frame
    texts = {c: v for c, v in ours.items() if v.as_text}
    if texts:
        frame = frame.assign(**{c: frame[c].map(v.text) for c, v in texts.items()})
    numbers = {c: v for c, v in ours.items() if not v.as_text}
    if not numbers:
        return frame
    filled = {c: v for c, v in numbers.items() if v.fill is not None}
    if not frame.index.is_unique:  # a Styler needs a unique index (the tables hide theirs)
        frame = frame.reset_index(drop=True)
    # a Styler shows every cell through its formatter: the other number columns as Streamlit would, the
    # rest as pandas does by default; an empty cell reads the placeholder in every column
    display = {}
    for col, column in frame.items():  # each column taken once (a frame's column lookup is not free)
        values = column.tolist()
        if col in numbers:
            display[col] = _texts(values, numbers[col].text, numbers[col].missing or placeholder)
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            display[col] = _texts(values, _plain_number, placeholder)
        else:
            display[col] = _texts(values, _pandas_default, placeholder)
    if filled:  # after the texts were taken from the values as they are
        frame = frame.assign(**{c: pd.to_numeric(frame[c]).astype(float).fillna(v.fill) for c, v in filled.items()})
    return _styler(frame, display)


def dataframe(frame: pd.DataFrame, column_config: dict | None = None, *, placeholder: str = NOT_APPLICABLE,
              **kwargs: Any):
    """``st.dataframe`` in the house style: the columns made by this module formatted as they say, and an
    empty cell reading ``placeholder`` ("not applicable"; Streamlit's own is "None")."""
    return st.dataframe(shown(frame, column_config, placeholder), column_config=column_config, placeholder=placeholder,
                        **kwargs)


def agreement_columns() -> dict:
    """The columns of a judge-pair agreement table (Overview, Judges): one wording, one number style."""
    return {"judge_a": "judge", "judge_b": "and judge",
            "shared": st.column_config.NumberColumn("shared samples", help="samples both judges labelled"),
            "agree": st.column_config.NumberColumn("same choice", help="shared samples with the same choice"),
            "rate": percent_column("agreement", help="share of shared samples with the same choice"),
            "chance": percent_column("by chance", help="the agreement two judges with these choice frequencies "
                                                       "reach by chance"),
            "kappa": st.column_config.NumberColumn("Cohen's kappa", format=COEFFICIENT,
                                                   help="(agreement - chance) / (1 - chance): 0 is chance, 1 full"),
            "kappa_lo": st.column_config.NumberColumn("kappa from", format=COEFFICIENT, help="94% interval"),
            "kappa_hi": st.column_config.NumberColumn("kappa to", format=COEFFICIENT, help="94% interval")}


def provenance_columns() -> dict:
    """The columns of a profile-provenance table (Simulator): names people read, the house number style."""
    return {"profile_id": st.column_config.NumberColumn("profile #"), "feature_source": "feature set",
            "n": st.column_config.NumberColumn("samples fitted"), "accuracy": percent_column("held-out accuracy"),
            "fitted_at": "fitted at", "fingerprint": "data fingerprint",
            "draws": st.column_config.NumberColumn("draws used"), "means_only": st.column_config.CheckboxColumn("means only"),
            "imported": st.column_config.CheckboxColumn("imported"),
            "beats_baseline": st.column_config.CheckboxColumn("beats its baseline"),
            "baseline_accuracy": percent_column("baseline accuracy"),
            "unmeasured": st.column_config.ListColumn("not measured"),
            "stale": st.column_config.CheckboxColumn("labels changed since"),
            "pairs": st.column_config.NumberColumn("pairs simulated"),
            "labelled": st.column_config.NumberColumn("labelled pairs"),
            "pairs_fingerprint": "pairs fingerprint",
            "seconds": st.column_config.NumberColumn("seconds", format="%.2f")}
