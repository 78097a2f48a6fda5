"""Password sign-in that resists guessing, and a signed token that keeps a browser signed in.

Pure Python (no Streamlit) so it is tested directly; ``dashboard/auth.py`` uses it.

**Throttle.** Failed sign-ins are counted in the web process across every session: per client
address (where the server knows it) and overall. Each failure from an address makes that address
wait longer before its answer (0.5 s, 1 s, 2 s, ... up to ``max_delay``); ``per_client`` failures
within ``window_s`` lock that address out for ``window_s`` after its last failure, and ``overall``
failures from all addresses together lock every new sign-in out the same way (a distributed guess
gets no more tries than one client, at the price that a flood of wrong passwords also keeps the
team's new sign-ins out for the window; sessions already signed in are not affected). While locked
out, the right password is refused too, so a guess that lands during a lockout teaches nothing.

**Token.** After a successful sign-in the browser keeps a cookie holding a token: the user's name,
role and expiry, signed with HMAC-SHA256 under a key derived from ``PREFDISSECT_COOKIE_SECRET`` and
a hash of the current passwords (changing a password signs every browser out). The token never
contains a password, and it is bounded in time (``PREFDISSECT_SIGNIN_HOURS``). Without a configured
secret a random one is drawn per web process, so tokens last until the server restarts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

COOKIE = "prefdissect_auth"
SECRET_ENV = "PREFDISSECT_COOKIE_SECRET"
HOURS_ENV = "PREFDISSECT_SIGNIN_HOURS"
_PROCESS_SECRET = secrets.token_bytes(32)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


@dataclass
class Throttle:
    """Failed sign-ins, counted across sessions (thread-safe; one per web process)."""

    per_client: int = 5
    overall: int = 20
    window_s: float = 600.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    clock: object = time.monotonic
    _fails: dict[str, deque] = field(default_factory=dict)
    _all: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> "Throttle":
        return cls(per_client=int(_env_float("PREFDISSECT_SIGNIN_MAX_FAILURES", 5)),
                   overall=int(_env_float("PREFDISSECT_SIGNIN_MAX_FAILURES_TOTAL", 20)),
                   window_s=_env_float("PREFDISSECT_SIGNIN_LOCKOUT_S", 600.0))

    def _prune(self, now: float) -> None:
        edge = now - self.window_s
        for q in [*self._fails.values(), self._all]:
            while q and q[0] < edge:
                q.popleft()
        for k in [k for k, q in self._fails.items() if not q]:
            del self._fails[k]

    def locked_for(self, client: str | None) -> float:
        """Seconds until ``client`` may try again (0: it may try now)."""
        now = self.clock()
        with self._lock:
            self._prune(now)
            waits = [0.0]
            q = self._fails.get(client or "?")
            if q is not None and len(q) >= self.per_client:
                waits.append(q[-1] + self.window_s - now)
            if len(self._all) >= self.overall:
                waits.append(self._all[-1] + self.window_s - now)
            return max(waits)

    def failure(self, client: str | None) -> float:
        """Record a failed attempt; returns the delay the answer to it should wait."""
        now = self.clock()
        with self._lock:
            self._prune(now)
            q = self._fails.setdefault(client or "?", deque())
            q.append(now)
            self._all.append(now)
            return min(self.max_delay, self.base_delay * 2 ** (len(q) - 1))

    def success(self, client: str | None) -> None:
        with self._lock:
            self._fails.pop(client or "?", None)


# ---------------------------------------------------------------- the token


def _key(password: str, editor_password: str) -> bytes:
    secret = os.environ.get(SECRET_ENV, "").encode() or _PROCESS_SECRET
    passwords = hashlib.sha256(f"{password}\0{editor_password}".encode()).digest()
    return hmac.new(secret, b"prefdissect-signin|" + passwords, hashlib.sha256).digest()


def ttl_s() -> float:
    return max(60.0, _env_float(HOURS_ENV, 12.0) * 3600.0)


def make_token(name: str, role: str, *, password: str, editor_password: str, now: float | None = None,
               ttl: float | None = None) -> str:
    """``payload.signature``, both URL-safe base64 (nothing a cookie or a script needs to escape)."""
    exp = int((time.time() if now is None else now) + (ttl_s() if ttl is None else ttl))
    payload = base64.urlsafe_b64encode(json.dumps({"n": name, "r": role, "e": exp}).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.new(_key(password, editor_password), payload, hashlib.sha256).digest())
    return payload.decode() + "." + sig.rstrip(b"=").decode()


_revoked: set[str] = set()
_revoked_lock = threading.Lock()


def revoke(token: str) -> None:
    """Refuse this token from now on in this process (sign-out), even if the browser keeps it."""
    with _revoked_lock:
        _revoked.add(token)


def read_token(token: str | None, *, password: str, editor_password: str,
               now: float | None = None) -> tuple[str, str] | None:
    """(name, role) from a valid, unexpired, unrevoked token; None for anything else."""
    if not token or len(token) > 2048 or token.count(".") != 1:
        return None
    with _revoked_lock:
        if token in _revoked:
            return None
    payload, sig = token.split(".")
    want = base64.urlsafe_b64encode(
        hmac.new(_key(password, editor_password), payload.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    if not hmac.compare_digest(want, sig):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        name, role, exp = str(data["n"]), str(data["r"]), float(data["e"])
    except (ValueError, KeyError, TypeError):
        return None
    if exp < (time.time() if now is None else now):
        return None
    return name, role
