"""One way to replace a function inside Streamlit, for the few places where its own code does needless work
(the dashboard's tables in ``fmt``; the page tests' AppTest runs in ``tests/stsession``).

Streamlit is pinned (requirements.txt), but a replaced name may move in another version: then nothing is
replaced and Streamlit's own code runs, as before, so a replacement may only ever save work, never change a
result (each has a test that compares it with the original)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def replace_once(owner: Any, name: str, marker: str, make: Callable[[Callable], Callable]) -> bool:
    """Replace ``owner.name`` (a function of a Streamlit module or class) by ``make(original)``, once per
    process. The replacement carries ``marker`` (True, which tests check) and ``__wrapped__`` (the
    original). False where ``owner`` has no ``name``: then nothing is replaced."""
    original = getattr(owner, name, None)
    if original is None:
        return False
    if getattr(original, marker, False):
        return True
    new = make(original)
    setattr(new, marker, True)
    new.__wrapped__ = original
    setattr(owner, name, new)
    return True
