"""Layers point down only: core never imports streamlit; pages hold no SQL."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_never_imports_streamlit():
    modules = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem not in ("__main__",))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('core.' + m if m != '__init__' else 'core')\n"
        "bad = [m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.')]\n"
        "print(len(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_pages_hold_no_sql():
    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b[^\"']*\b(FROM|INTO|SET)\b")
    for page in (ROOT / "pages").glob("*.py"):
        assert not sql.search(page.read_text()), page.name
        assert "import sqlite" not in page.read_text(), page.name


def test_no_unsafe_html_anywhere():
    needle = "unsafe_allow_html" + "=True"  # spelled apart so this file does not match itself
    for path in list((ROOT / "pages").glob("*.py")) + list((ROOT / "dashboard").glob("*.py")):
        assert needle not in path.read_text().replace(" ", ""), path.name
    # script runs in the page only to set or clear the sign-in cookie (dashboard/auth.py), with
    # nothing in it but a token whose characters are checked
    script = "unsafe_allow_" + "javascript=True"
    users = [p.name for p in list((ROOT / "pages").glob("*.py")) + list((ROOT / "dashboard").glob("*.py"))
             if script in p.read_text().replace(" ", "").replace("\n", "")]
    assert users == ["auth.py"], users


def test_the_dashboard_loads_without_the_openai_sdk():
    # the SDK costs half a second to import; only code that sends a request loads it, so a page's
    # first render does not pay for it
    code = (
        "import sys, dashboard.data, dashboard.workbench, dashboard.charts, core.annotate, core.jobs, core.simulate\n"
        "sys.exit(1 if 'openai' in sys.modules else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, "a dashboard module imports openai at load time\n" + res.stderr
