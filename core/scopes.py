"""Scopes: the slices of a dataset a profile is fitted on, and the one order they are shown in.

A scope is "all" (the whole dataset), a scenario group ("Code"), a query case ("w_stances") or one of
the user's own categories (``category:NAME``, ``store.category_scope``). Reading order everywhere:
"all", the scenario groups, the query cases (catalogue order), then the rest by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from . import catalogue
from .store import CATEGORY_SCOPE, SampleFilter

ALL = "all"


def known() -> list[str]:
    """The scopes every dataset has, in reading order: "all", the scenario groups, the query cases."""
    return [ALL] + catalogue.group_keys() + catalogue.case_keys()


def rank(scope: str) -> tuple[int, str]:
    """Sort key of a scope in reading order (the user's own categories and unknown scopes last, by name)."""
    order = known()
    return (order.index(scope) if scope in order else len(order), scope)


def order(scopes: Iterable[str]) -> list[str]:
    """Scopes in reading order, each once."""
    return sorted(dict.fromkeys(scopes), key=rank)


def is_category(scope: str) -> bool:
    """Whether a scope is one of the user's own categories (``category:NAME``)."""
    return scope.startswith(CATEGORY_SCOPE) and len(scope) > len(CATEGORY_SCOPE)


def parse(scope: str | None) -> str:
    """A profile scope checked against the catalogue: "all" (also for none), a scenario group, a query
    case or one of the user's own categories; ValueError for anything else."""
    if not scope or scope == ALL:
        return ALL
    if scope in catalogue.group_keys() or scope in catalogue.case_keys() or is_category(scope):
        return scope
    raise ValueError(f"unknown scope {scope!r}: use 'all', a scenario group ({', '.join(catalogue.group_keys())}) "
                     f"or a query case ({', '.join(catalogue.case_keys())})")


def sample_filter(f: SampleFilter, scope: str | None) -> SampleFilter:
    """``f`` restricted to a scope's samples (a scenario group, a query case, a category; "all": unchanged)."""
    scope = parse(scope)
    if scope in catalogue.group_keys():
        return dataclasses.replace(f, scenario=scope)
    if scope in catalogue.case_keys():
        return dataclasses.replace(f, case=scope)
    if is_category(scope):
        return dataclasses.replace(f, category=scope[len(CATEGORY_SCOPE):])
    return f


def of_sample(sample: dict[str, Any]) -> list[str]:
    """The scopes a sample belongs to: its scenario group, its query cases, and "all"."""
    cases = sample.get("cases") or {}
    out = [sample["scenario_group"]] if sample.get("scenario_group") else []
    return out + [c for c in catalogue.case_keys() if cases.get(c)] + [ALL]


def to_fit() -> list[str]:
    """The scopes a fit covers unless told otherwise: every scenario group and query case, and "all"
    (the whole dataset: the only scope of data that has no scenario groups yet)."""
    return known()


def fit_choices() -> list[str]:
    """The scopes a user may name for a fit besides "all" and their own categories."""
    return catalogue.group_keys() + catalogue.case_keys()


def beside_cases(present: Iterable[str]) -> list[str]:
    """Of the scopes present, every one but the query cases (in the order given): what similarity is
    computed over when no scopes are named."""
    cases = set(catalogue.case_keys())
    return [s for s in present if s not in cases]


def averaged(present: Iterable[str]) -> list[str]:
    """The scopes the paper averages judge similarity over: the scenario groups present (catalogue
    order); if there are none (a dataset fitted only as "all"), every scope but the query cases."""
    present = list(present)
    groups = [g for g in catalogue.group_keys() if g in present]
    return groups or beside_cases(present)
