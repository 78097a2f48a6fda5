"""The command line: ``core.cli.main`` run in this process on real store files (``run_cli``), plus one
real ``python -m core`` subprocess as a smoke test of the entry point."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import demo
from core.cli import HELP_ORDER
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


def run(*args, store=None, check=True):
    res = run_cli(*args, store=store)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_python_m_core_runs_as_a_program(demo_copy):
    """The one subprocess: the entry point, its --help and one real command on a real store file."""
    def sub(*args):
        return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)

    helped = sub("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m core"), helped.stderr
    assert all(name in helped.stdout for name in HELP_ORDER)
    info = sub("--store", str(demo_copy), "info", "--json")
    assert info.returncode == 0, info.stderr
    assert [d["name"] for d in json.loads(info.stdout)["datasets"]] == [demo.DEMO_DATASET]
    bad = sub("--store", str(demo_copy), "fit", "--dataset", "nope")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: no dataset 'nope'"


def test_demo_then_info(tmp_path, demo_copy):
    store = tmp_path / "new.db"
    out = run("demo", "--no-fit", store=store).stdout
    assert f"demo dataset '{demo.DEMO_DATASET}' (synthetic)" in out and "0 fitted profiles" in out
    info = json.loads(run("info", "--json", store=store).stdout)
    assert info["counts"]["samples"] >= 300
    (ds,) = info["datasets"]
    assert ds["synthetic"] == 1
    assert len(info["judges"]) >= 4
    # a second build adds nothing, and the fitted profiles are counted: on a copy of the session's demo, built
    # as above (core.demo.build_demo, the prebuilt copy) and fitted (each rebuild generates the whole demo
    # again to compare, some 3 CPU s: one rebuild checks both)
    before = json.loads(run("info", "--json", store=demo_copy).stdout)["counts"]
    again = run("demo", store=demo_copy).stdout
    assert "0 samples added" in again and " 0 fitted profiles" not in again and "fitted profiles" in again
    assert json.loads(run("info", "--json", store=demo_copy).stdout)["counts"] == before  # no row of any table


def test_write_prebuilt_makes_only_the_default_demo(tmp_path, monkeypatch):
    """``demo --write-prebuilt`` remakes core/data/demo-prebuilt.sqlite.gz, the default demo: it refuses another
    seed, size or attribute catalogue (one line, exit 2) and leaves the file as it was."""
    before = demo.PREBUILT.read_bytes()
    for extra in (["--seed", "3"], ["--per-group", "5"]):
        res = run("demo", "--write-prebuilt", *extra, store=tmp_path / "s.db", check=False)
        assert res.returncode == 2 and "default demo" in res.stderr, res
    monkeypatch.setenv("PREFDISSECT_ATTRIBUTES", str(tmp_path / "mine.json"))
    res = run("demo", "--write-prebuilt", store=tmp_path / "s.db", check=False)
    assert res.returncode == 2 and "PREFDISSECT_ATTRIBUTES" in res.stderr, res
    assert demo.PREBUILT.read_bytes() == before


def test_import_then_search(tmp_path):
    store = tmp_path / "s.db"
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"query": "Name a volcano", "response_a": "Etna", "response_b": "Mount Fuji is one", "label": "B"},
        {"query": "Capital of France?", "response_a": "Paris", "response_b": "Lyon", "label": "A"},
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = run("import", "generic", data, "--dataset", "mine", "--judge", "me", store=store).stdout
    assert "2 new samples" in out
    assert "0 new samples" in run("import", "generic", data, "--dataset", "mine", "--judge", "me", store=store).stdout
    hits = run("search", "volcano", store=store).stdout
    assert "mine" in hits and "Name a volcano" in hits
    assert "no match" in run("search", "zebra", store=store).stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["import", "nosuchformat", "x.json"], "unknown format"),
        (["import", "generic", "/no/such/file.jsonl"], "no such file"),
        (["labels", "/no/such/labels.json", "--dataset", "d", "--judge", "j"], "no such file"),
        (["import", "generic", "{bad}", "--map", "query"], "KEY=VALUE"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(tmp_path, args, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "response_a": "a"\n')
    args = [str(bad) if a == "{bad}" else a for a in args]
    res = run(*args, store=tmp_path / "s.db", check=False)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr


def test_malformed_file_names_file_row_and_field(tmp_path):
    """Regression: this test once passed on any "2" in the message; it now asserts the file, the row and,
    where a field is at fault, the field."""
    good = '{"query": "q", "response_a": "a", "response_b": "b", "label": "A"}\n'
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + '{"query": "q2", "response_a": "a"\n')  # row 2 is not JSON
    res = run("import", "generic", bad, store=tmp_path / "s.db", check=False)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: bad.jsonl, row 2: invalid JSON at line 2"), res.stderr
    missing = tmp_path / "missing.jsonl"
    missing.write_text(good + '{"query": "q2", "response_a": "a"}\n')  # row 2 has no response_b
    res = run("import", "generic", missing, store=tmp_path / "s.db", check=False)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: missing.jsonl, row 2, field 'response_b': missing"), res.stderr


@pytest.mark.parametrize("name", HELP_ORDER)
def test_every_command_has_help(name):
    res = run_cli(name, "--help")
    assert res.returncode == 0, name
    assert res.stdout.startswith("usage: python -m core " + name), res.stdout[:200]


def test_a_command_starts_without_pandas_and_numpy(demo_copy):
    """A job worker or a command paid ~1 CPU-s at start for pandas and numpy, imported by sqlite-utils only
    for its column-type inference (``core/migrations.py``); a command that does not use them imports neither,
    and an annotation or judge worker imports no pandas or SciPy."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "core", "--store", str(demo_copy), "jobs"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "sqlite_utils" in imported and "core.jobs" in imported
    assert not {"pandas", "numpy"} & imported
    # what an annotation or judge job's worker imports: no pandas, no SciPy (the judges' agreement figures
    # import them where they are computed)
    worker = ("import json, sys, core.jobs, core.annotate, core.judges, core.heuristics;"
              " print(json.dumps(sorted(sys.modules)))")
    res = subprocess.run([sys.executable, "-c", worker], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not {"pandas", "scipy"} & set(json.loads(res.stdout))


def test_the_store_never_asks_sqlite_utils_to_infer_a_column_type(tmp_path, monkeypatch):
    """Why the store may import sqlite-utils with pandas and numpy hidden: their types only ever reach its
    ``COLUMN_TYPE_MAPPING``, read when it infers columns from values, and nothing here gives it one (the
    migrations write SQL, the store its own statements). A demo's build, its annotation and a fit never
    look up a numpy or pandas type there (sqlite-utils' own migrations table looks up int and str)."""
    import sqlite_utils.db

    from core import jobs
    from core.store import Store

    class Watched(dict):
        def __getitem__(self, key):
            assert getattr(key, "__module__", "").split(".")[0] not in ("numpy", "pandas"), \
                f"sqlite-utils inferred a column type from {key!r}"
            return super().__getitem__(key)

        def get(self, key, default=None):
            return self[key] if key in self else default

    monkeypatch.setattr(sqlite_utils.db, "COLUMN_TYPE_MAPPING", Watched(sqlite_utils.db.COLUMN_TYPE_MAPPING))
    with Store(tmp_path / "store.db") as store:
        demo.build_demo(store, n_per_group=3, fit=False)
        for kind, params in [("heuristic", {"dataset": demo.DEMO_DATASET, "scenarios": ["Code"]}),
                             ("fit", {"dataset": demo.DEMO_DATASET, "features": "demo", "scopes": ["all"],
                                      "judges": ["demo-crowd"]})]:
            job = jobs.submit(store, kind, params, total=3)
            assert jobs.claim(store, job.id)
            assert jobs.run(store, job.id).status == "done"
        assert store.scalar("SELECT COUNT(*) FROM profiles WHERE method = 'fast'") == 1
