"""Bad input through the CLI: malformed uploads and malformed arguments each get one clear
`error:` line (naming file, row and field for uploads) and leave the store byte for byte as it was.

The same 48 malformed files are checked against the importer API in test_importers.py; here they go
through `python -m core import/labels` as a user would send them, beside wrong arguments to every
command that writes."""

from __future__ import annotations

import re

import shutil

import pytest

from core import cli
from core.importers import import_file
from core.store import Store
from tests.conftest import copy_store, store_sha256
from tests.test_importers import BAD, jsonl, seed_ids

UPLOADS = [c for c in BAD if not c.options and c.fmt != "nope"]

# (id, arguments, a fragment the error must contain); {tmp} is the test's folder
ARGUMENTS = [
    ("fit-unknown-dataset", "fit --dataset nope", "no dataset 'nope'"),
    ("fit-unknown-scope", "fit --dataset demo-synthetic --scopes Cooking", "unknown scope(s) 'Cooking'"),
    ("fit-unknown-judge", "fit --dataset demo-synthetic --judges nobody", "no labels from judge(s) 'nobody'"),
    ("fit-unknown-features", "fit --dataset demo-synthetic --features nope", "has no features from 'nope'"),
    ("fit-negative-prior", "fit --dataset demo-synthetic --prior-scale -1", "prior_scale must be positive"),
    ("fit-negative-folds", "fit --dataset demo-synthetic --folds -3", "--folds: must be 0 or more"),
    ("fit-unknown-method", "fit --dataset demo-synthetic --method magic", "invalid choice: 'magic'"),
    ("fit-missing-dataset", "fit", "the following arguments are required: --dataset"),
    ("annotate-unknown-dataset", "annotate --dataset nope --estimate-only", "no samples in dataset 'nope'"),
    ("annotate-unknown-scenario", "annotate --dataset demo-synthetic --scenario Cooking --estimate-only",
     "with scenario 'Cooking'"),
    ("annotate-negative-budget", "annotate --dataset demo-synthetic --budget -5", "--budget: must be more than 0"),
    ("annotate-zero-limit", "annotate --dataset demo-synthetic --limit 0", "--limit: must be 1 or more"),
    ("annotate-text-budget", "annotate --dataset demo-synthetic --budget ten", "expected an amount in USD"),
    ("annotate-zero-timeout", "annotate --dataset demo-synthetic --timeout 0", "--timeout: must be more than 0"),
    ("annotate-text-timeout", "annotate --dataset demo-synthetic --timeout soon", "expected a number of seconds"),
    ("judge-negative-retries", "judge --dataset demo-synthetic --judge j --max-retries -1",
     "--max-retries: must be 0 or more"),
    ("judge-missing-name", "judge --dataset demo-synthetic", "required: --judge"),
    ("jobs-cancel-unknown", "jobs --cancel 999", "no job 999"),
    ("jobs-resume-unknown", "jobs --resume 999", "no job 999"),
    ("worker-unknown-job", "worker 99999", "no job 99999"),
    ("labels-unknown-dataset", "labels {tmp}/three.json --dataset nope --judge j", "dataset 'nope' has no samples"),
    ("labels-missing-file", "labels {tmp}/missing.json --dataset seed --judge j", "missing.json: no such file"),
    ("labels-bad-kind", "labels {tmp}/three.json --dataset seed --judge j --kind robot", "invalid choice: 'robot'"),
    ("import-missing-file", "import generic {tmp}/missing.jsonl", "missing.jsonl: no such file"),
    ("import-unknown-format", "import nope {tmp}/ok.jsonl", "unknown format 'nope'"),
    ("import-bad-map", "import generic {tmp}/ok.jsonl --map query", "--map must look like KEY=VALUE"),
    ("import-bad-seed", "import generic {tmp}/ok.jsonl --seed notanumber", "invalid int value: 'notanumber'"),
    ("import-unknown-option", "import generic {tmp}/ok.jsonl --opt colums=x", "unknown option 'colums'"),
    ("import-bad-pairs", "import generic {tmp}/ok.jsonl --pairs sideways", "invalid choice: 'sideways'"),
    ("import-mapped-column-missing", "import generic {tmp}/ok.jsonl --map query=prompt", "field 'prompt'"),
    ("search-empty", "search ''", "nothing to search for"),
    ("search-zero-limit", "search word --limit 0", "--limit: must be 1 or more"),
    ("restore-not-a-database", "restore {tmp}/notes.txt", "notes.txt: not an SQLite database"),
    ("restore-missing", "restore {tmp}/missing.db", "missing.db: no such file"),
    ("export-over-existing", "export {tmp}/notes.txt", "notes.txt exists"),
    ("profiles-import-missing-dir", "profiles --import {tmp}/nowhere", "no such directory"),
    ("demo-zero-per-group", "demo --per-group 0", "--per-group: must be 1 or more"),
    ("unknown-command", "frobnicate", "invalid choice: 'frobnicate'"),
    ("unknown-flag", "info --bogus", "unrecognized arguments: --bogus"),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, unfitted_demo_file):
    """The demo plus a three-sample dataset 'seed' (the upload cases' labels refer to it)."""
    folder = tmp_path_factory.mktemp("bad")
    path = copy_store(unfitted_demo_file, folder / "store.db")
    seed = folder / "seed.jsonl"
    seed.write_text(jsonl(*({"query": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(3))))
    with Store(path) as s:
        import_file(s, "generic", seed)
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def store_file(pristine, tmp_path):
    path = tmp_path / "store.db"
    shutil.copy(pristine, path)
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse reports usage errors by exiting with 2
        code = e.code
    return code, capsys.readouterr().err


def one_clear_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines, "nothing was printed to stderr"
    # a file with several problems lists each on its own "error: " line after a count: the first names the first
    problems = [line for line in lines if line.startswith("error: ") and not re.search(r": \d+ problems$", line)]
    last = problems[0] if problems else lines[-1]
    assert last.startswith("error: ") or ": error: " in last, err
    assert "Traceback" not in err
    return last


@pytest.mark.parametrize("case", UPLOADS, ids=[c.id for c in UPLOADS])
def test_malformed_upload_through_the_cli(case, store_file, tmp_path, capsys):
    before = store_sha256(store_file)
    written = []
    for name, content in case.files.items():
        if callable(content):
            content = content(seed_ids())
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        written.append(tmp_path / name)
    if case.labels:
        argv = ["--store", str(store_file), "labels", str(written[0]), "--dataset", "seed", "--judge", "uploaded"]
    else:
        argv = ["--store", str(store_file), "import", case.fmt, str(written[0])]
    code, err = run_cli(argv, capsys)
    assert code == 2
    line = one_clear_error(err)
    assert (case.file or written[0].name) in line
    if case.row is not None:
        assert f"row {case.row}" in line
    if case.field is not None:
        assert f"field {case.field!r}" in line
    assert case.message.split("\n")[0][:40] in line
    assert store_sha256(store_file) == before


@pytest.mark.parametrize("case_id, args, fragment", ARGUMENTS, ids=[a[0] for a in ARGUMENTS])
def test_malformed_arguments(case_id, args, fragment, store_file, tmp_path, capsys):
    (tmp_path / "three.json").write_text('["A", "B", "A"]')
    (tmp_path / "ok.jsonl").write_text(jsonl({"query": "q", "response_a": "a", "response_b": "b"}))
    (tmp_path / "notes.txt").write_text("not a database")
    before = store_sha256(store_file)
    import shlex
    argv = ["--store", str(store_file)] + shlex.split(args.format(tmp=tmp_path))
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert fragment in one_clear_error(err)
    assert store_sha256(store_file) == before
    assert not list(tmp_path.glob("*.before-restore-*"))


def test_the_corpus_is_large_enough():
    assert len(UPLOADS) + len(ARGUMENTS) >= 30
