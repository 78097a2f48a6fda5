"""The name of a feature set: one value type for building, reading, ranking and showing it.

A feature set is one way the 29 attributes of a dataset's pairs were measured; its name is stored
with every feature, profile and job, so names never change:

- ``llm:<model>:<prompt version>`` an LLM annotator (``:both`` when it rated in both orders),
- ``hf:paper`` the paper's own annotations (its Hugging Face layout),
- ``demo`` the synthetic demo's generator,
- ``heuristic:v1`` the offline heuristics,
- ``published`` profiles imported from the paper's released weights (no features),
- anything else a user or an older version stored (kept as it is, kind ``other``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the order in which a default feature set is chosen: the richest measurements first
KIND_RANK = {"llm": 0, "hf": 1, "demo": 2}
_BOTH = ":both"


@dataclass(frozen=True)
class FeatureSet:
    kind: str  # "llm", "hf", "demo", "heuristic", "published" or "other"
    name: str  # the stored name, exactly
    model: str | None = None  # the LLM annotator (llm), the generator (demo)
    version: str | None = None  # the prompt version (llm, demo) or the heuristics' version
    both_orders: bool = False

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, name: str) -> "FeatureSet":
        """The feature set a stored name stands for (any string parses: unknown ones are ``other``)."""
        if name == DEMO.name:
            return DEMO
        if name.startswith("llm:"):
            body = name[len("llm:"):]
            both = body.endswith(_BOTH)
            if both:
                body = body[: -len(_BOTH)]
            model, sep, version = body.rpartition(":")
            if sep and model:
                return cls("llm", name, model, version, both)
            return cls("other", name)
        if name.startswith("hf:"):
            return cls("hf", name)
        if name.startswith("heuristic:"):
            return cls("heuristic", name, version=name[len("heuristic:"):])
        if name == PUBLISHED.name:
            return PUBLISHED
        return cls("other", name)

    @classmethod
    def llm(cls, model: str, prompt_version: str, both_orders: bool = False) -> "FeatureSet":
        """An LLM annotator's feature set."""
        return cls("llm", f"llm:{model}:{prompt_version}" + (_BOTH if both_orders else ""), model, prompt_version,
                   both_orders)

    @classmethod
    def heuristic(cls, version: str = "v1") -> "FeatureSet":
        return cls("heuristic", f"heuristic:{version}", version=version)

    @property
    def rank(self) -> int:
        """Sort key of the default choice: LLM annotations, then the paper's, the demo's, the rest."""
        return KIND_RANK.get(self.kind, len(KIND_RANK))

    @property
    def annotator(self) -> tuple[str, str] | None:
        """(annotator, prompt version) whose answers the features were resolved from, where known:
        an LLM's and the demo generator's; None for the heuristics and the rest (no LLM answers)."""
        if self.kind in ("llm", "demo") and self.model:
            return self.model, self.version or ""
        return None

    @property
    def label(self) -> str:
        """How a feature set is named on a page."""
        if self.kind == "llm":
            return f"LLM {self.model} (prompts {self.version}{', both orders' if self.both_orders else ''})"
        return {"hf": "the paper's annotations", "demo": "the demo's generator",
                "heuristic": f"offline heuristics ({self.version})", "published": "published weights"}.get(
                    self.kind, self.name)


DEMO = FeatureSet("demo", "demo", "demo-generator", "demo-v1")
HF_PAPER = FeatureSet("hf", "hf:paper")
HEURISTIC = FeatureSet.heuristic("v1")
PUBLISHED = FeatureSet("published", "published")


def rank(name: str) -> int:
    """:attr:`FeatureSet.rank` of a stored name."""
    return FeatureSet.parse(name).rank


def richest(names) -> str | None:
    """Of these feature-set names, the default one (the lowest rank; the first given among equals)."""
    names = list(names)
    return sorted(names, key=rank)[0] if names else None


def default(store, dataset: str) -> str | None:
    """The feature set a dataset is fitted, simulated and explained on by default: its richest."""
    return richest(r["source"] for r in store.feature_sources(dataset))


def required(store, dataset: str) -> str:
    """:func:`default`, or a ValueError saying how to get features when the dataset has none."""
    source = default(store, dataset)
    if source is None:
        raise ValueError(f"dataset {dataset!r} has no features yet: run `python -m core annotate --dataset {dataset}` "
                         "(without an LLM configured it uses the offline heuristics)")
    return source
