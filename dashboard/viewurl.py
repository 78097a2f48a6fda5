"""Every view a link (issue 17): a page's widget state kept in the URL's query, and restored from it.

A page calls :func:`restore` before each widget it keeps (the widget then starts at the link's value,
when that value is still one of its options) and :func:`keep` once its widgets are read (the URL then
names the view, so copying the address bar shares it). A link's value is applied once: after that the
widgets rule, until the URL changes again (another link followed, the browser's back button). The
Samples page has its own, richer contract (dashboard/sampleurl.py).
"""

from __future__ import annotations

from typing import Iterable

import streamlit as st

_SEEN = "_viewurl_seen"  # query name -> the value last applied from, or written to, the URL


def _url(name: str, many: bool):
    return list(st.query_params.get_all(name)) if many else st.query_params.get(name)


def restore(key: str, name: str, options: Iterable, *, many: bool = False, parse=str) -> bool:
    """Start the widget ``key`` at the URL's ``name`` (several values with ``many``) when the link is
    new and its value is among ``options``; values not among them are dropped (a stale link opens the
    page's default view rather than failing). ``parse`` turns the URL's text into the option's type.
    True when the link's value was applied on this run."""
    url = _url(name, many)
    if not url:
        return False
    seen = st.session_state.setdefault(_SEEN, {})
    if seen.get(name) == url:
        return False
    seen[name] = url
    opts = list(options)
    try:
        if many:
            got = [parse(v) for v in url]
            valid = [v for v in got if v in opts]
            if valid:
                st.session_state[key] = valid
                return True
        else:
            value = parse(url)
            if value in opts:
                st.session_state[key] = value
                return True
    except (TypeError, ValueError):
        pass
    return False


#: the Simulator's success-rate sliders' step, which a link's rate is rounded to (whole percents)
SHARE_STEP = 0.01


def shares(name: str) -> dict[str, float]:
    """``KEY@RATE`` values of a query name as {key: rate in [0, 1]} (the Simulator's success rates), on
    the sliders' step (:data:`SHARE_STEP`)."""
    out, steps = {}, round(1 / SHARE_STEP)
    for v in st.query_params.get_all(name):
        k, _, r = v.partition("@")
        try:
            out[k] = min(1.0, max(0.0, round(float(r) * steps) / steps))
        except ValueError:
            continue
    return out


def keep(params: dict) -> None:
    """Write the view into the URL's query (lists as repeated names; None and empty left out), only
    when it differs from what the URL holds, so a rerun with the same view does not touch history."""
    want = {}
    for name, value in params.items():
        if value is None or value == [] or value == "":
            continue
        want[name] = [str(v) for v in value] if isinstance(value, (list, tuple)) else str(value)
    current = {name: (list(st.query_params.get_all(name)) if isinstance(v, list) else st.query_params.get(name))
               for name, v in want.items()}
    seen = st.session_state.setdefault(_SEEN, {})
    seen.update(want)
    if current == want and set(st.query_params.keys()) == set(want):
        return
    st.query_params.from_dict(want)
