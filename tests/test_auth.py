"""Access control (dashboard/auth.py): open locally, a shared password for a team, viewer and
editor roles; a session that is not signed in sees only the sign-in."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    at.button[0].click()
    at.run()
    return at


def everything_shown(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "error", "header", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_not_signed_in_sees_only_the_sign_in(team):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert len(at.text_input) == 2 and not at.metric
    assert "store is empty" not in everything_shown(at)  # the Overview page did not run


def test_wrong_password_is_refused_and_never_echoed(team):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    sign_in(at, "mallory", "guess-789")
    assert any("Wrong password" in e.value for e in at.error)
    assert [t.value for t in at.title] == ["Sign in"]
    assert "guess-789" not in everything_shown(at)


@pytest.mark.parametrize("password, role", [("viewer-pass-123", "viewer"), ("editor-pass-456", "editor")])
def test_the_password_decides_the_role(team, password, role):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    sign_in(at, "ann", password)
    assert not at.exception
    shown = everything_shown(at)
    assert "store is empty" in shown  # the Overview page ran
    assert f"Signed in as **ann** ({role})" in [c.value for c in at.sidebar.caption]
    assert password not in shown


def test_editor_list_star_makes_every_signed_in_user_an_editor(team, monkeypatch):
    monkeypatch.setenv("PREFDISSECT_EDITORS", "*")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    sign_in(at, "bob", "viewer-pass-123")
    assert "Signed in as **bob** (editor)" in [c.value for c in at.sidebar.caption]


def test_sign_out_returns_to_the_sign_in(team):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    sign_in(at, "ann", "viewer-pass-123")
    at.sidebar.button(key="sign_out").click()
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]


def test_open_mode_needs_no_sign_in(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFDISSECT_STORE", str(tmp_path / "store.db"))
    monkeypatch.setenv("PREFDISSECT_SEED_DEMO", "0")
    for name in ("PREFDISSECT_PASSWORD", "PREFDISSECT_EDITOR_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert "Sign in" not in [t.value for t in at.title]
    assert "store is empty" in everything_shown(at)
