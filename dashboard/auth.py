"""Sign-in and roles, checked in ``app.py`` before any page runs.

Three modes, from the configuration (``core.config.access``):

- **open** (nothing configured: local use): every visitor is an editor.
- **oidc**: Streamlit's ``[auth]`` section exists in ``.streamlit/secrets.toml`` -> ``st.login``.
  Editors are the e-mails in ``PREFDISSECT_EDITORS``; everyone else who signs in is a viewer.
- **password**: ``PREFDISSECT_PASSWORD`` is set -> a sign-in form. The shared password makes a
  viewer; ``PREFDISSECT_EDITOR_PASSWORD`` makes an editor (a typed name is not proof of identity,
  so in this mode the editor list is not consulted unless it is ``*``). Failed attempts are
  counted across sessions, per client address and overall, with a growing delay and a lockout
  (``core.signin.Throttle``); a signed-in browser keeps a signed, expiring token in a cookie, so a
  reload or a shared link does not ask again (``core.signin.make_token``; never the password).

Viewers browse everything; editors also import data and start paid jobs. A session that is not
signed in sees only the sign-in. Passwords are compared in constant time and never shown,
stored or logged.
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass

import streamlit as st

from core import config, signin
from dashboard.render import plain

EDITOR, VIEWER = "editor", "viewer"
_KEY = "auth_user"
_COOKIE_TODO = "auth_cookie_todo"  # ("set", token) after a sign-in, ("clear", token) after a sign-out
_TOKEN = "auth_token"  # the token this session set, revoked when it signs out
_SIGNED_OUT = "auth_signed_out"  # this session signed out: its cookie no longer signs it in
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_\-.]*$")


@st.cache_resource
def _throttle() -> signin.Throttle:
    """One counter of failed sign-ins for the whole web process: every session shares it."""
    return signin.Throttle.from_env()


def _client() -> str | None:
    """The client's address as the server saw it (None where unknown, e.g. in AppTest)."""
    try:
        ip = st.context.ip_address
    except Exception:
        return None
    return ip if isinstance(ip, str) and ip else None


@dataclass(frozen=True)
class User:
    name: str
    role: str
    mode: str

    @property
    def can_edit(self) -> bool:
        return self.role == EDITOR


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def mode() -> str:
    if _oidc_configured():
        return "oidc"
    acc = config.access()
    if acc.password or acc.editor_password:
        return "password"
    return "open"


def _matches(given: str, secret: str) -> bool:
    return bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


def _password_form() -> None:
    acc = config.access()
    st.title("Sign in")
    st.caption("This dashboard is shared by a team. Sign in with the password you were given.")
    with st.form("sign_in"):
        name = st.text_input("Your name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    throttle, client = _throttle(), _client()
    wait = throttle.locked_for(client)
    if wait > 0:
        # refused whatever the password: a guess during a lockout teaches nothing
        st.error(f"Too many failed sign-ins. Try again in {max(1, round(wait / 60))} minute(s).")
        return
    name = " ".join(name.split())[:80] or "anonymous"
    if _matches(password, acc.editor_password):
        role = EDITOR
    elif _matches(password, acc.password):
        role = EDITOR if "*" in acc.editors else VIEWER
    else:
        time.sleep(throttle.failure(client))  # each failure from this address waits longer
        st.error("Wrong password.")
        return
    throttle.success(client)
    st.session_state[_KEY] = User(name, role, "password")
    st.session_state.pop(_SIGNED_OUT, None)
    token = signin.make_token(name, role, password=acc.password, editor_password=acc.editor_password)
    st.session_state[_COOKIE_TODO] = ("set", token)
    st.session_state[_TOKEN] = token
    st.rerun()


def _cookie_user() -> User | None:
    """The user a valid sign-in cookie names (a reload, a new tab, a shared link)."""
    if st.session_state.get(_SIGNED_OUT):
        return None
    try:
        token = st.context.cookies.get(signin.COOKIE)
    except Exception:
        return None
    acc = config.access()
    found = signin.read_token(token, password=acc.password, editor_password=acc.editor_password)
    if found is None or found[1] not in (EDITOR, VIEWER):
        return None
    return User(found[0], found[1], "password")


def _cookie_script() -> None:
    """Set or clear the sign-in cookie in the browser (once, after a sign-in or a sign-out). The
    script holds only the token, whose characters are checked, never data or a password."""
    todo = st.session_state.pop(_COOKIE_TODO, None)
    if not todo:
        return
    action, token = todo
    if action == "set" and _TOKEN_CHARS.match(token):
        value, age = token, int(signin.ttl_s())
    else:
        value, age = "", 0
    st.html(f"<script>document.cookie = '{signin.COOKIE}={value}; Max-Age={age}; Path=/; SameSite=Strict'"
            " + (location.protocol === 'https:' ? '; Secure' : '');</script>",
            unsafe_allow_javascript=True)


def _oidc_user() -> User | None:
    if not st.user.is_logged_in:
        return None
    email = str(st.user.get("email") or st.user.get("name") or "signed in")
    editors = config.access().editors
    role = EDITOR if ("*" in editors or email.lower() in editors) else VIEWER
    return User(email, role, "oidc")


def gate() -> User:
    """The signed-in user; shows only the sign-in (and stops the run) when there is none."""
    m = mode()
    if m == "open":
        return User("local", EDITOR, "open")
    if m == "oidc":
        user = _oidc_user()
        if user is None:
            st.title("Sign in")
            st.caption("This dashboard is shared by a team. Sign in with your organisation's account.")
            st.button("Sign in", type="primary", on_click=st.login)
            st.stop()
    else:
        user = st.session_state.get(_KEY)
        if user is None:
            user = _cookie_user()
            if user is not None:
                st.session_state[_KEY] = user
        if user is None:
            _cookie_script()
            _password_form()
            st.stop()
    with st.sidebar:
        _cookie_script()
        st.caption(f"Signed in as **{plain(user.name)}** ({user.role})")
        if st.button("Sign out", key="sign_out"):
            if m == "oidc":
                st.logout()
            st.session_state.pop(_KEY, None)
            if m == "password":
                st.session_state[_SIGNED_OUT] = True
                try:
                    tokens = [st.context.cookies.get(signin.COOKIE), st.session_state.pop(_TOKEN, None)]
                except Exception:
                    tokens = [st.session_state.pop(_TOKEN, None)]
                for token in filter(None, tokens):
                    signin.revoke(token)
                st.session_state[_COOKIE_TODO] = ("clear", "")
            st.rerun()
    return user


def current() -> User:
    """The user of this session (after ``gate``)."""
    m = mode()
    if m == "open":
        return User("local", EDITOR, "open")
    if m == "oidc":
        return _oidc_user() or User("", VIEWER, "oidc")
    return st.session_state.get(_KEY) or User("", VIEWER, "password")


def can_edit() -> bool:
    return current().can_edit


def require_editor(action: str) -> bool:
    """True for editors; for viewers, says why the action is not offered and returns False."""
    if can_edit():
        return True
    st.info(f"Viewers can browse everything; {action} needs editor access. Ask whoever runs this "
            "deployment to add you to the editors.", icon=":material/lock:")
    return False
