"""Docs are tested: the README commands are the ones CI runs; every CLI command has help;
every page file is registered in the navigation."""

import re
import subprocess
import sys
from pathlib import Path

from core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    return [line.strip() for b in blocks for line in b.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_gives_the_two_setup_commands_and_ci_runs_the_test_one():
    cmds = readme_commands()
    start = [c for c in cmds if "streamlit run dashboard/app.py" in c and "pip install -r requirements.txt" in c]
    test = [c for c in cmds if "pytest" in c and "pip install" in c]
    assert len(start) == 1 and len(test) == 1, cmds
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = test[0].replace("pip install -r", "pip install -q -r")
    assert test_cmd in ci or test[0] in ci


def test_every_cli_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"demo", "import", "labels", "info", "search"} <= set(sub.choices)
    for name in sub.choices:
        res = subprocess.run([sys.executable, "-m", "core", name, "--help"], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, name
        assert "usage: python -m core " + name in res.stdout
    readme = (ROOT / "README.md").read_text()
    for name in sub.choices:
        assert f"python -m core {name}" in readme, f"README does not document `python -m core {name}`"


def test_every_page_file_is_registered_in_navigation():
    app = (ROOT / "dashboard" / "app.py").read_text()
    for page in (ROOT / "pages").glob("*.py"):
        assert f'"{page.name}"' in app, f"{page.name} is not in st.navigation"


def test_procfile_runs_streamlit_on_port():
    line = (ROOT / "Procfile").read_text().strip()
    assert line.startswith("web: python -m core preflight && streamlit run dashboard/app.py")
    assert "$PORT" in line and "0.0.0.0" in line and "--server.headless true" in line
