"""The profile cascade the profile pages open with: dataset -> feature set -> method -> scope -> judges.

Profiles, Similarity and the Simulator each choose a stored profile this way; one widget does it so
that the three agree on what a choice means, how a link restores it (dashboard/viewurl.py) and how
each level narrows the next. The page says where each widget goes, its labels and help, the order of
the levels (the Simulator picks the scope before the method), whether a widget's key carries the
choices above it (so another dataset starts from its own defaults), and its own widget-key prefix
(two pages never share a key).

The options come from an index of stored profiles, one row per profile (columns dataset,
feature_source, method, scope, judge), already in reading order: each level offers its values in
the order they first appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd
import streamlit as st

from dashboard import viewurl

#: the levels, and each one's column in the index
COLUMNS = {"dataset": "dataset", "features": "feature_source", "method": "method", "scope": "scope"}
LABELS = {"dataset": "Dataset", "features": "Features", "method": "Method", "scope": "Scope"}


@dataclass(frozen=True)
class ProfilePick:
    """What the cascade chose: ``scope`` None when the page's "every scope" option is chosen;
    ``in_scope`` the judges with a profile there (the judge options); ``rows`` the index rows of
    the chosen dataset, feature set and method (every scope)."""
    dataset: str
    feature_source: str
    method: str
    scope: str | None
    judges: list[str]
    in_scope: list[str]
    rows: pd.DataFrame = field(repr=False)
    keys: dict[str, str] = field(default_factory=dict)  # level -> the widget key used


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def profile_picker(prefix: str, datasets: Sequence[str], rows_of: Callable[[str], pd.DataFrame], *,
                   levels: Sequence[str] = ("dataset", "features", "method", "scope"),
                   where: dict[str, Any] | None = None, keyed: bool = False,
                   url: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                   helps: dict[str, str] | None = None,
                   formats: dict[str, Callable[[pd.DataFrame], Callable[[Any], str]]] | None = None,
                   every_scope: str | None = None,
                   judges_label: str = "Judges",
                   default_judges: Callable[[list[str]], list[str]] | None = None) -> ProfilePick:
    """Draw the cascade and return the choice.

    ``prefix``: the page's widget-key prefix (``profiles``: keys ``profiles_dataset``, ...);
    ``datasets``: the dataset options; ``rows_of(dataset)``: that dataset's index rows; ``where``:
    a container per level and for ``"judges"`` (default: the page); ``keyed``: each key also names
    the choices above it (``sim_scope|D|F``); ``url``: query names other than the level's own
    (``{"method": "profile"}``); ``formats``: per level, from the level's rows to a format_func;
    ``every_scope``: a first scope option meaning every scope (``scope`` is then None);
    ``default_judges``: from the judge options to the judges chosen at first (default: all). The
    judges' key always names the choices above it, so another view starts from its own judges."""
    where, url, labels, helps, formats = where or {}, url or {}, labels or {}, helps or {}, formats or {}
    chosen: dict[str, Any] = {}
    keys: dict[str, str] = {}
    rows = pd.DataFrame(columns=list(COLUMNS.values()) + ["judge"])
    for level in levels:
        if level == "dataset":
            options = list(datasets)
        else:
            options = _unique(rows[COLUMNS[level]])
            if level == "scope" and every_scope is not None:
                options = [every_scope] + options
        key = f"{prefix}_{level}" + ("".join(f"|{v}" for v in chosen.values()) if keyed else "")
        viewurl.restore(key, url.get(level, level), options)
        fmt = formats[level](rows) if level in formats else str
        value = where.get(level, st).selectbox(labels.get(level, LABELS[level]), options, key=key, format_func=fmt,
                                               help=helps.get(level))
        chosen[level], keys[level] = value, key
        if level == "dataset":
            rows = rows_of(value)
        elif not (level == "scope" and value == every_scope and every_scope is not None):
            rows = rows[rows[COLUMNS[level]] == value]
    scope = chosen.get("scope")
    if every_scope is not None and scope == every_scope:
        scope = None
        chosen["scope"] = None
    method_rows = rows_of(chosen["dataset"])
    method_rows = method_rows[(method_rows["feature_source"] == chosen["features"])
                              & (method_rows["method"] == chosen["method"])]
    in_scope = sorted(set(rows["judge"]))
    judges_key = f"{prefix}_judges" + "".join(f"|{v}" for v in chosen.values())
    viewurl.restore(judges_key, "judge", in_scope, many=True)
    default = None if judges_key in st.session_state else \
        (default_judges(in_scope) if default_judges else in_scope)
    judges = where.get("judges", st).multiselect(judges_label, in_scope, default=default, key=judges_key)
    keys["judges"] = judges_key
    return ProfilePick(dataset=chosen["dataset"], feature_source=chosen["features"], method=chosen["method"],
                       scope=scope, judges=list(judges), in_scope=in_scope, rows=method_rows, keys=keys)
