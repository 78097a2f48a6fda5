"""The Samples page's state as URL query parameters: read (with a clear message for each bad
value, never an exception) and written back, so a URL reproduces the view.

Parameters: ``id`` (the open sample), ``dataset``, ``scenario``, ``case``, ``category`` (the
user's own, from the data), ``judge`` (lists only
samples that judge labelled, with its choice), ``disagree`` (repeated: judges whose choices
differ), ``attr`` (repeated: attributes on which A and B differ), ``source`` (feature source),
``dir`` (``A`` / ``B``: which response is better on them), ``excluded`` (``1``: keep samples
left out of fitting), ``q`` (full-text search), ``page`` (1-based), ``size``, ``scope`` (the
profile scope of the contributions) and ``vjudge`` (the judge whose contributions are shown,
when not ``judge``).

The contract the Profiles page links with:

- ``/samples?dataset=D&attr=KEY&judge=J&scope=S``: the samples of D in scope S whose feature KEY
  is non-zero, with J's choice as a column;
- ``/samples?id=ID&judge=J&scope=S``: that sample, with J's contributions in scope S.

So ``scope`` also restricts the list (a group: the scenario filter; a query case: the case
filter) when the URL names neither ``scenario`` nor ``case``. ``scenario=any`` says "no scenario
filter" outright; it is written only when a scope is chosen without a filter, so that reading
the URL back gives the same view.

Pure functions (no Streamlit): the page passes in what it needs from the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from core import catalogue, scopes
from core.featureset import richest as default_source  # the set `python -m core fit` picks by default
from core.store import CATEGORY_SCOPE, UNCATEGORISED, UNCLASSIFIED, SampleFilter

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_SIZE = 50
ANY = "any"
PARAMS = ("id", "dataset", "scenario", "case", "judge", "disagree", "attr", "source", "dir", "excluded", "q", "page",
          "size", "scope", "vjudge", "category")


@dataclass(frozen=True)
class State:
    dataset: str | None = None
    scenario: str | None = None
    case: str | None = None
    judge: str | None = None
    disagree: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()
    source: str | None = None
    direction: str | None = None
    excluded: bool = False
    q: str = ""
    page: int = 1
    size: int = DEFAULT_SIZE
    id: str | None = None
    scope: str | None = None
    vjudge: str | None = None
    category: str | None = None  # the user's own category (``UNCATEGORISED``: none)

    def filter(self) -> SampleFilter:
        """What the list shows (``Store.browse``). Attributes need a feature source: without one
        the attribute filter is left out (the page always has one when the dataset has features)."""
        attrs = self.attributes if self.source else ()
        return SampleFilter(dataset=self.dataset, scenario=self.scenario, case=self.case, judge=self.judge,
                            category=self.category,
                            disagree=self.disagree if len(self.disagree) >= 2 else (), attributes=attrs,
                            feature_source=self.source if attrs else None, direction=self.direction if attrs else None,
                            include_excluded=self.excluded, text=self.q.strip() or None)


@dataclass
class Options:
    """What is valid for one dataset: its scenario groups present, labelled judges, feature sources."""

    scenarios: list[str] = field(default_factory=list)
    judges: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # the user's own, when the data brought them


def _values(params: Mapping[str, Any], key: str) -> list[str]:
    v = params.get(key)
    if v is None:
        return []
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]


def _one(params: Mapping[str, Any], key: str) -> str | None:
    vals = _values(params, key)
    return vals[-1] if vals else None


def parse(params: Mapping[str, Any], *, datasets: list[str], dataset_of: Callable[[str], str | None],
          options: Callable[[str], Options]) -> tuple[State, list[str]]:
    """The state a URL asks for, and one message per value that could not be used (that value is
    then left at its default). ``datasets``: the datasets with samples (the first is the default);
    ``dataset_of(id)``: a sample's dataset or None; ``options(dataset)``: what is valid there."""
    problems: list[str] = []
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        problems.append(f"Ignored unknown parameter(s): {', '.join(unknown)}.")
    sample_id = _one(params, "id")
    dataset = _one(params, "dataset")
    if dataset is not None and dataset not in datasets:
        problems.append(f"No dataset {dataset!r} with samples in the store.")
        dataset = None
    if sample_id is not None:
        home = dataset_of(sample_id)
        if home is None:
            problems.append(f"No sample with id {sample_id!r}.")
            sample_id = None
        elif dataset is not None and home != dataset:
            problems.append(f"Sample {sample_id!r} is in dataset {home!r}, not {dataset!r}: showing it there.")
            dataset = home
        else:
            dataset = home
    dataset = dataset or (datasets[0] if datasets else None)
    opts = options(dataset) if dataset else Options()

    scenario = _one(params, "scenario")
    scenario_named = scenario is not None
    if scenario == ANY or scenario == "":
        scenario = None
    elif scenario is not None and scenario not in opts.scenarios and scenario not in catalogue.group_keys() \
            and scenario != UNCLASSIFIED:
        problems.append(f"Unknown scenario group {scenario!r}.")
        scenario = None
    case = _one(params, "case")
    case_named = case is not None
    if case == ANY or case == "":
        case = None
    elif case is not None and case not in catalogue.case_keys():
        problems.append(f"Unknown query case {case!r} (cases: {', '.join(catalogue.case_keys())}).")
        case = None

    category = _one(params, "category")
    if category is not None and category not in opts.categories and category != UNCATEGORISED:
        problems.append(f"Dataset {dataset!r} has no category {category!r}.")
        category = None

    def judge_param(key: str) -> str | None:
        j = _one(params, key)
        if j is not None and j not in opts.judges:
            problems.append(f"Judge {j!r} has no labels on dataset {dataset!r}.")
            return None
        return j or None

    judge, vjudge = judge_param("judge"), judge_param("vjudge")
    disagree = []
    for j in _values(params, "disagree"):
        if j not in opts.judges:
            problems.append(f"Judge {j!r} has no labels on dataset {dataset!r}.")
        elif j not in disagree:
            disagree.append(j)
    if len(disagree) == 1:
        problems.append("Judges that disagree: pick two or more.")
    attrs = []
    for a in _values(params, "attr"):
        if a not in catalogue.attribute_keys():
            problems.append(f"Unknown attribute {a!r}.")
        elif a not in attrs:
            attrs.append(a)
    source = _one(params, "source")
    if source is not None and source not in opts.sources:
        problems.append(f"Dataset {dataset!r} has no features from {source!r}.")
        source = None
    source = source or default_source(opts.sources)
    if attrs and source is None:
        problems.append(f"Dataset {dataset!r} has no comparison features yet, so it cannot be filtered on attributes.")
    direction = _one(params, "dir")
    if direction is not None and direction not in ("A", "B"):
        problems.append(f"dir must be A or B, not {direction!r}.")
        direction = None
    excluded = _one(params, "excluded") in ("1", "true", "yes")

    def positive(key: str, default: int, allowed: tuple[int, ...] | None = None) -> int:
        raw = _one(params, key)
        if raw is None:
            return default
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1 or (allowed and n not in allowed):
            problems.append(f"{key} must be " + (f"one of {', '.join(map(str, allowed))}" if allowed
                                                   else "a whole number from 1") + f", not {raw!r}.")
            return default
        return n

    page, size = positive("page", 1), positive("size", DEFAULT_SIZE, PAGE_SIZES)
    scope = _one(params, "scope")
    if scope is not None and scope.startswith(CATEGORY_SCOPE):
        if scope[len(CATEGORY_SCOPE):] not in opts.categories:
            problems.append(f"Dataset {dataset!r} has no category {scope[len(CATEGORY_SCOPE):]!r}.")
            scope = None
        elif category is None:
            category = scope[len(CATEGORY_SCOPE):]
    elif scope is not None:
        if scope not in scopes.known():
            problems.append(f"Unknown scope {scope!r}: use all, a scenario group or a query case.")
            scope = None
        elif not scenario_named and not case_named:  # the drill-down: the scope's samples
            if scope in catalogue.group_keys():
                scenario = scope
            elif scope in catalogue.case_keys():
                case = scope
    state = State(dataset=dataset, scenario=scenario, case=case, judge=judge, disagree=tuple(disagree),
                  attributes=tuple(attrs), source=source, direction=direction, excluded=excluded,
                  q=_one(params, "q") or "", page=page, size=size, id=sample_id, scope=scope, vjudge=vjudge,
                  category=category)
    return state, problems


def to_params(state: State, *, default_source_: str | None = None) -> dict[str, str | list[str]]:
    """The URL query of a state: only what differs from the defaults (so links stay short)."""
    out: dict[str, str | list[str]] = {}
    if state.id:
        out["id"] = state.id
    if state.dataset:
        out["dataset"] = state.dataset
    if state.scenario:
        out["scenario"] = state.scenario
    if state.case:
        out["case"] = state.case
    if state.category:
        out["category"] = state.category
    if state.scope and state.scope != "all" and not state.scenario and not state.case:
        out["scenario"] = ANY  # a chosen scope, but no filter: say so, or reading it back would filter
    for key, value in (("judge", state.judge), ("vjudge", state.vjudge)):
        if value:
            out[key] = value
    if state.disagree:
        out["disagree"] = list(state.disagree)
    if state.attributes:
        out["attr"] = list(state.attributes)
    if state.source and state.source != default_source_:
        out["source"] = state.source
    if state.direction:
        out["dir"] = state.direction
    if state.excluded:
        out["excluded"] = "1"
    if state.q.strip():
        out["q"] = state.q.strip()
    if state.page != 1:
        out["page"] = str(state.page)
    if state.size != DEFAULT_SIZE:
        out["size"] = str(state.size)
    if state.scope:
        out["scope"] = state.scope
    return out


def normalised(params: Mapping[str, Any]) -> dict[str, list[str]]:
    """Parameters in one comparable shape (every value a list of strings)."""
    return {k: _values(params, k) for k in sorted(params)}


def with_page_of(state: State, index: int | None) -> State:
    """The state showing the list page that holds position ``index`` (0-based)."""
    return state if index is None else replace(state, page=index // state.size + 1)
