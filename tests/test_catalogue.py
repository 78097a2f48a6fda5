import json

import pytest

from core import catalogue


def test_29_attributes_in_the_papers_order():
    keys = catalogue.attribute_keys()
    assert len(keys) == 29
    assert keys[0] == "harmless" and keys[15] == "non_repetitive" and keys[22] == "no_severe_errors"
    assert keys[-1] == "lengthy"
    for a in catalogue.attributes():
        assert a.definition and a.label and a.rating
        assert a.rule in catalogue.RULES


def test_conditional_attributes_point_at_the_five_cases():
    cases = {c.key: c for c in catalogue.query_cases()}
    assert len(cases) == 5
    conditional = {a.key: a.condition for a in catalogue.attributes() if a.rule == "conditional"}
    assert set(conditional.values()) == set(cases)
    for case in cases.values():
        assert conditional[case.attribute] == case.key


def test_eleven_scenario_groups():
    assert catalogue.group_keys() == [
        "Advice", "Code", "Communication", "Creative Writing", "Daily Tasks", "Exam Questions",
        "Functional Writing", "Knowledge-aware", "NLP Tasks", "Unsafe Queries", "Others",
    ]


def test_every_autoj_scenario_maps_to_one_of_our_groups(shared_data):
    groups = json.loads((shared_data / "autoj" / "scenario_groups.json").read_text())
    fine = [s for names in groups.values() for s in names]
    assert len(fine) == 58
    mapping = catalogue.autoj_mapping()
    for name in fine:
        assert mapping[name] in catalogue.group_keys(), name


@pytest.mark.parametrize(
    "name,group",
    [("code_generation", "Code"), ("Code", "Code"), ("creative writing", "Creative Writing"),
     ("seeking_advice", "Advice"), ("default", "Others"), ("nonsense", None), ("", None), (None, None)],
)
def test_group_for_scenario(name, group):
    assert catalogue.group_for_scenario(name) == group


def test_a_team_can_use_its_own_attribute_file(tmp_path, monkeypatch):
    path = tmp_path / "attrs.json"
    path.write_text(json.dumps([
        {"key": "clear", "label": "clear", "rating": "0-3", "rule": "score", "definition": "d"},
        {"key": "lengthy", "label": "longer", "rating": "words", "rule": "length", "definition": "d"},
    ]))
    monkeypatch.setenv("PREFDISSECT_ATTRIBUTES", str(path))
    assert catalogue.attribute_keys() == ["clear", "lengthy"]


def test_a_bad_attribute_file_is_rejected(tmp_path, monkeypatch):
    path = tmp_path / "attrs.json"
    path.write_text(json.dumps([{"key": "x", "rule": "errors"}]))
    monkeypatch.setenv("PREFDISSECT_ATTRIBUTES", str(path))
    with pytest.raises(catalogue.CatalogueError, match="severity"):
        catalogue.attributes()
