"""Team deployment: the Procfile command serves the app on $PORT, and the store can be exported
(a consistent copy while it is written) and restored (checked first, previous contents kept)."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from core import cli
from core.records import Dataset, ImportBatch, Judge, Label, Sample
from core.store import RestoreError, Store, check_export, export_store, restore_store
from tests import browserkit
from tests.conftest import store_sha256
from tests.stsession import Session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store_file(unfitted_demo_file, tmp_path):
    path = tmp_path / "store.db"
    shutil.copy(unfitted_demo_file, path)
    return path


def test_procfile_command_serves_health_and_the_overview_on_port(store_file):
    line = (ROOT / "Procfile").read_text().strip()
    command = line.removeprefix("web:").strip()
    port = browserkit.free_port()
    env = {**os.environ, "PORT": str(port), "PREFDISSECT_STORE": str(store_file),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        browserkit.wait_healthy(url, proc)
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            assert r.status == 200 and r.read().strip() == b"ok"
        with urllib.request.urlopen(url + "/", timeout=5) as r:
            assert r.status == 200 and b'id="root"' in r.read()
        with Session(url) as session:  # the Overview page itself, as a browser tab would run it
            run = session.run("")
        assert run.status == "ok" and not run.exceptions
        assert "Overview" in run.texts and "Samples per scenario group" in run.texts
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(15)


def test_export_while_writing_is_a_consistent_snapshot(store_file, tmp_path):
    """A writer commits 50 labels per transaction while we export: every copy holds whole
    transactions only, and passes SQLite's integrity check."""
    with Store(store_file) as s:
        ids = s.sample_ids("demo-synthetic")
    base = len(ids) * 4
    stop = threading.Event()

    def write() -> None:
        with Store(store_file) as s:
            n = 0
            while not stop.is_set() and n < 40:
                judge = f"writer-{n}"
                s.write_labels([Judge(judge, "llm")], [Label(i, judge, "A") for i in ids[:50]])
                n += 1

    t = threading.Thread(target=write)
    t.start()
    copies = []
    try:
        for k in range(5):
            copies.append(export_store(store_file, tmp_path / f"copy-{k}.db"))
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    for c in copies:
        counts = check_export(c)
        assert (counts["labels"] - base) % 50 == 0
        assert counts["judges"] - 4 == (counts["labels"] - base) // 50
        assert not Path(str(c) + "-wal").exists()


def test_restore_brings_back_the_export_and_keeps_the_previous_contents(store_file, tmp_path):
    export = export_store(store_file, tmp_path / "export.db")
    with Store(store_file) as s:
        s.write_batch(ImportBatch(Dataset("added-later"), samples=[Sample("added-later", "q", "a", "b")]))
        assert s.scalar("SELECT COUNT(*) FROM samples") == 551
    counts, safety = restore_store(export, store_file)
    assert counts["samples"] == 550
    with Store(store_file) as s:
        assert s.scalar("SELECT COUNT(*) FROM samples") == 550
        assert s.scalar("PRAGMA journal_mode") == "wal"
    with Store(safety) as s:
        assert s.scalar("SELECT COUNT(*) FROM samples WHERE dataset = 'added-later'") == 1


def test_restore_on_an_open_store_is_seen_by_its_other_connections(store_file, tmp_path):
    reader = Store(store_file)
    assert reader.scalar("SELECT COUNT(*) FROM samples") == 550
    empty = tmp_path / "empty.db"
    Store(empty).close()
    restore_store(empty, store_file)
    assert reader.scalar("SELECT COUNT(*) FROM samples") == 0
    reader.close()


def bad_exports(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    other = tmp_path / "other.db"
    import sqlite3
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    newer = tmp_path / "newer.db"
    Store(newer).close()
    c = sqlite3.connect(newer)
    c.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('prefdissect', 'm999_future', 'x')")
    c.commit()
    c.close()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes((tmp_path / "newer.db").read_bytes()[:3000])
    return {"no such file": tmp_path / "missing.db", "not an SQLite database": text,
            "not a prefdissect store": other, "newer version": newer, "truncated": truncated}


def test_restore_refuses_bad_files_and_changes_nothing(store_file, tmp_path):
    before = store_sha256(store_file)
    for what, path in bad_exports(tmp_path).items():
        with pytest.raises(RestoreError) as err:
            restore_store(path, store_file)
        assert path.name in str(err.value), what
        if what != "truncated":
            assert what in str(err.value)
    assert store_sha256(store_file) == before
    assert not list(store_file.parent.glob("*.before-restore-*"))


def test_cli_export_and_restore(store_file, tmp_path, capsys):
    out = tmp_path / "snap.db"
    assert cli.main(["--store", str(store_file), "export", str(out)]) == 0
    assert "consistent snapshot" in capsys.readouterr().out
    assert cli.main(["--store", str(store_file), "export", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["--store", str(store_file), "restore", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "samples 550" in printed and re.search(r"before-restore-\d{8}T\d{6}Z\.db", printed)
