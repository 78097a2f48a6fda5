"""Settings read from the environment, in one place.

Every knob the engine has is an environment variable with a documented default, so
the same code runs on a laptop, in CI and on a PaaS without edits. Nothing here is
ever written to the store: in particular API keys are read when needed and kept
out of every record, log line and export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Environment variable naming the SQLite store file.
STORE_ENV = "PREFDISSECT_STORE"


def store_path() -> Path:
    """The store file: ``$PREFDISSECT_STORE`` or ``store.db`` at the repository root."""
    raw = os.environ.get(STORE_ENV, "").strip()
    return Path(raw).expanduser() if raw else REPO_ROOT / "store.db"


@dataclass(frozen=True)
class Settings:
    store: Path = field(default_factory=store_path)
    #: seconds a writer waits for a lock before "database is locked"
    busy_timeout_s: float = field(
        default_factory=lambda: float(os.environ.get("PREFDISSECT_BUSY_TIMEOUT", "30"))
    )
    #: build the synthetic demo when the dashboard starts on an empty store
    seed_demo: bool = field(
        default_factory=lambda: os.environ.get("PREFDISSECT_SEED_DEMO", "1") not in ("0", "false", "no")
    )


def settings() -> Settings:
    return Settings()
