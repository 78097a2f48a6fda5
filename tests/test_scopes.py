"""Scopes: one parse, one reading order, the default scopes of a fit and of a similarity."""

import pytest

from core import catalogue, scopes
from core.store import SampleFilter, category_scope

DS = "d"


def test_scope_filter_maps_scopes_to_filters():
    base = SampleFilter(dataset=DS)
    assert scopes.sample_filter(base, "Code").scenario == "Code"
    assert scopes.sample_filter(base, "w_stances").case == "w_stances"
    assert scopes.sample_filter(base, category_scope("bias")).category == "bias"
    assert scopes.sample_filter(base, "all") == scopes.sample_filter(base, None) == base
    with pytest.raises(ValueError):
        scopes.sample_filter(base, "nope")


def test_parse_accepts_the_catalogues_scopes_and_the_users_categories_only():
    assert scopes.parse(None) == scopes.parse("") == scopes.parse("all") == "all"
    assert scopes.parse("Code") == "Code" and scopes.parse("w_mistakes") == "w_mistakes"
    assert scopes.parse(category_scope("x")) == category_scope("x")
    for bad in ("Cooking", category_scope("")):
        with pytest.raises(ValueError, match="unknown scope"):
            scopes.parse(bad)


def test_reading_order_is_all_then_groups_then_cases_then_the_rest_by_name():
    groups, cases = catalogue.group_keys(), catalogue.case_keys()
    mixed = [category_scope("b"), cases[1], groups[3], "all", category_scope("a"), groups[0], cases[0], groups[0]]
    assert scopes.order(mixed) == ["all", groups[0], groups[3], cases[0], cases[1], category_scope("a"),
                                   category_scope("b")]
    assert scopes.known() == ["all", *groups, *cases] == scopes.to_fit()
    assert scopes.fit_choices() == [*groups, *cases]


def test_a_sample_belongs_to_its_group_its_cases_and_all():
    s = {"scenario_group": "Code", "cases": {"w_stances": True, "intent_unclear": False}}
    assert scopes.of_sample(s) == ["Code", "w_stances", "all"]
    assert scopes.of_sample({"scenario_group": None}) == ["all"]


def test_similarity_scopes_two_defaults_with_two_names():
    present = ["all", "w_stances", "Code", "Advice"]
    assert scopes.beside_cases(present) == ["all", "Code", "Advice"]  # every scope but the query cases
    assert scopes.averaged(present) == [g for g in catalogue.group_keys() if g in ("Code", "Advice")]
    assert scopes.averaged(["all", "w_stances"]) == ["all"]  # no groups: every scope but the cases
