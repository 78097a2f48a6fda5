"""Layers point down only: core never imports streamlit; SQL stays in the store layer."""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def _tree(path: Path, text: str):
    """``path``'s syntax tree, parsed once per content (five tests walk every core module)."""
    import ast

    return ast.parse(text, filename=str(path))


def tree_of(path: Path):
    return _tree(path, path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def fresh_imports() -> dict:
    """What a fresh interpreter has loaded after importing every core module, then the dashboard's
    modules: one interpreter for the two tests below (its start and core's imports are most of
    their cost). Each step reports the streamlit and openai modules it found loaded."""
    modules = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem not in ("__main__",))
    code = (
        "import importlib, json, sys\n"
        "def loaded(name): return [m for m in sys.modules if m == name or m.startswith(name + '.')]\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module('core.' + m if m != '__init__' else 'core')\n"
        "after_core = {'streamlit': loaded('streamlit'), 'openai': loaded('openai')}\n"
        "import dashboard.data, dashboard.workbench, dashboard.charts, core.annotate, core.jobs, core.simulate\n"
        "print(json.dumps({'core': after_core, 'dashboard': {'openai': loaded('openai')}}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_core_never_imports_streamlit():
    assert fresh_imports()["core"]["streamlit"] == [], fresh_imports()


#: SQL in a string: a statement's opening words (upper case, as every query here is written)
SQL_WORDS = re.compile(r"\b(SELECT\b[^\"']*\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM"
                       r"|CREATE\s+(TABLE|(UNIQUE\s+)?INDEX|TRIGGER|VIEW|VIRTUAL)|DROP\s+(TABLE|INDEX|TRIGGER)"
                       r"|ALTER\s+TABLE|PRAGMA\s+\w+|BEGIN\s+IMMEDIATE)\b")
#: methods that run SQL or hand out the connection: sqlite3's, sqlite-utils', pandas', and the
#: Store's generic ``rows`` / ``scalar`` (which take SQL text)
SQL_CALLS = {"execute", "executemany", "executescript", "query", "read_sql", "read_sql_query", "read_sql_table",
             "rows", "scalar"}
#: the store layer: the only modules that may hold SQL
STORE_LAYER = {"core/store.py", "core/migrations.py"}
#: known exceptions, each with its reason (an entry here is a debt, not a licence)
SQL_EXCEPTIONS: set[str] = set()


def _is_text(args: list) -> bool:
    """A first argument that is a string literal or an f-string (SQL text for ``rows(sql)``)."""
    import ast

    return bool(args) and (isinstance(args[0], ast.JoinedStr)
                           or isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
                           or isinstance(args[0], ast.BinOp))


def sql_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Every place in a Python file that runs SQL or holds it: ``file:line: what``."""
    import ast

    rel = path.relative_to(root).as_posix()
    tree = tree_of(path)
    out = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_WORDS.search(node.value):
            what = f"SQL text {SQL_WORDS.search(node.value).group(0)!r}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS \
                and (node.func.attr not in ("rows", "scalar", "query") or _is_text(node.args[:1])):
            what = f".{node.func.attr}(...)"
        elif isinstance(node, ast.Attribute) and node.attr == "conn":
            what = "the connection (.conn)"
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "db":
            what = "a table through .db[...]"
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("sqlite3", "sqlite_utils")
                                                  for a in node.names):
            what = "import " + ", ".join(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("sqlite3", "sqlite_utils"):
            what = f"from {node.module} import ..."
        if what:
            out.append(f"{rel}:{node.lineno}: {what}")
    return sorted(set(out), key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def test_no_sql_in_pages_or_dashboard():
    """Pages and dashboard code ask a core function or the store, never the connection (issue 13)."""
    found = [u for d in ("pages", "dashboard") for p in sorted((ROOT / d).glob("*.py")) for u in sql_uses(p)]
    assert not found, "SQL outside the store layer (move it into a Store method):\n" + "\n".join(found)


def test_no_sql_in_core_outside_the_store_layer():
    """SQL lives in core/store.py (grouped by table) and core/migrations.py only (issue 13)."""
    paths = [p for p in sorted((ROOT / "core").glob("*.py"))
             if p.relative_to(ROOT).as_posix() not in STORE_LAYER | SQL_EXCEPTIONS]
    found = [u for p in paths for u in sql_uses(p)]
    assert not found, "SQL outside the store layer (move it into a Store method):\n" + "\n".join(found)


def test_the_sql_scan_finds_what_it_looks_for(tmp_path):
    """The scan is not blind: each kind of SQL use in a file is reported with its line."""
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import sqlite3\n"
        "x = store.conn.execute('SELECT 1 FROM samples')\n"
        "store.rows(f'SELECT * FROM jobs WHERE id = {i}')\n"
        "store.db['jobs'].insert({})\n"
        "q = 'UPDATE jobs SET status = 1'\n"
        "store.rows_of_jobs(1)  # a typed Store method is fine\n"
        "method = 'DELETE'  # an HTTP verb is not SQL\n")
    found = sql_uses(bad, tmp_path)
    lines = {int(f.split(":")[1]) for f in found}
    assert lines == {1, 2, 3, 4, 5}, found
    assert any("SQL text 'SELECT 1 FROM" in f for f in found), found


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
    # first render does not pay for it (no core module loads it either: they are imported first)
    found = fresh_imports()
    assert found["core"]["openai"] == [], "a core module imports openai at load time"
    assert found["dashboard"]["openai"] == [], "a dashboard module imports openai at load time"


# ------------------------------------------------------------------ the import graph of core/

#: core's layers, bottom first: a module imports only modules of its own layer or below (and no cycle
#: within a layer). Every core module is in exactly one layer.
LAYERS = [
    {"config", "records", "catalogue", "featureset", "prices", "safecsv", "signin", "loopback", "prompts", "intervals"},
    {"migrations"},
    {"store"},
    {"scopes", "features", "heuristics", "llm", "paidwork"},
    {"annotate", "judges", "batch", "importers"},
    {"sampler", "synthetic", "profile", "fit", "compare", "simulate", "bias", "samples"},
    {"demo"},
    {"experiment"},
    {"jobs"},
    {"cli", "__main__", "__init__"},
]


def _core_imports(path: Path) -> dict[str, int]:
    """{core module: first line} that ``path`` imports, at module level or inside a function."""
    import ast

    found: dict[str, int] = {}
    for node in ast.walk(tree_of(path)):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 1:  # from . import x / from .x import y
                names = [a.name for a in node.names] if not node.module else [parts[0]]
            elif node.level == 0 and parts[0] == "core":
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("core.")]
        for n in names:
            found.setdefault(n, node.lineno)
    return found


def _foreign_imports(path: Path) -> list[str]:
    """Top-level packages outside core that ``path`` imports (anywhere in the file)."""
    import ast

    out = []
    for node in ast.walk(tree_of(path)):
        if isinstance(node, ast.Import):
            out += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module.split(".")[0])
    return out


def import_graph(root: Path = ROOT / "core") -> dict[str, dict[str, int]]:
    modules = {p.stem for p in root.glob("*.py")}
    return {p.stem: {m: line for m, line in _core_imports(p).items() if m in modules and m != p.stem}
            for p in sorted(root.glob("*.py"))}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    return [f"core/{m}.py:{line} imports {n} (layer {level[n]}) from layer {level[m]}"
            for m, deps in graph.items() for n, line in deps.items() if level[n] > level[m]]


def test_core_has_no_import_cycle_even_through_function_level_imports():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in core: " + " -> ".join(cycle)


def test_every_core_module_has_a_layer_and_imports_nothing_above_it():
    graph = import_graph()
    layered = set().union(*LAYERS)
    assert set(graph) <= layered, f"core modules without a layer in LAYERS: {sorted(set(graph) - layered)}"
    assert not layer_violations(graph), "\n".join(layer_violations(graph))


def test_core_imports_neither_the_dashboard_nor_the_pages_nor_streamlit():
    bad = {p.name: sorted(set(_foreign_imports(p)) & {"dashboard", "pages", "streamlit"})
           for p in (ROOT / "core").glob("*.py")}
    assert not {k: v for k, v in bad.items() if v}, bad


def test_the_graph_checks_fail_on_a_planted_cycle_and_an_upward_import():
    graph = import_graph()
    planted = {**graph, "store": {**graph["store"], "fit": 1}}  # store -> fit -> ... -> store
    cycle = find_cycle(planted)
    assert cycle and cycle[0] == cycle[-1] and "store" in cycle and "fit" in cycle
    assert any(v.startswith("core/store.py:1 imports fit") for v in layer_violations(planted))
    assert find_cycle({"a": {"b": 3}, "b": {"a": 7}}) in (["a", "b", "a"], ["b", "a", "b"])


def test_annotation_and_judge_collection_share_the_engine_below_them_not_each_other():
    graph = import_graph()
    assert "judges" not in graph["annotate"] and "annotate" not in graph["judges"]
    assert "paidwork" in graph["annotate"] and "paidwork" in graph["judges"] and "paidwork" in graph["batch"]
    assert not {"annotate", "judges"} & (set(graph["paidwork"]) | set(graph["batch"]))
