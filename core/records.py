"""Typed records that cross module boundaries: what importers produce and the store keeps."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

CHOICES = ("A", "B", "tie")
JUDGE_KINDS = ("human", "llm", "gold", "synthetic")

# ---------------------------------------------------------------------------- texts and names

_TRAILING = re.compile(r"[ \t\f\v]+(?=\n)")


def normalise_text(text: str | None) -> str | None:
    """A dataset text as stored and hashed: the same text saved differently is one text.

    A leading byte-order mark is dropped, line endings become "\n" (CRLF and lone CR), trailing
    spaces and tabs are dropped at the end of every line and of the text, and the text is put in
    Unicode normal form C. Leading whitespace and everything else is kept as it was."""
    if not text:
        return text
    if text[0] == "\ufeff":
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if " \n" in text or "\t\n" in text or "\f" in text or "\v" in text:
        text = _TRAILING.sub("", text)
    text = text.rstrip(" \t\n\f\v")
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


#: the longest dataset, judge or model name accepted (characters, after normalisation)
NAME_MAX = 120
#: Unicode categories refused in names: control (Cc), format (Cf: zero-width, bidirectional
#: marks and overrides, soft hyphen), line / paragraph separators, surrogates, private use, unassigned
_BAD_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible formatting (zero-width or bidirectional) character",
                   "Zl": "a line separator", "Zp": "a paragraph separator", "Cs": "a surrogate",
                   "Co": "a private-use character", "Cn": "an unassigned code point"}


class NameError_(ValueError):
    """A dataset, judge or model name that cannot be used (the message says why)."""


def normalise_name(value: Any, what: str = "name") -> str:
    if isinstance(value, str):
        return _normalise_name(value, what)
    raise NameError_(f"the {what} must be a string, not {type(value).__name__}")


@functools.lru_cache(maxsize=65536)  # names repeat on every row of a file: model names, categories
def _normalise_name(value: str, what: str) -> str:
    """A dataset, judge or model name as stored: NFKC (full-width and compatibility forms folded),
    runs of whitespace made one space, trimmed. Refused (``NameError_``, saying which character
    and where): empty, longer than ``NAME_MAX``, or holding control, zero-width, bidirectional or
    other invisible characters, which would make two names look identical or garble a terminal."""
    name = unicodedata.normalize("NFKC", value)
    for i, ch in enumerate(name):
        cat = unicodedata.category(ch)
        if cat in _BAD_CATEGORIES and ch not in "\t\n\r":
            raise NameError_(f"the {what} {ascii(value)[:80]} holds {_BAD_CATEGORIES[cat]} (U+{ord(ch):04X}) at "
                             f"position {i + 1}; names may not contain control or invisible characters")
    name = " ".join(name.split())
    if not name:
        raise NameError_(f"the {what} is empty")
    if len(name) > NAME_MAX:
        raise NameError_(f"the {what} is {len(name):,} characters long; at most {NAME_MAX} are allowed")
    return name


def name_key(name: str) -> str:
    """When two normalised names count as the same name: equal after case folding."""
    return name.casefold()


def sample_id(dataset: str, query: str, response_a: str, response_b: str, occurrence: int = 0) -> str:
    """A stable id from content: the same pair in the same dataset always gets the same id.

    The texts are normalised first (``normalise_text``), so a file saved with other line endings,
    a BOM or trailing spaces gives the same ids. ``occurrence`` separates exact repeats of one pair
    inside a file (the n-th repeat gets n), so that a file with duplicated rows still imports
    every row, and re-importing it adds nothing.
    """
    return _content_id(dataset, normalise_text(query), normalise_text(response_a), normalise_text(response_b),
                       occurrence)


def _content_id(dataset: str, query: str, response_a: str, response_b: str, occurrence: int) -> str:
    h = hashlib.sha256()
    for part in (dataset, query, response_a, response_b, str(occurrence)):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.hexdigest()[:20]


def word_count(text: str | None) -> int:
    return len(text.split()) if text else 0


@dataclass
class Dataset:
    name: str
    source: str = ""
    licence: str = ""
    description: str = ""
    synthetic: bool = False


@dataclass
class Judge:
    name: str
    kind: str  # one of JUDGE_KINDS
    notes: str = ""
    size_b: float | None = None  # parameters in billions, where known

    def __post_init__(self):
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"judge {self.name!r}: kind must be one of {JUDGE_KINDS}, not {self.kind!r}")


@dataclass
class Sample:
    dataset: str
    query: str
    response_a: str
    response_b: str
    model_a: str | None = None
    model_b: str | None = None
    reference: str | None = None
    scenario_group: str | None = None
    scenario: str | None = None
    cases: dict[str, bool] = field(default_factory=dict)  # query-case flags, where known
    turns: int = 1
    source_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    occurrence: int = 0
    id: str = ""

    category: str | None = None  # the user's own category (any taxonomy), as in the data

    #: the id this pair had before texts were normalised (set only when normalising changed them),
    #: so a store imported earlier finds its sample again instead of adding the pair twice
    legacy_id: str | None = None

    def __post_init__(self):
        raw = (self.query, self.response_a, self.response_b)
        self.query = normalise_text(self.query)
        self.response_a = normalise_text(self.response_a)
        self.response_b = normalise_text(self.response_b)
        self.reference = normalise_text(self.reference)
        if not self.id:
            self.id = _content_id(self.dataset, self.query, self.response_a, self.response_b, self.occurrence)
            if raw != (self.query, self.response_a, self.response_b):
                self.legacy_id = _content_id(self.dataset, *raw, self.occurrence)

    def row(self, position: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "position": position,
            "source_id": self.source_id,
            "query": self.query,
            "response_a": self.response_a,
            "response_b": self.response_b,
            "model_a": self.model_a,
            "model_b": self.model_b,
            "reference": self.reference,
            "scenario_group": self.scenario_group,
            "scenario": self.scenario,
            "category": self.category,
            "cases": json.dumps(self.cases, sort_keys=True) if self.cases else None,
            "turns": self.turns,
            "words_a": word_count(self.response_a),
            "words_b": word_count(self.response_b),
            "metadata": json.dumps(self.metadata, sort_keys=True, default=str) if self.metadata else None,
        }


@dataclass
class Label:
    sample_id: str
    judge: str
    choice: str  # "A", "B" or "tie"
    prob_a: float | None = None  # P(judge prefers A), where known
    verdict_ab: str | None = None  # verdict with A shown first
    verdict_ba: str | None = None  # verdict with B shown first, mapped back to A/B
    source: str = ""
    strength_ab: int | None = None  # how strongly, with A shown first: 1 slightly (A>B), 2 clearly (A>>B)
    strength_ba: int | None = None  # the same with B shown first
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. the raw scores behind prob_a, mapped back to A/B

    def __post_init__(self):
        for name in ("choice", "verdict_ab", "verdict_ba"):
            v = getattr(self, name)
            if v is not None and v not in CHOICES:
                raise ValueError(f"label {name} must be one of {CHOICES}, not {v!r}")
        for name in ("strength_ab", "strength_ba"):
            v = getattr(self, name)
            if v is not None and v not in (1, 2):
                raise ValueError(f"label {name} must be 1 (slightly) or 2 (clearly), not {v!r}")
        if self.prob_a is not None and not (0.0 <= self.prob_a <= 1.0):
            raise ValueError(f"label probability must lie in [0, 1], not {self.prob_a!r}")


def choice_from_prob(p: float, eps: float = 1e-9) -> str:
    if p > 0.5 + eps:
        return "A"
    if p < 0.5 - eps:
        return "B"
    return "tie"


_VOTE = {"A": 1.0, "B": 0.0, "tie": 0.5}


def combine_verdicts(verdict_ab: str | None, verdict_ba: str | None) -> tuple[str, float] | None:
    """One label from the verdicts in both presentation orders (already mapped back to A/B).

    P(A) is the mean vote over the orders that gave one (A=1, tie=1/2, B=0); the choice is the
    side with the larger share, a tie when the two orders cancel out. None when neither order
    gave a verdict.
    """
    votes = [_VOTE[v] for v in (verdict_ab, verdict_ba) if v is not None]
    if not votes:
        return None
    p = sum(votes) / len(votes)
    return choice_from_prob(p), p


@dataclass
class Feature:
    sample_id: str
    source: str  # feature set: "demo:truth", "heuristic:v1", "llm:<model>:<prompt version>"
    attribute: str
    value: int  # -1, 0, +1: A worse, equal, better
    score_a: float | None = None
    score_b: float | None = None
    excluded: bool = False  # e.g. errors could not be checked: left out of fitting by default
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportBatch:
    """Everything one import writes, validated before a single byte goes to the store."""

    dataset: Dataset
    samples: list[Sample] = field(default_factory=list)
    judges: list[Judge] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    features: list[Feature] = field(default_factory=list)
    source_file: str = ""


@dataclass
class ImportResult:
    dataset: str
    samples_added: int
    samples_seen: int
    labels_written: int
    judges: list[str]
    features_written: int = 0


# ---------------------------------------------------------------- a judge's size, read off its name

#: "8x7b" (a mixture of experts: 8 x 7) and "70b" / "3.8b", as a token of their own: after the start,
#: a dash, an underscore or another separator (not a letter, digit or dot, so a hash like "3f2b" or the
#: "5b" of "1.5b" is no size), and not followed by a letter ("4bit" is no size)
_MOE_SIZE = re.compile(r"(?<![a-z0-9.])(\d+)x(\d+(?:\.\d+)?)b(?![a-z])")
_SIZE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?![a-z])")


def size_from_name(name: str) -> float | None:
    """Billions of parameters read off a model name ("llama-2-70b-chat" 70, "mistral-8x7b" 56,
    "gpt-neox-20b" 20), or None when the name does not say (gpt-4, zephyr, human)."""
    low = str(name).lower()
    m = _MOE_SIZE.search(low)
    if m:
        return float(m.group(1)) * float(m.group(2))
    m = _SIZE.search(low)
    return float(m.group(1)) if m else None
