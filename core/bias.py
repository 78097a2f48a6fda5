"""A judge's bias card: position, verbosity, formatting and self-preference, each with its interval
and the number of pairs behind it.

Raw rates read the labels directly; "net of content" figures come from a profile, where the other
attributes are held fixed by the regression:

- **Position.** The first-slot rate: of the verdicts whose presentation order is known, the share
  won by the response shown first (a label stored without per-order verdicts counts as given with
  A shown first; ties are left out and counted). Consistency: the share of samples with verdicts in
  both orders where the verdict did not change. The fitted position term ("shown first", net of
  content) from the judge's profile, on the paper's display scale.
- **Verbosity.** P(prefer the longer response) on decisive labels where one response is clearly
  longer (the ``lengthy`` comparison feature), and the length weight net of content (the profile's).
- **Formatting and lists.** The same for ``well_formatted`` and ``step_by_step`` (numbered steps).
- **Self-preference.** Where the responding models and the judge map to a model family
  (:data:`DEFAULT_FAMILIES`, patterns on names, editable: ``families``), P(prefer the response from
  the judge's own family) on pairs with exactly one such response, and the weight of a covariate
  "response from the judge's own family" (+1 A, -1 B) fitted beside the attributes, net of content.

Rates come with a 94% Jeffreys interval (``core.intervals.jeffreys``: Beta(k + 1/2, n - k + 1/2), the
end at 0 or 1 when no or every pair is won).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import featureset
from .intervals import jeffreys
from .profile import display_percent, is_position, measured_mask, pick_profile
from .store import Store

#: name pattern -> family (first match wins; case-insensitive, searched anywhere in the name)
DEFAULT_FAMILIES: dict[str, str] = {
    r"gpt|o1-|o3-|o4-|openai|davinci|chatgpt": "openai",
    r"claude|anthropic": "anthropic",
    r"gemini|gemma|palm|bard": "google",
    r"llama|vicuna|alpaca|koala|tulu|wizardlm": "llama",
    r"mistral|mixtral|zephyr": "mistral",
    r"qwen": "qwen",
    r"\byi-|^yi\b|01-ai": "yi",
    r"internlm": "internlm",
    r"deepseek": "deepseek",
    r"skywork": "skywork",
}

SELF = "own_family"


@dataclass
class BiasItem:
    aspect: str  # position, verbosity, formatting, self-preference
    measure: str
    value: float | None  # a share in [0, 1], or the display percent / 100 for net-of-content weights
    lo: float | None
    hi: float | None
    n: int  # pairs (or verdicts) behind it
    note: str = ""


def families_with(extra: Iterable[str] | None = None, what: str = "model family") -> dict[str, str]:
    """The family map with the user's ``PATTERN=FAMILY`` items first, in the order given (the first
    match wins), then :data:`DEFAULT_FAMILIES`; a user's pattern equal to a built-in one replaces its
    family. So the user's patterns win over the built-in ones. ``what`` names the items in errors
    (the CLI's ``--family``). A ValueError names the bad item: no ``=``, an empty pattern or family,
    a pattern that is not a regular expression, one pattern given two families."""
    mine: dict[str, str] = {}
    for item in extra or ():
        pattern, sep, fam = (t.strip() for t in str(item).partition("="))
        if not sep or not pattern or not fam:
            raise ValueError(f"{what} {item!r}: expected PATTERN=FAMILY")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{what} {item!r}: {pattern!r} is not a regular expression: {exc}") from None
        if mine.get(pattern, fam) != fam:
            raise ValueError(f"{what} {item!r}: pattern {pattern!r} is already mapped to {mine[pattern]!r}")
        mine[pattern] = fam
    return {**mine, **{p: f for p, f in DEFAULT_FAMILIES.items() if p not in mine}}


def family(name: str | None, families: Mapping[str, str] | None = None) -> str | None:
    """A model's family from its name (``families``: pattern -> family, default :data:`DEFAULT_FAMILIES`)."""
    if not name:
        return None
    for pattern, fam in (families or DEFAULT_FAMILIES).items():
        if re.search(pattern, name, flags=re.IGNORECASE):
            return fam
    return None


def _rate(k: float, n: int) -> tuple[float | None, float | None, float | None]:
    """(k / n, and its Jeffreys interval), or Nones when n = 0."""
    if n <= 0:
        return None, None, None
    lo, hi = jeffreys(k, n)
    return k / n, lo, hi


def _rate_item(aspect: str, measure: str, wins: np.ndarray, note: str = "") -> BiasItem:
    k, n = float(np.sum(wins)), int(len(wins))
    v, lo, hi = _rate(k, n)
    return BiasItem(aspect, measure, v, lo, hi, n, note)


def _weight_item(aspect: str, measure: str, profile: Mapping[str, Any] | None, term: str, note: str = "") -> BiasItem:
    if not profile:
        return BiasItem(aspect, measure, None, None, None, 0, "no fitted profile: fit the judge first")
    attrs = list(profile["attributes"])
    match = [i for i, k in enumerate(attrs) if (is_position(k) if term == "position" else k == term)]
    if not match:
        return BiasItem(aspect, measure, None, None, None, int(profile.get("n") or 0),
                        "the profile has no such term (fitted without it)")
    i = match[0]
    if not measured_mask(profile)[i]:
        return BiasItem(aspect, measure, None, None, None, int(profile.get("n") or 0),
                        "not measured: too few samples differ on it")
    pct = lambda v: None if v is None else float(display_percent(v)) / 100.0  # noqa: E731
    lo = profile["lo"][i] if profile.get("lo") else None
    hi = profile["hi"][i] if profile.get("hi") else None
    return BiasItem(aspect, measure, pct(profile["mean"][i]), pct(lo), pct(hi), int(profile.get("n") or 0),
                    note or f"{profile['method']} profile, scope {profile['scope']}: 100*sigmoid(weight), net of content")


def _profile(store: Store, dataset: str, judge: str, feature_source: str) -> dict[str, Any] | None:
    return pick_profile(store, dataset, "all", judge, feature_source=feature_source)


def bias_card(store: Store, judge: str, dataset: str | None = None, *, feature_source: str | None = None,
              families: Mapping[str, str] | None = None, fit_self: bool = True, seed: int = 0) -> list[BiasItem]:
    """The bias card of ``judge`` on ``dataset`` (default: the dataset it labelled most)."""
    for pattern in (families or {}):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"model family pattern {pattern!r} is not a regular expression: {exc}") from None
    if dataset is None:
        dataset = store.judge_main_dataset(judge)
        if dataset is None:
            raise ValueError(f"judge {judge!r} has no labels")
    feature_source = feature_source or featureset.default(store, dataset)
    items: list[BiasItem] = []
    labels = store.judge_verdicts(judge, dataset)
    if not labels:
        raise ValueError(f"judge {judge!r} has no labels on dataset {dataset!r}")

    # -- position, from the labels alone
    first_wins, ties, both, same, single = [], 0, 0, 0, 0
    for _, choice, ab, ba in labels:
        if ab is None and ba is None:
            verdicts = [(choice, "A")]  # stored as given: A shown first
            single += 1
        else:
            verdicts = [(v, first) for v, first in ((ab, "A"), (ba, "B")) if v is not None]
            if ab is not None and ba is not None:
                both += 1
                same += ab == ba
        for verdict, first in verdicts:
            if verdict == "tie":
                ties += 1
            else:
                first_wins.append(verdict == first)
    note = f"{ties} ties left out" + (f"; {single} labels without per-order verdicts taken as A shown first" if single else "")
    items.append(_rate_item("position", "first-slot rate (the response shown first wins)", np.array(first_wins), note))
    v, lo, hi = _rate(same, both)
    items.append(BiasItem("position", "same verdict in both orders (consistency)", v, lo, hi, both,
                          "" if both else "no verdicts in both orders"))
    profile = _profile(store, dataset, judge, feature_source) if feature_source else None
    items.append(_weight_item("position", "shown-first term, net of content", profile, "position"))

    if not feature_source:
        items.append(BiasItem("verbosity", "features", None, None, None, 0, "the dataset has no features yet"))
        return items
    design = store.design(dataset, feature_source, scope="all", judges=[judge])
    keys = list(design.attributes)
    y = design.Y[:, 0]  # 1 A, 0 B, NaN tie or none
    decisive = ~np.isnan(y)

    def raw(attr: str) -> np.ndarray:
        x = design.X[:, keys.index(attr)]
        sel = decisive & (x != 0)
        return (y[sel] == (x[sel] > 0)).astype(float)

    items.append(_rate_item("verbosity", "P(prefer the clearly longer response)", raw("lengthy")))
    items.append(_weight_item("verbosity", "length weight, net of content", profile, "lengthy"))
    for attr, what in (("well_formatted", "the better-formatted"), ("step_by_step", "the step-by-step")):
        items.append(_rate_item("formatting", f"P(prefer {what} response)", raw(attr)))
        items.append(_weight_item("formatting", f"{attr} weight, net of content", profile, attr))

    # -- self-preference
    own = family(judge, families)
    if own is None:
        items.append(BiasItem("self-preference", "own family", None, None, None, 0,
                              f"the judge's name maps to no model family; add a pattern for {judge!r}"))
        return items
    mine = _own_family_side(store, dataset, design, own, families)
    sel = decisive & (mine != 0)
    items.append(_rate_item("self-preference", f"P(prefer the response from its own family, {own})",
                            (y[sel] == (mine[sel] > 0)).astype(float),
                            "pairs with exactly one response from the judge's family"))
    items.append(_covariate_item(design, mine, judge, seed) if fit_self else
                 BiasItem("self-preference", COVARIATE, None, None, None, int(sel.sum()),
                          "not fitted here: see self_preference_covariate"))
    return items


COVARIATE = "own-family covariate, net of content"


def _own_family_side(store: Store, dataset: str, design, own: str, families: Mapping[str, str] | None) -> np.ndarray:
    """Per design row: +1 when only response A is from the ``own`` family, -1 when only B is, else 0."""
    meta = store.pair_meta(dataset)
    return np.array([(family(meta[i]["model_a"], families) == own) * 1 - (family(meta[i]["model_b"], families) == own) * 1
                     for i in design.sample_ids], dtype=float)


def _covariate_item(design, mine: np.ndarray, judge: str, seed: int) -> BiasItem:
    """The own-family covariate fitted beside the attributes and the position term: the card's one
    slow figure (a posterior fit over every pair of the judge's dataset)."""
    keys = list(design.attributes)
    y = design.Y[:, 0]
    sel = ~np.isnan(y) & (mine != 0)
    if sel.sum() < 10:
        return BiasItem("self-preference", COVARIATE, None, None, None, int(sel.sum()),
                        "fewer than 10 pairs with exactly one own-family response")
    from .fit import fit_profiles

    X = np.column_stack([design.X, mine])
    (p,) = fit_profiles(X, y, [judge], attributes=keys + [SELF], position=np.ones(len(y)), folds=0, seed=seed,
                        draws=1000)
    i = p.attributes.index(SELF)
    assert is_position(p.attributes[0])
    return BiasItem("self-preference", COVARIATE,
                    float(display_percent(p.mean[i])) / 100, float(display_percent(p.lo[i])) / 100,
                    float(display_percent(p.hi[i])) / 100, int(sel.sum()),
                    "fitted beside the attributes and the position term (fast path), 100*sigmoid(weight)")


def self_preference_covariate(store: Store, judge: str, dataset: str | None = None, *,
                              feature_source: str | None = None, families: Mapping[str, str] | None = None,
                              seed: int = 0) -> BiasItem | None:
    """The bias card's own-family covariate alone, as ``bias_card`` computes it (None when the card has
    no such row: no features, or a judge of no known family). For a caller that shows the rest of the
    card (``bias_card(..., fit_self=False)``) first: the rest is reads and counts, this is a fit."""
    if dataset is None:
        dataset = store.judge_main_dataset(judge)
    feature_source = feature_source or (featureset.default(store, dataset) if dataset else None)
    own = family(judge, families)
    if not dataset or not feature_source or own is None:
        return None
    design = store.design(dataset, feature_source, scope="all", judges=[judge])
    return _covariate_item(design, _own_family_side(store, dataset, design, own, families), judge, seed)


def card_rows(items: Sequence[BiasItem]) -> list[dict[str, Any]]:
    return [asdict(i) for i in items]
