"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.store import Store

#: Environment variable pointing at the real test data (default: ../shared/data beside the repo).
SHARED_DATA_ENV = "PREFDISSECT_SHARED_DATA"

#: How many samples the default demo generates: its design (pairs per group times the groups), which
#: tests compare with what the store and the pages count.
def demo_samples() -> int:
    from core import catalogue, demo

    return len(catalogue.group_keys()) * demo.N_PER_GROUP


def shared_data_path() -> Path:
    override = os.environ.get(SHARED_DATA_ENV, "").strip()
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (see its README.md); tests that need it skip when it is absent."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path} (set {SHARED_DATA_ENV} to its folder)")
    return path


@pytest.fixture
def store(tmp_path):
    """A fresh, migrated store file in the test's temporary folder."""
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory) -> Path:
    """The demo with its fitted profiles, built once per test session: copy it, never write to it."""
    from core import demo

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    with Store(path) as s:
        demo.build_demo(s)
    return path


@pytest.fixture(scope="session")
def unfitted_demo_file(tmp_path_factory) -> Path:
    """The demo without fitted profiles (for tests that fit, or count what a job writes), built once."""
    from core import demo

    path = tmp_path_factory.mktemp("demo-unfitted") / "demo.db"
    with Store(path) as s:
        demo.build_demo(s, fit=False)
    return path


def store_sha256(path: Path) -> str:
    """The store file's sha256 after folding the WAL in, so the file alone holds every committed write."""
    import hashlib

    with Store(path) as s:
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store_path(demo_file, tmp_path, monkeypatch) -> Path:
    """A private copy of the demo store, made the app's store (``PREFDISSECT_STORE``)."""
    import shutil

    path = tmp_path / "store.db"
    shutil.copy(demo_file, path)
    monkeypatch.setenv("PREFDISSECT_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory, demo_file):
    """One real `streamlit run` for every browser test, on a copy of the fitted demo of its own (a first
    start on an empty store fits the demo in the background, and these tests read its profiles at once).

    Yields (url, store_path). Tests that need special data write it into that store first."""
    import shutil

    from tests import browserkit

    if not (browserkit.CHROMIUM and browserkit.CHROMEDRIVER):
        pytest.skip(browserkit.MARKS[1].kwargs["reason"])
    path = tmp_path_factory.mktemp("browser") / "store.db"
    shutil.copy(demo_file, path)
    proc, url = browserkit.start_streamlit(path)
    yield url, path
    browserkit.stop(proc)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every browser test."""
    from tests import browserkit

    if not (browserkit.CHROMIUM and browserkit.CHROMEDRIVER):
        pytest.skip(browserkit.MARKS[1].kwargs["reason"])
    driver = browserkit.chrome()
    yield driver
    driver.quit()


@pytest.fixture
def team(tmp_path, monkeypatch):
    """A team deployment in password mode (viewer and editor passwords) on an empty store, with a
    fresh count of failed sign-ins (the web process's throttle is shared by every session)."""
    from dashboard import auth

    monkeypatch.setenv("PREFDISSECT_STORE", str(tmp_path / "store.db"))
    monkeypatch.setenv("PREFDISSECT_SEED_DEMO", "0")
    monkeypatch.setenv("PREFDISSECT_PASSWORD", "viewer-pass-123")
    monkeypatch.setenv("PREFDISSECT_EDITOR_PASSWORD", "editor-pass-456")
    monkeypatch.delenv("PREFDISSECT_EDITORS", raising=False)
    auth._throttle.clear()
    yield
    auth._throttle.clear()
