"""Attacks on a team deployment (issue 12), each run for real: the API key sent to a listener the
operator did not configure, formula cells in every CSV the project writes, password guessing from
several open sessions, a reshaped store handed to restore, and job logs of two stores in one folder.
(Links in names are checked in a real browser: tests/test_browser_security.py.)"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import cli, config, jobs, safecsv
from core.llm import LLMSettings
from core.loopback import LoopbackServer
from core.profile import export_profiles
from core.records import Dataset, ImportBatch, Judge, Label, Sample
from core.store import RestoreError, Store, check_export, export_store, restore_store
from tests.test_safecsv import FORMULAS

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
KEY = "sk-OPERATOR-7c1f0b93e2d4"


# ---------------------------------------------------------------- 1. the key goes only where configured


@pytest.fixture
def key_env(monkeypatch):
    for name in ("PREFDISSECT_LLM_BASE_URL", "OPENAI_BASE_URL", config.LLM_ALLOWED_ENV, config.TYPED_KEY_ENV,
                 "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", KEY)
    return monkeypatch


@pytest.mark.parametrize("url, same", [
    ("https://api.openai.com/v1/", True), ("HTTPS://API.OPENAI.COM:443/v1", True), (None, True), ("", True),
    ("https://api.openai.com.evil.example/v1", False), ("http://api.openai.com/v1", False),
    ("https://api.openai.com/v1@evil.example", False), ("http://127.0.0.1:8000/v1", False),
])
def test_the_key_goes_to_openai_only_when_nothing_else_is_configured(key_env, url, same):
    assert config.key_allowed_for(url) is same
    assert (LLMSettings.from_env(base_url=url).api_key == KEY) is same


def test_the_configured_base_url_and_the_allow_list_get_the_key(key_env):
    key_env.setenv("PREFDISSECT_LLM_BASE_URL", "http://gateway.internal:4000/v1")
    key_env.setenv(config.LLM_ALLOWED_ENV, "https://a.example/v1, http://127.0.0.1:9/v1/")
    assert LLMSettings.from_env().api_key == KEY
    assert LLMSettings.from_env(base_url="http://gateway.internal:4000/v1/").api_key == KEY
    assert LLMSettings.from_env(base_url="http://127.0.0.1:9/v1").api_key == KEY
    assert LLMSettings.from_env(base_url="https://api.openai.com/v1").api_key is None  # not configured any more
    assert LLMSettings.from_env(base_url="http://127.0.0.1:10/v1").api_key is None


def test_a_typed_key_is_used_only_off_the_list(key_env):
    key_env.setenv(config.TYPED_KEY_ENV, "sk-typed-for-this-job")
    assert LLMSettings.from_env(base_url="http://127.0.0.1:9/v1").api_key == "sk-typed-for-this-job"
    assert LLMSettings.from_env().api_key == KEY


def _demo_dataset(store: Store, n: int = 4) -> str:
    samples = [Sample("keytest", f"question {i}?", f"answer A {i}", f"answer B {i}") for i in range(n)]
    store.write_batch(ImportBatch(Dataset("keytest"), samples))
    return "keytest"


def test_a_job_pointed_at_a_listener_sends_it_no_key(tmp_path, key_env):
    """The attack from the probe: a job's base URL set to a listener on 127.0.0.1. The worker runs
    the job through the real client; the listener records every Authorization header it gets."""
    store_path = tmp_path / "store.db"
    with Store(store_path) as s:
        dataset = _demo_dataset(s)
        with LoopbackServer(record=1000) as listener:
            seen: list[str] = []
            listener.set_script(lambda body: "A")
            orig = listener._dispatch

            async def spy(method, target, headers, body):
                seen.append(headers.get("authorization", ""))
                return await orig(method, target, headers, body)

            listener._dispatch = spy
            job = jobs.submit(s, "judge", {"dataset": dataset, "judge": "exfil", "both_orders": False,
                                           "llm": {"model": "loopback-1", "base_url": listener.url}})
            jobs.run(s, job.id)  # the worker's own code path, in this process
        assert seen, "the job sent nothing: the test would prove nothing"
        assert all(KEY not in h for h in seen), "the operator's key reached an unconfigured server"
        assert s.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'exfil'") == 4  # the job did run


def test_the_configured_server_still_gets_the_key(tmp_path, key_env):
    with Store(tmp_path / "store.db") as s, LoopbackServer(api_key=KEY) as server:
        key_env.setenv("PREFDISSECT_LLM_BASE_URL", server.url)
        server.set_script(lambda body: "A")
        job = jobs.submit(s, "judge", {"dataset": _demo_dataset(s), "judge": "ok", "both_orders": False,
                                       "llm": {"model": "loopback-1", "base_url": server.url}})
        jobs.run(s, job.id)
        assert s.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'ok'") == 4  # a 401 would store none


# ---------------------------------------------------------------- 2. formula cells in every CSV
# (core.safecsv's own tests, and the check that every CSV writer goes through it: tests/test_safecsv.py)



def _cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text)) for c in row]


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _assert_inert(text: str) -> None:
    """No cell a spreadsheet would run: only numbers may start with "-" or "+"."""
    for cell in _cells(text):
        assert not cell.startswith(safecsv.FORMULA_LEADS) or _number(cell), repr(cell)


def _hostile_store(path: Path) -> tuple[Store, list[str]]:
    from core import demo, fit

    s = Store(path)
    demo.build_demo(s, fit=False, n_per_group=8)
    src = s.judge_names(demo.DEMO_DATASET)[0]
    rows = s.labels(demo.DEMO_DATASET, [src])
    names = [f"{f} judge{i}" if not f.startswith(("\t", "\r")) else f for i, f in enumerate(FORMULAS)]
    for name in names:
        s.write_labels([Judge(name, "llm")], [Label(r["sample_id"], name, r["choice"]) for r in rows])
    fit.dissect(s, demo.DEMO_DATASET, demo.FEATURE_SOURCE, scopes=["all"], judges=names + [src], folds=0)
    return s, names


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "store.db"
    s, names = _hostile_store(path)
    s.close()
    return path, names


def test_every_csv_the_cli_writes_is_inert(hostile_store, tmp_path, capsys):
    from core import demo

    path, names = hostile_store
    out = tmp_path / "profiles.csv"
    assert cli.main(["--store", str(path), "export-profiles", "--dataset", demo.DEMO_DATASET, "--scope", "all",
                     "-o", str(out)]) == 0
    text = out.read_bytes().decode()
    assert {"'" + n for n in names} <= set(_cells(text))  # every name is there, as quoted text
    _assert_inert(text)
    sim = tmp_path / "similarity.csv"
    assert cli.main(["--store", str(path), "similarity", "--dataset", demo.DEMO_DATASET, "--scope", "all",
                     "--csv", str(sim)]) == 0
    _assert_inert(sim.read_bytes().decode())
    assert {"'" + n for n in names} <= set(_cells(sim.read_bytes().decode()))


def test_every_csv_download_of_the_dashboard_is_inert(hostile_store):
    """The download buttons' content, built by the same functions the pages call."""
    from core import demo
    from dashboard import data

    path, names = hostile_store
    with Store(path) as s:
        rows = s.profiles(dataset=demo.DEMO_DATASET)
    _assert_inert(export_profiles(rows, "csv"))
    matrix = pd.DataFrame([[1.0, 0.5], [0.5, 1.0]], index=names[:2], columns=names[:2])
    _assert_inert(data.csv_download(matrix))
    # st.dataframe's own CSV export cannot be neutralised, so it is switched off
    toml = (ROOT / ".streamlit" / "config.toml").read_text()
    assert "disableDataExport = true" in toml


# ---------------------------------------------------------------- 3. guessing the password
# (core.signin's throttle and token on their own: tests/test_signin.py)


@pytest.fixture
def throttled(team, monkeypatch):
    """The team deployment with a small lockout threshold for one address."""
    from dashboard import auth

    monkeypatch.setenv("PREFDISSECT_SIGNIN_MAX_FAILURES", "3")
    monkeypatch.setenv("PREFDISSECT_SIGNIN_MAX_FAILURES_TOTAL", "50")
    monkeypatch.setenv("PREFDISSECT_SIGNIN_LOCKOUT_S", "120")
    auth._throttle.clear()  # the counter is built with these settings on its next use


def _session() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at


def _submit(at: AppTest, password: str) -> list[str]:
    at.text_input[0].input("mallory")
    at.text_input[1].input(password)
    at.button[0].click()
    at.run()
    return [e.value for e in at.error] + [t.value for t in at.title]


def _attempt(password: str) -> list[str]:
    """One sign-in from a new session."""
    return _submit(_session(), password)


def test_open_sessions_share_the_count_and_the_right_password_is_refused_during_lockout(throttled):
    # three sessions open at once, each showing the sign-in form, then a wrong guess from each. (Their runs take
    # turns: AppTest cannot run scripts from several threads of one process, each run makes and removes Streamlit's
    # process-wide Runtime. The count itself under concurrent failures: tests/test_signin.py.)
    sessions = [_session() for _ in range(3)]
    results = [_submit(at, f"guess-{i}") for i, at in enumerate(sessions)]
    assert all("Wrong password." in r for r in results), results
    # a fourth session, with the right password, straight after: refused, with the lockout named
    shown = _attempt("viewer-pass-123")
    assert any("Too many failed sign-ins" in s for s in shown) and "Sign in" in shown


def test_a_right_password_before_the_lockout_signs_in_and_resets_the_address(throttled):
    assert "Wrong password." in _attempt("nope")
    shown = _attempt("viewer-pass-123")
    assert "Sign in" not in shown


# ---------------------------------------------------------------- 4. restore checks the shape


def _export(tmp_path: Path) -> tuple[Path, Path]:
    live = tmp_path / "store.db"
    with Store(live) as s:
        _demo_dataset(s)
    backup = export_store(live, tmp_path / "backup.db")
    return live, backup


def _sha(path: Path) -> str:
    from tests.conftest import store_sha256

    return store_sha256(path)


@pytest.mark.parametrize("attack, named", [
    ("ALTER TABLE labels ADD COLUMN evil TEXT", "table labels has other columns"),
    ("CREATE TRIGGER steal AFTER INSERT ON samples BEGIN DELETE FROM labels; END", "trigger steal is not ours"),
    ("CREATE VIEW peek AS SELECT * FROM samples", "view peek is not ours"),
    ("DROP INDEX labels_judge", "index labels_judge is missing"),
    ("DROP TRIGGER labels_delete_revision", "trigger labels_delete_revision is missing"),
])
def test_restore_refuses_a_reshaped_store_and_names_the_difference(tmp_path, attack, named):
    live, backup = _export(tmp_path)
    conn = sqlite3.connect(backup)
    conn.execute(attack)
    conn.commit()
    conn.close()
    before = _sha(live)
    with pytest.raises(RestoreError, match=named):
        restore_store(backup, live)
    assert _sha(live) == before
    assert not list(tmp_path.glob("store.before-restore-*"))


def test_restore_refuses_a_table_rebuilt_with_other_columns(tmp_path):
    live, backup = _export(tmp_path)
    conn = sqlite3.connect(backup)
    conn.executescript("DROP TABLE labels; CREATE TABLE labels (sample_id TEXT, judge TEXT, payload BLOB);")
    conn.close()
    with pytest.raises(RestoreError, match="table labels has other columns"):
        check_export(backup)


def test_an_untouched_export_restores(tmp_path):
    live, backup = _export(tmp_path)
    counts, safety = restore_store(backup, live)
    assert counts["samples"] == 4 and safety is not None and safety.exists()


# ---------------------------------------------------------------- 6. job logs beside their own store


def test_two_stores_in_one_folder_keep_their_own_logs(tmp_path):
    a, b = tmp_path / "team-a.db", tmp_path / "team-b.db"
    assert jobs.log_path(a, 1) != jobs.log_path(b, 1)
    assert jobs.log_path(a, 1).parent.parent == tmp_path
    jobs.log_path(a, 1).parent.mkdir()
    jobs.log_path(a, 1).write_text("store a's line\n")
    assert jobs.log_tail(b, 1) == ""
    assert "store a's line" in jobs.log_tail(a, 1)
