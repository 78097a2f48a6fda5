"""Docs are tested: the README commands are the ones CI runs; every CLI command has help;
every page file is registered in the navigation."""

import ast
import re
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


def test_every_cli_command_is_in_the_readme():
    """(That every command has help: tests/test_cli.py runs each ``--help`` in process.)"""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"demo", "import", "labels", "info", "search"} <= set(sub.choices)
    readme = (ROOT / "README.md").read_text()
    for name in sub.choices:
        assert f"python -m core {name}" in readme, f"README does not document `python -m core {name}`"


def registered_pages(app_source: str) -> list[str]:
    """The page files of the ``st.Page(...)`` calls in the list that ``st.navigation(...)`` is given, read
    from the parsed code (a commented-out or unused page is not registered)."""
    tree = ast.parse(app_source)
    nav = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "st.navigation"]
    assert len(nav) == 1 and isinstance(nav[0].args[0], ast.Name), "expected one st.navigation(PAGES) call"
    name = nav[0].args[0].id
    (lst,) = [n.value for n in tree.body if isinstance(n, ast.Assign)
              and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]
    files = []
    for call in lst.elts:
        assert isinstance(call, ast.Call) and ast.unparse(call.func) == "st.Page", ast.unparse(call)
        path = call.args[0]  # ROOT / "pages" / "name.py"
        assert isinstance(path, ast.BinOp) and isinstance(path.right, ast.Constant), ast.unparse(path)
        assert isinstance(path.left, ast.BinOp) and ast.unparse(path.left.right) == "'pages'", ast.unparse(path)
        files.append(path.right.value)
    return files


def test_every_page_file_is_registered_in_navigation():
    pages = registered_pages((ROOT / "dashboard" / "app.py").read_text())
    for page in (ROOT / "pages").glob("*.py"):
        assert page.name in pages, f"{page.name} is not in st.navigation"


def test_a_commented_out_page_is_not_registered():
    """Regression: the check above once passed on the file name appearing anywhere in app.py, a comment too."""
    app = (ROOT / "dashboard" / "app.py").read_text()
    line = next(ln for ln in app.splitlines() if '"samples.py"' in ln)
    assert "samples.py" in registered_pages(app)
    assert "samples.py" not in registered_pages(app.replace(line, "    # " + line.lstrip()))


def test_procfile_runs_streamlit_on_port():
    line = (ROOT / "Procfile").read_text().strip()
    assert line.startswith("web: python -m core preflight && streamlit run dashboard/app.py")
    assert "$PORT" in line and "0.0.0.0" in line and "--server.headless true" in line
