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


def _list(name: str) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in os.environ.get(name, "").split(",") if v.strip())


@dataclass(frozen=True)
class Access:
    """Who may do what on a shared deployment (see dashboard/auth.py).

    Open (every visitor an editor) unless a sign-in is configured: OIDC through Streamlit's
    ``[auth]`` secrets, or a shared password. Passwords are compared, never shown or logged."""

    #: shared password every team member signs in with (viewers)
    password: str = field(default_factory=lambda: os.environ.get("PREFDISSECT_PASSWORD", ""), repr=False)
    #: password that makes the session an editor (import, paid jobs); without it, editors are listed
    editor_password: str = field(
        default_factory=lambda: os.environ.get("PREFDISSECT_EDITOR_PASSWORD", ""), repr=False)
    #: sign-in names or e-mails (lower case) that may edit, comma-separated; "*" means everyone
    editors: tuple[str, ...] = field(default_factory=lambda: _list("PREFDISSECT_EDITORS"))


def access() -> Access:
    return Access()


def settings() -> Settings:
    return Settings()
