"""The command line, run as a user would: a subprocess, a real store file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, store=None, check=True):
    cmd = [sys.executable, "-m", "core"]
    if store is not None:
        cmd += ["--store", str(store)]
    res = subprocess.run(cmd + [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_demo_then_info(tmp_path):
    store = tmp_path / "s.db"
    out = run("demo", store=store).stdout
    assert "demo-synthetic" in out and "synthetic" in out
    info = json.loads(run("info", "--json", store=store).stdout)
    assert info["counts"]["samples"] >= 300
    (ds,) = info["datasets"]
    assert ds["synthetic"] == 1
    assert len(info["judges"]) >= 4
    # a second build adds nothing
    assert "0 samples added" in run("demo", store=store).stdout


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
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "response_a": "a", "response_b": "b", "label": "A"}\n{"query": "q2", "response_a": "a"\n')
    res = run("import", "generic", bad, store=tmp_path / "s.db", check=False)
    assert res.returncode != 0
    line = res.stderr.strip()
    assert "bad.jsonl" in line and "2" in line, line
