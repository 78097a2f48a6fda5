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

#: a job's worker runs at least this much lower in CPU priority than the process that starts it (a Unix
#: nice increment): background work never slows a page (a first start renders the Overview while the
#: demo's fit starts beside it)
WORKER_NICE = 10

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


# ---------------------------------------------------------------- where the API key may go

#: the operator's endpoint (the key is configured for it) and any further endpoints the key may reach
LLM_BASE_URL_ENVS = ("PREFDISSECT_LLM_BASE_URL", "OPENAI_BASE_URL")
LLM_ALLOWED_ENV = "PREFDISSECT_LLM_ALLOWED_BASE_URLS"
#: a key typed in a page for one job: handed to that job's worker only (never stored), used only for
#: a base URL the operator did not configure
TYPED_KEY_ENV = "PREFDISSECT_LLM_TYPED_API_KEY"
OPENAI_BASE_URL = "https://api.openai.com/v1"


def normalise_base_url(url: str | None) -> str:
    """One spelling per endpoint, for comparing base URLs: scheme and host lower-cased, default
    ports dropped, no trailing slash, no query or fragment; empty means OpenAI's."""
    from urllib.parse import urlsplit

    raw = (url or "").strip() or OPENAI_BASE_URL
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: no endpoint we would send a key to
        return raw
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def key_base_urls() -> tuple[str, ...]:
    """The endpoints the configured API key may be sent to (normalised): the configured base URL
    (OpenAI's when none is set) and those listed in ``PREFDISSECT_LLM_ALLOWED_BASE_URLS``
    (comma-separated; environment or Streamlit secrets). Nothing a page or job parameters say
    widens this list."""
    configured = next((os.environ[k] for k in LLM_BASE_URL_ENVS if os.environ.get(k, "").strip()), None)
    listed = [u for u in os.environ.get(LLM_ALLOWED_ENV, "").split(",") if u.strip()]
    return tuple(dict.fromkeys(normalise_base_url(u) for u in [configured, *listed]))


def key_allowed_for(base_url: str | None) -> bool:
    """Whether the operator's API key may be sent to ``base_url``."""
    return normalise_base_url(base_url) in key_base_urls()


def settings() -> Settings:
    return Settings()


# ---------------------------------------------------------------- where the store lives

#: environment markers of platforms whose own filesystem does not survive a restart or redeploy
PLATFORM_ENVS = {"DYNO": "Heroku", "RENDER": "Render", "FLY_APP_NAME": "Fly.io", "RAILWAY_ENVIRONMENT": "Railway",
                 "K_SERVICE": "Cloud Run", "KUBERNETES_SERVICE_HOST": "Kubernetes"}
TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


@dataclass(frozen=True)
class StoreLocation:
    """What is wrong with where the store lives: ``error`` (it cannot be written: do not start)
    and ``warnings`` (it can, but may not last)."""

    path: Path
    error: str | None = None
    warnings: tuple[str, ...] = ()


def _platform() -> str | None:
    for name, platform in PLATFORM_ENVS.items():
        if os.environ.get(name):
            return platform
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return "a container"
    return None


def check_store_location(path: Path | None = None) -> StoreLocation:
    """Whether the store can be written where it is, and whether it will outlive a restart.

    Unwritable (the folder cannot be made, or a file cannot be created in it, or the store file is
    read-only) is an error. A temporary folder, or the filesystem the code runs from on a platform
    or in a container (which a redeploy replaces), draws a warning: paid annotations would be lost."""
    path = Path(path) if path is not None else settings().store
    folder = path.expanduser().resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as e:
        return StoreLocation(path, error=f"the store {path} cannot be written ({e.strerror or e}): mount a writable "
                                         f"volume there or point {STORE_ENV} at a writable file")
    warnings = []
    text = str(folder)
    platform = _platform()
    if any(text == t or text.startswith(t + "/") for t in TEMP_DIRS):
        warnings.append(f"the store {path} is in a temporary folder, which the system may empty: point {STORE_ENV} "
                        "at a file on a persistent disk")
    elif platform == "Heroku":
        warnings.append(f"the store {path} is on Heroku's ephemeral filesystem: every restart (at least daily) and "
                        "deploy loses it, and with it every paid annotation; use a platform with a persistent disk")
    elif platform and folder.stat().st_dev == REPO_ROOT.stat().st_dev:
        warnings.append(f"the store {path} is on the same filesystem as the code in {platform}, which a redeploy "
                        f"replaces: mount a persistent volume (e.g. at /data) and set {STORE_ENV}=/data/store.db")
    return StoreLocation(path, None, tuple(warnings))
