"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.store import Store

#: Environment variable pointing at the real test data (default: ../shared/data beside the repo).
SHARED_DATA_ENV = "PREFDISSECT_SHARED_DATA"


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
