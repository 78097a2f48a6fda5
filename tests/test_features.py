"""Every comparison rule of DESIGN.md step 4, with its edge cases."""

import pytest

from core import catalogue, features
from core.features import compare, length_comparison


def attr(key):
    return catalogue.attribute(key)


@pytest.mark.parametrize(
    "a,b,expected",
    [
        (3, 1, 1), (1, 3, -1), (2, 2, 0), (0, 0, 0),
        (None, 3, 0),  # not rated compares as equal
        (2.5, 2.0, 1),  # means of several ratings
    ],
)
def test_score_rule(a, b, expected):
    assert compare(attr("clear"), a, b) == expected


def test_negated_rule_flips_repetitiveness():
    # A is MORE repetitive, so A is worse on "not repetitive"
    assert compare(attr("non_repetitive"), 3, 1) == -1
    assert compare(attr("non_repetitive"), 0, 2) == 1
    assert compare(attr("non_repetitive"), 1, 1) == 0


@pytest.mark.parametrize("a,b,expected", [(3, 1, 0), (1, 0, 1), (0, 2, -1), (0, 0, 0), (3, 3, 0)])
def test_relevance_counts_only_zero_vs_nonzero(a, b, expected):
    assert compare(attr("relevant"), a, b) == expected


def test_error_rule_counts_per_severity_and_fewer_is_better():
    a = [{"type": "factual", "severity": "severe"}, {"type": "math", "severity": "minor"}]
    b = [{"type": "code", "severity": "minor"}, {"type": "code", "severity": "minor"}]
    assert compare(attr("no_severe_errors"), a, b) == -1  # A has one severe, B none
    assert compare(attr("no_minor_errors"), a, b) == 1  # A has fewer minor errors
    assert compare(attr("no_moderate_errors"), a, b) == 0
    assert compare(attr("no_severe_errors"), None, []) == 0
    # severity matching is case-insensitive
    assert compare(attr("no_moderate_errors"), [{"severity": "Moderate"}], []) == -1


def test_conditional_attributes_are_zero_where_the_case_does_not_apply():
    assert compare(attr("empathetic"), 3, 0, case_applies=False) == 0
    assert compare(attr("empathetic"), 3, 0, case_applies=True) == 1
    # stance support is on -2..2
    assert compare(attr("supports_stances"), -1.5, 0.5, case_applies=True) == -1


@pytest.mark.parametrize(
    "a,b,expected",
    [
        (100, 70, 1),  # exactly 70% and 30 fewer: clearly longer
        (100, 71, 0),  # 71%: not clearly
        (40, 28, 1),  # 70%, 12 fewer
        (30, 21, 0),  # 70% but only 9 fewer (>= 30 words needs 10)
        (20, 12, 1),  # short answers: 60% and 8 fewer
        (20, 13, 0),  # 65%: not enough for short answers
        (6, 3, 1),  # very short: half and 3 fewer
        (4, 2, 0),  # very short: only 2 fewer
        (0, 0, 0),
        (50, 0, 1),
        (12, 50, -1),
    ],
)
def test_length_rule(a, b, expected):
    assert length_comparison(a, b) == expected


def test_length_rule_is_antisymmetric():
    for a in range(0, 80, 3):
        for b in range(0, 80, 7):
            assert length_comparison(a, b) == -length_comparison(b, a)


def test_resolve_builds_all_attributes_in_catalogue_order():
    ra = {"harmless": 3, "repetitive": 2, "relevant": 1, "lengthy": 120,
          "errors": [{"severity": "moderate"}], "empathetic": 3}
    rb = {"harmless": 1, "repetitive": 0, "relevant": 3, "lengthy": 20, "errors": [], "empathetic": 0}
    out = features.resolve("s1", "test", ra, rb, cases={"express_feeling": False})
    assert [f.attribute for f in out] == catalogue.attribute_keys()
    got = {f.attribute: f.value for f in out}
    assert got["harmless"] == 1
    assert got["non_repetitive"] == -1
    assert got["relevant"] == 0
    assert got["no_moderate_errors"] == -1
    assert got["lengthy"] == 1
    assert got["empathetic"] == 0  # case does not apply
    scores = {f.attribute: (f.score_a, f.score_b) for f in out}
    assert scores["no_moderate_errors"] == (1.0, 0.0)  # error counts are kept as the raw scores
    assert not any(f.excluded for f in out)


def test_resolve_marks_non_checkable_samples_excluded():
    out = features.resolve("s1", "test", {}, {}, checkable=False)
    assert all(f.excluded for f in out)
    assert all(f.value == 0 for f in out)
