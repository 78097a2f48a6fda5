"""Sign-in and roles, checked in ``app.py`` before any page runs.

Three modes, from the configuration (``core.config.access``):

- **open** (nothing configured: local use): every visitor is an editor.
- **oidc**: Streamlit's ``[auth]`` section exists in ``.streamlit/secrets.toml`` -> ``st.login``.
  Editors are the e-mails in ``PREFDISSECT_EDITORS``; everyone else who signs in is a viewer.
- **password**: ``PREFDISSECT_PASSWORD`` is set -> a sign-in form. The shared password makes a
  viewer; ``PREFDISSECT_EDITOR_PASSWORD`` makes an editor (a typed name is not proof of identity,
  so in this mode the editor list is not consulted unless it is ``*``).

Viewers browse everything; editors also import data and start paid jobs. A session that is not
signed in sees only the sign-in. Passwords are compared in constant time and never shown,
stored or logged.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import streamlit as st

from core import config
from dashboard.render import plain

EDITOR, VIEWER = "editor", "viewer"
_KEY = "auth_user"


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
    name = name.strip() or "anonymous"
    if _matches(password, acc.editor_password):
        role = EDITOR
    elif _matches(password, acc.password):
        role = EDITOR if "*" in acc.editors else VIEWER
    else:
        time.sleep(1.0)  # slow down guessing
        st.error("Wrong password.")
        return
    st.session_state[_KEY] = User(name, role, "password")
    st.rerun()


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
            _password_form()
            st.stop()
    with st.sidebar:
        st.caption(f"Signed in as **{plain(user.name)}** ({user.role})")
        if st.button("Sign out", key="sign_out"):
            if m == "oidc":
                st.logout()
            st.session_state.pop(_KEY, None)
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
