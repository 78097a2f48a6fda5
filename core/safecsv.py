"""CSV that is safe to open in a spreadsheet.

Dataset text, judge and model names are untrusted: a cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return is run as a formula by Excel, LibreOffice and Google Sheets
(``=HYPERLINK("http://...")`` sends the sheet's contents anywhere). Every CSV the project writes
goes through ``to_csv`` here, which applies OWASP's recipe: such a cell is prefixed with a single
quote, so the spreadsheet shows the text as text. Numbers stay numbers (a negative weight is a
number cell, not a formula); header and index cells are treated like any other cell.
"""

from __future__ import annotations

import csv
from typing import Any

import pandas as pd

#: the first characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection)
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading quote when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_LEADS):
        return "'" + value
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells, column names and index labels are all neutralised."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(safe_cell)
    out.columns = [safe_cell(c) for c in out.columns]
    if isinstance(out.index, pd.MultiIndex):
        out.index = pd.MultiIndex.from_tuples([tuple(safe_cell(v) for v in t) for t in out.index],
                                              names=[safe_cell(n) for n in out.index.names])
    else:
        out.index = pd.Index([safe_cell(v) for v in out.index], name=safe_cell(out.index.name))
    return out


def to_csv(frame: pd.DataFrame, path=None, **kwargs: Any) -> str | None:
    """``frame.to_csv`` with every formula-leading cell neutralised and every text cell in double
    quotes (OWASP's recipe; a quoted cell also keeps a stray line break inside its row). Numbers
    stay unquoted. The only CSV writer to use."""
    kwargs.setdefault("quoting", csv.QUOTE_NONNUMERIC)
    return safe_frame(frame).to_csv(path, **kwargs)
