"""core.signin: the failed sign-in throttle and the signed sign-in token. (Guessing through the
dashboard from several open sessions: tests/test_security.py.)"""

import pytest

from core import signin


def test_throttle_delays_grow_and_lock_out_one_address():
    now = [1000.0]
    t = signin.Throttle(per_client=3, overall=100, window_s=60, clock=lambda: now[0])
    delays = [t.failure("1.2.3.4") for _ in range(3)]
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert t.locked_for("1.2.3.4") == pytest.approx(60)
    assert t.locked_for("5.6.7.8") == 0  # another address is not locked out by this one
    now[0] += 61
    assert t.locked_for("1.2.3.4") == 0  # the window passed


def test_throttle_counts_all_addresses_together():
    now = [0.0]
    t = signin.Throttle(per_client=100, overall=5, window_s=30, clock=lambda: now[0])
    for i in range(5):
        t.failure(f"10.0.0.{i}")
    assert t.locked_for("10.0.0.99") > 0  # a distributed guess gets no more tries than one client


def test_throttle_loses_no_failure_counted_from_many_threads_at_once():
    """Sessions are threads of one web process: failures recorded at once from many threads are all counted
    (the overall lockout falls exactly at its threshold, never later)."""
    import threading

    for overall, locked in ((400, True), (401, False)):
        t = signin.Throttle(per_client=10_000, overall=overall, window_s=600)
        start = threading.Barrier(8)

        def guess(i):
            start.wait()
            for _ in range(50):
                t.failure(f"10.0.{i}.1")

        threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert (t.locked_for("10.9.9.9") > 0) is locked, overall


def test_the_sign_in_token_is_signed_bounded_and_holds_no_password(monkeypatch):
    monkeypatch.setenv(signin.SECRET_ENV, "a-long-operator-secret")
    tok = signin.make_token("ann", "editor", password="pw-view", editor_password="pw-edit", now=1000, ttl=60)
    assert "pw-view" not in tok and "pw-edit" not in tok
    assert signin.read_token(tok, password="pw-view", editor_password="pw-edit", now=1010) == ("ann", "editor")
    assert signin.read_token(tok, password="pw-view", editor_password="pw-edit", now=1061) is None  # expired
    assert signin.read_token(tok, password="changed", editor_password="pw-edit", now=1010) is None  # new password
    payload, sig = tok.split(".")
    forged = signin.make_token("ann", "viewer", password="pw-view", editor_password="pw-edit", now=1000, ttl=60)
    assert signin.read_token(forged.split(".")[0] + "." + sig, password="pw-view", editor_password="pw-edit",
                             now=1010) is None  # a payload with another's signature
    monkeypatch.setenv(signin.SECRET_ENV, "another-secret")
    assert signin.read_token(tok, password="pw-view", editor_password="pw-edit", now=1010) is None
    monkeypatch.setenv(signin.SECRET_ENV, "a-long-operator-secret")
    signin.revoke(tok)
    assert signin.read_token(tok, password="pw-view", editor_password="pw-edit", now=1010) is None  # signed out
