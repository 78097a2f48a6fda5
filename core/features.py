"""Per-response ratings -> the comparison features (-1, 0, +1) that fitting uses.

Each attribute of the catalogue names a rule (see ``core/data/attributes.json``):

- ``score``: +1 when A's rating is higher, -1 when lower, 0 when equal.
- ``negated``: the rating measures the opposite (repetitiveness), so the sign flips.
- ``nonzero``: only "not at all" (0) against "at all" (> 0) counts (relevance).
- ``errors``: counts of errors of the attribute's severity; fewer errors is better.
- ``conditional``: 0 when the query case does not apply, else ``score`` on the (mean) rating.
- ``length``: the word-count rule of :func:`length_comparison`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from . import catalogue
from .records import Feature


def sign(x: float) -> int:
    return (x > 0) - (x < 0)


#: (longest answer below this many words, minimum gap in words, maximum ratio shorter/longer)
LENGTH_TABLE = ((10, 3, 0.5), (30, 5, 0.6), (float("inf"), 10, 0.7))


def length_comparison(words_a: int, words_b: int) -> int:
    """+1 when A is clearly longer, -1 when B is, else 0.

    Clearly longer: the shorter response has at most 70% of the longer one's words and at
    least 10 fewer. Very short answers need a stricter ratio and a smaller gap (LENGTH_TABLE),
    so that "Yes." against "Yes, it is." does not count as a length difference.
    """
    shorter, longer = sorted((int(words_a), int(words_b)))
    if longer == 0 or shorter == longer:
        return 0
    for below, gap, ratio in LENGTH_TABLE:
        if longer < below:
            break
    if longer - shorter >= gap and shorter <= ratio * longer:
        return 1 if words_a > words_b else -1
    return 0


def count_errors(errors: Sequence[Mapping[str, Any]] | None, severity: str) -> int:
    return sum(1 for e in errors or () if str(e.get("severity", "")).lower() == severity)


def compare(attr: catalogue.Attribute, a: Any, b: Any, *, case_applies: bool = True) -> int:
    """The comparison value of one attribute from A's and B's raw values.

    Raw values by rule: numbers for score/negated/nonzero/conditional (None = not rated,
    compares as equal), error lists (dicts with a ``severity``) for errors, word counts for length.
    """
    rule = attr.rule
    if rule == "length":
        return length_comparison(a or 0, b or 0)
    if rule == "errors":
        return sign(count_errors(b, attr.severity) - count_errors(a, attr.severity))
    if rule == "conditional" and not case_applies:
        return 0
    if a is None or b is None:
        return 0
    if rule == "nonzero":
        return sign(int(float(a) > 0) - int(float(b) > 0))
    if rule == "negated":
        return -sign(float(a) - float(b))
    return sign(float(a) - float(b))


def resolve(
    sample_id: str,
    source: str,
    ratings_a: Mapping[str, Any],
    ratings_b: Mapping[str, Any],
    *,
    cases: Mapping[str, bool] | None = None,
    checkable: bool = True,
    provenance: Mapping[str, Any] | None = None,
) -> list[Feature]:
    """All features of one sample from per-response raw values keyed by attribute key.

    A negated attribute's raw value goes under its ``annotated_as`` key (``"repetitive"``). For
    error attributes give the error list under each error attribute's key (or under
    ``"errors"``); for length the word counts under ``"lengthy"``. A sample whose errors could
    not be checked gets every feature marked ``excluded`` (left out of fitting by default).
    """
    cases = cases or {}
    out = []
    for attr in catalogue.attributes():
        key = attr.annotated_as or attr.key
        a = ratings_a.get(key, ratings_a.get("errors") if attr.rule == "errors" else None)
        b = ratings_b.get(key, ratings_b.get("errors") if attr.rule == "errors" else None)
        applies = bool(cases.get(attr.condition)) if attr.rule == "conditional" else True
        value = compare(attr, a, b, case_applies=applies)
        if attr.rule == "errors":
            a, b = count_errors(a, attr.severity), count_errors(b, attr.severity)
        out.append(
            Feature(
                sample_id=sample_id,
                source=source,
                attribute=attr.key,
                value=value,
                score_a=_num(a),
                score_b=_num(b),
                excluded=not checkable,
                provenance=dict(provenance or {}),
            )
        )
    return out


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None
