"""The catalogues as data: the attributes, the scenario groups, the query-specific cases.

The definitions live in ``core/data/*.json`` (written in our own words) so that a team can
add or drop an attribute without touching the pipeline. Point ``PREFDISSECT_ATTRIBUTES``
at another JSON file with the same shape to use a different attribute set.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

RULES = {"score", "negated", "nonzero", "errors", "conditional", "length"}
SEVERITIES = ("minor", "moderate", "severe")


@dataclass(frozen=True)
class Attribute:
    index: int
    key: str
    label: str
    definition: str
    rating: str
    rule: str
    condition: str | None = None  # query case key, for conditional attributes
    severity: str | None = None  # for error-count attributes
    annotated_as: str | None = None  # for negated attributes (e.g. "repetitive")
    annotated_definition: str | None = None  # what the annotator rates, when it is not the attribute itself

    @property
    def rated_key(self) -> str:
        """The key under which annotators rate it (``repetitive`` for ``non_repetitive``)."""
        return self.annotated_as or self.key

    @property
    def general(self) -> bool:
        """Rated 0-3 for every response (not conditional, not error counts, not length)."""
        return self.rule in ("score", "negated", "nonzero")


@dataclass(frozen=True)
class ScenarioGroup:
    key: str
    description: str


@dataclass(frozen=True)
class QueryCase:
    key: str
    label: str
    description: str
    attribute: str


class CatalogueError(ValueError):
    pass


@lru_cache(maxsize=8)
def _attributes_file(override: str) -> str:
    return str(Path(override) if override else DATA_DIR / "attributes.json")


@lru_cache(maxsize=4)
def _load_attributes(path: str) -> tuple[Attribute, ...]:
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    seen = set()
    for i, row in enumerate(rows):
        key = row.get("key")
        if not key or key in seen:
            raise CatalogueError(f"{path}: attribute {i}: missing or duplicate key {key!r}")
        if row.get("rule") not in RULES:
            raise CatalogueError(f"{path}: attribute {key}: rule must be one of {sorted(RULES)}")
        if row["rule"] == "errors" and row.get("severity") not in SEVERITIES:
            raise CatalogueError(f"{path}: attribute {key}: errors rule needs a severity in {SEVERITIES}")
        if row["rule"] == "conditional" and not row.get("condition"):
            raise CatalogueError(f"{path}: attribute {key}: conditional rule needs a condition")
        seen.add(key)
        out.append(
            Attribute(
                index=i,
                key=key,
                label=row.get("label", key),
                definition=row.get("definition", ""),
                rating=row.get("rating", ""),
                rule=row["rule"],
                condition=row.get("condition"),
                severity=row.get("severity"),
                annotated_as=row.get("annotated_as"),
                annotated_definition=row.get("annotated_definition"),
            )
        )
    return tuple(out)


def attributes() -> tuple[Attribute, ...]:
    """The attributes in feature order (the order of the weight vector)."""
    # the path is built once per setting: this runs in every per-sample loop (a Path and a str of it cost
    # more than the rest of the call)
    return _load_attributes(_attributes_file(os.environ.get("PREFDISSECT_ATTRIBUTES", "").strip()))


def attribute_keys() -> list[str]:
    return [a.key for a in attributes()]


def attribute(key: str) -> Attribute:
    for a in attributes():
        if a.key == key:
            return a
    raise KeyError(f"unknown attribute {key!r}")


@lru_cache(maxsize=1)
def _scenarios() -> dict:
    return json.loads((DATA_DIR / "scenarios.json").read_text(encoding="utf-8"))


def scenario_groups() -> tuple[ScenarioGroup, ...]:
    return tuple(ScenarioGroup(**g) for g in _scenarios()["groups"])


def group_keys() -> list[str]:
    return [g.key for g in scenario_groups()]


def query_cases() -> tuple[QueryCase, ...]:
    return tuple(QueryCase(**c) for c in _scenarios()["cases"])


def case_keys() -> list[str]:
    return [c.key for c in query_cases()]


#: how each comparison rule turns two responses' annotations into the feature (+1 A better, -1 B better,
#: 0 equal), in words; core/features.py implements them
RULE_TEXT = {
    "score": "ratings 0-3 compared: +1 if A's is higher, -1 if lower, 0 if equal",
    "negated": "annotated as the opposite (e.g. repetitiveness) and negated: the response rated lower is better",
    "nonzero": "only zero against non-zero counts: A 3 and B 2 are equal; A 2 and B 0 is +1",
    "errors": "error counts of this severity compared: fewer errors is better (+1 when A has fewer)",
    "conditional": "only where the query analysis found the case (else 0); then the ratings compared",
    "length": "word counts: +1/-1 only when the shorter response is clearly shorter, else 0",
}


def rule_text(attr: Attribute) -> str:
    """How an attribute is compared, in words (for tooltips and the catalogue view)."""
    text = RULE_TEXT.get(attr.rule, attr.rule)
    if attr.condition:
        case = next((c.label for c in query_cases() if c.key == attr.condition), attr.condition)
        text += f" (case: {case})"
    return text


def scope_label(scope: str) -> str:
    """A fit scope as people read it: a query case's label ("explicit constraints (query case)" for
    ``w_constraints``), "all samples" for ``all``; scenario groups and ``category:NAME`` as they are."""
    if scope == "all":
        return "all samples"
    for c in query_cases():
        if c.key == scope:
            return f"{c.label} (query case)"
    return scope


def autoj_mapping() -> dict[str, str]:
    """Fine Auto-J scenario name -> our scenario group."""
    return dict(_scenarios()["autoj_to_group"])


def group_for_scenario(fine: str | None) -> str | None:
    """Our scenario group for a fine scenario name, or for a group name given as is.

    Accepts our group keys in any case and the Auto-J scenario names; returns None for an
    unknown or empty name (the sample is then classified later).
    """
    if not fine:
        return None
    name = str(fine).strip()
    lowered = {g.lower(): g for g in group_keys()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    return autoj_mapping().get(name.lower().replace(" ", "_").replace("-", "_"))

