"""One sample in full, and why a judge chose what it chose: what the Samples page and
``python -m core samples`` show.

- :func:`sample_view`: the sample, every judge's vote, its comparison features per feature
  source, and what the annotators said (query analysis, per-attribute ratings with reasons,
  detected errors, the reference answer), read back from the stored annotation answers.
- :func:`explain`: for one judge and scope, the stored profile's posterior-mean weights times
  the sample's features (``fit.contributions``), beside the judge's actual choice.

- :func:`checked_filter`: the list's filter checked against the store (a typo is named, not an
  empty list) and completed with its defaults; :func:`list_rows`: the list's columns.

Listing and paging live in ``Store.browse`` (SQL); this module only reads and shapes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import catalogue, featureset, fit, scopes
from .featureset import FeatureSet
from .profile import beats_baselines, best_baseline, is_position, pick_profile
from .store import SampleFilter, Store

ORDERS = ("AB", "BA")


# ------------------------------------------------------------------------------ the list


def checked_filter(store: Store, f: SampleFilter, scope: str | None = None) -> SampleFilter:
    """``f`` ready for ``Store.browse``, checked so that a typo is named rather than listing nothing:
    the dataset (default: the first with samples) must have samples, every judge named (``judge``,
    ``disagree``) labels on it; attribute filters get the dataset's default feature set when none is
    given (``featureset.required``), and ``scope`` restricts the list (``scopes.sample_filter``)."""
    datasets = [d["name"] for d in store.datasets() if d["samples"]]
    dataset = f.dataset or (datasets[0] if datasets else None)
    if dataset not in datasets:
        raise ValueError(f"no dataset {dataset!r} with samples" + (f" (there are: {', '.join(datasets)})" if datasets else ""))
    judges = set(store.judge_names(dataset))
    unknown = [j for j in ([f.judge] if f.judge else []) + list(f.disagree) if j not in judges]
    if unknown:
        raise ValueError(f"no labels from judge(s) {', '.join(map(repr, unknown))} on dataset {dataset!r}")
    source = (f.feature_source or featureset.required(store, dataset)) if f.attributes else None
    f = dataclasses.replace(f, dataset=dataset, feature_source=source)
    return scopes.sample_filter(f, scope) if scope else f


#: a comparison feature as the list reads it: which response is better on the attribute
_BETTER = {1: "A", -1: "B", 0: "equal", None: None}


def list_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Samples list's columns for ``Store.browse`` rows: "#" (the sample's 1-based position in its
    dataset), scenario, query, each shown judge's choice (a column named for the judge), per filtered
    attribute "<label>: better" (A, B or equal), the two models and their word counts and, when
    searching, "match (bm25)" (higher is a better match)."""
    labels = {a.key: a.label for a in catalogue.attributes()}
    out = []
    for r in rows:
        rec = {"#": r["position"] + 1, "scenario": r["scenario_group"], "query": r["query"]}
        for j, choice in r["choices"].items():
            rec[f"{j}"] = choice
        for a, v in r["features"].items():
            rec[f"{labels.get(a, a)}: better"] = _BETTER.get(v, v)
        rec.update({"model A": r["model_a"], "model B": r["model_b"], "words A": r["words_a"], "words B": r["words_b"]})
        if "score" in r:
            rec["match (bm25)"] = -r["score"]
        out.append(rec)
    return out


# ------------------------------------------------------------------------------ annotations


@dataclass
class AnnotatorNotes:
    """What one annotator (model + prompt version) said about one sample, in A/B terms.

    ``ratings``: attribute key -> {"A": [per order], "B": [per order]}; ``reasons``: attribute key
    -> [(order, reason)], order "AB" when A was shown first; ``errors``: one dict per detected error
    (response, order, type, severity, description); ``checkable``: False when the annotator said
    the errors could not be checked against the reference; ``failed``: (step, order, error) of
    requests that failed for good."""

    annotator: str
    prompt_version: str
    analysis: dict[str, Any] | None = None
    scenario_group: str | None = None
    reference: str | None = None
    ratings: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    reasons: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    checkable: bool | None = None
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)


_CONDITIONAL = {"constraints": "satisfies_constraints", "stances": "supports_stances", "mistakes": "corrects_mistakes"}


def _attribute_key(rated: str) -> str:
    """The catalogue key of a rated key (``repetitive`` is rated for ``non_repetitive``)."""
    for a in catalogue.attributes():
        if a.rated_key == rated:
            return a.key
    return _CONDITIONAL.get(rated, rated)


def _oriented(order: str, r1: Any, r2: Any) -> tuple[Any, Any]:
    return (r1, r2) if order == "AB" else (r2, r1)


def _analysis(parsed: dict[str, Any]) -> dict[str, Any]:
    """A query analysis in one shape, from the LLM step or the demo generator."""
    clear = parsed.get("clear_intent", parsed.get("intent_clear"))
    feelings = parsed.get("expresses_feelings", parsed.get("express_feeling"))
    return {"clear_intent": clear, "expresses_feelings": feelings,
            "constraints": list(parsed.get("constraints") or []), "stances": list(parsed.get("stances") or []),
            "mistakes": list(parsed.get("mistakes") or [])}


def _rate(notes: AnnotatorNotes, key: str, a: Any, b: Any) -> None:
    slot = notes.ratings.setdefault(key, {"A": [], "B": []})
    slot["A"].append(a)
    slot["B"].append(b)


def _notes_from(notes: AnnotatorNotes, row: dict[str, Any]) -> None:
    step, order, parsed = row["step"], row.get("orientation") or "AB", row.get("parsed")
    if row["status"] != "ok":
        notes.failed.append((step, order, row.get("error") or "failed"))
        return
    if not isinstance(parsed, dict):
        return
    if step == "ratings" and "response_a" in parsed:  # the demo generator: one row, A/B, no reasons
        if parsed.get("query_analysis"):
            notes.analysis = _analysis(parsed["query_analysis"])
        ra, rb = parsed["response_a"], parsed["response_b"]
        notes.orders = list(dict.fromkeys(notes.orders + ["AB"]))
        for key in ra:
            if key == "errors":
                for resp, errs in (("A", ra.get("errors") or []), ("B", rb.get("errors") or [])):
                    for e in errs:
                        notes.errors.append({"response": resp, "order": "AB", "type": e.get("type"),
                                             "severity": e.get("severity"),
                                             "description": e.get("description", e.get("text"))})
                notes.checkable = True
            elif isinstance(ra[key], (int, float)) and not isinstance(ra[key], bool):
                _rate(notes, _attribute_key(key), ra[key], rb.get(key))
        return
    if step == "query":
        notes.analysis = _analysis(parsed)
    elif step == "scenario":
        notes.scenario_group = parsed.get("scenario_group")
    elif step == "reference":
        notes.reference = parsed.get("answer")
    elif step in ("ratings", "conditional"):
        notes.orders = list(dict.fromkeys(notes.orders + [order]))
        for rated, v in parsed.items():
            key = _attribute_key(rated)
            if isinstance(v, dict) and "r1" in v:
                a, b = _oriented(order, v["r1"], v["r2"])
                _rate(notes, key, a, b)
                if v.get("reason"):
                    notes.reasons.setdefault(key, []).append((order, v["reason"]))
            elif isinstance(v, list) and v:  # per item (constraints, stances, mistakes): the mean rates
                pairs = [_oriented(order, x["r1"], x["r2"]) for x in v]
                _rate(notes, key, sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs))
                for x, (a, b) in zip(v, pairs):
                    notes.items.append({"attribute": key, "order": order, "item": x.get("item"), "A": a, "B": b})
    elif step == "errors":
        notes.checkable = bool(parsed.get("checkable")) if notes.checkable is not False else False
        first, second = _oriented(order, "A", "B")
        for resp, errs in ((first, parsed.get("errors_1") or []), (second, parsed.get("errors_2") or [])):
            for e in errs:
                notes.errors.append({"response": resp, "order": order, "type": e.get("type"),
                                     "severity": e.get("severity"), "description": e.get("description")})


def annotator_notes(rows: list[dict[str, Any]]) -> list[AnnotatorNotes]:
    """Stored annotation answers of one sample (``Store.annotations_for``), per annotator; an annotator's
    answers with A shown first before those with B first (stored in the order the requests finished,
    which concurrent requests leave to chance), so each rating reads [A first, B first]."""
    by: dict[tuple[str, str], AnnotatorNotes] = {}
    for row in sorted(rows, key=lambda r: (r.get("orientation") or "AB") != "AB"):  # stable
        key = (row["annotator"], row["prompt_version"])
        notes = by.setdefault(key, AnnotatorNotes(annotator=key[0], prompt_version=key[1]))
        _notes_from(notes, row)
    return list(by.values())


# ------------------------------------------------------------------------------ the sample view


@dataclass
class SampleView:
    """Everything about one sample the Samples page shows (``features``: source -> one row per
    attribute in catalogue order: key, label, value, score_a, score_b, excluded, reasons)."""

    sample: dict[str, Any]
    votes: list[dict[str, Any]]
    features: dict[str, list[dict[str, Any]]]
    notes: list[AnnotatorNotes]
    reference: str | None
    reference_from: str | None  # "data" or the annotator that wrote it
    source_notes: dict[str, str | None]  # feature source -> its annotator ("model (prompt version)"), if any

    def notes_for(self, source: str) -> AnnotatorNotes | None:
        who = FeatureSet.parse(source).annotator
        return next((n for n in self.notes if who and (n.annotator, n.prompt_version) == who), None)


def sample_view(store: Store, sample_id: str) -> SampleView | None:
    """One sample with its votes, features and annotations; None when there is no such sample."""
    sample = store.sample(sample_id)
    if sample is None:
        return None
    votes = store.sample_labels(sample_id)
    notes = annotator_notes(store.annotations_for(sample_id))
    labels = {a.key: a.label for a in catalogue.attributes()}
    order = {k: i for i, k in enumerate(labels)}
    features: dict[str, list[dict[str, Any]]] = {}
    for r in store.sample_features(sample_id):
        features.setdefault(r["source"], []).append(r)
    view_features, source_notes = {}, {}
    for source, rows in features.items():
        who = FeatureSet.parse(source).annotator
        mine = next((n for n in notes if who and (n.annotator, n.prompt_version) == who), None)
        source_notes[source] = f"{who[0]} (prompts {who[1]})" if who and mine else None
        out = []
        for r in sorted(rows, key=lambda r: order.get(r["attribute"], len(order))):
            reasons = (mine.reasons.get(r["attribute"]) if mine else None) or []
            prov = r.get("provenance") or {}
            out.append({"attribute": r["attribute"], "label": labels.get(r["attribute"], r["attribute"]),
                        "value": r["value"], "score_a": r["score_a"], "score_b": r["score_b"],
                        "excluded": bool(r["excluded"]),
                        "orders": {o: prov[o.lower()] for o in ORDERS if o.lower() in prov},
                        "reasons": [f"[{o}] {text}" if len(mine.orders) > 1 else text for o, text in reasons]
                        if mine else []})
        view_features[source] = out
    reference, reference_from = sample.get("reference"), "data" if sample.get("reference") else None
    if not reference:
        written = next((n for n in notes if n.reference), None)
        if written:
            reference, reference_from = written.reference, written.annotator
    return SampleView(sample=sample, votes=votes, features=view_features, notes=notes, reference=reference,
                      reference_from=reference_from, source_notes=source_notes)


# ------------------------------------------------------------------------------ contributions


@dataclass
class Explanation:
    """A judge's predicted choice on one sample from its stored profile, beside its actual vote.

    ``profile``: the profile row used (without draws); ``contributions``: ``fit.Contributions``
    (None, with ``problem`` saying why, when there is no profile or the sample lacks its features)."""

    judge: str
    scope: str
    profile: dict[str, Any] | None
    contributions: fit.Contributions | None
    vote: dict[str, Any] | None
    problem: str | None = None

    @property
    def trust(self) -> dict[str, Any]:
        """What the page shows beside the waterfall before anyone reads it as the judge's reasons:
        whether the profile beats its best baseline (``beats_baselines``: None when unknown),
        that baseline and its accuracy, and the profile's tie model."""
        prov = (self.profile or {}).get("provenance") or {}
        best = best_baseline(prov.get("baselines"))
        return {"beats_baseline": beats_baselines((self.profile or {}).get("accuracy"), prov.get("baselines")),
                "baseline": best[0] if best else None, "baseline_accuracy": best[1] if best else None,
                "ties": (prov.get("model") or {}).get("ties", "drop")}

    @property
    def frame_rows(self) -> list[dict[str, Any]]:
        """One row per term: attribute, label, x, weight, contribution (catalogue order)."""
        if self.contributions is None:
            return []
        labels = {a.key: a.label for a in catalogue.attributes()}
        c = self.contributions
        return [{"attribute": k, "label": "shown first (position)" if is_position(k) else labels.get(k, k),
                 "x": x, "weight": w, "contribution": t}
                for k, w, x, t in zip(c.attributes, c.weights, c.x, c.terms)]


def explain(store: Store, sample_id: str, judge: str, scope: str | None = None, *, method: str | None = None,
            feature_source: str | None = None) -> Explanation:
    """Per-attribute contributions to ``judge``'s predicted choice on a sample, from the judge's
    profile in ``scope`` (default: the sample's scenario group when it has one, else "all")."""
    sample = store.sample(sample_id)
    if sample is None:
        raise ValueError(f"no sample {sample_id!r}")
    scope = scopes.parse(scope or sample.get("scenario_group") or "all")
    vote = next((v for v in store.sample_labels(sample_id) if v["judge"] == judge), None)
    feats = store.sample_features(sample_id)
    available = {r["source"] for r in feats}
    prof = pick_profile(store, sample["dataset"], scope, judge, method=method, feature_source=feature_source,
                        available=available)
    if prof is None:
        return Explanation(judge, scope, None, None, vote,
                           problem=f"no stored profile of {judge!r} in scope {scope!r} of dataset {sample['dataset']!r}"
                           + (f" (method {method!r})" if method else "") + ": fit one first")
    values = {r["attribute"]: r["value"] for r in feats if r["source"] == prof["feature_source"]}
    prof = {k: v for k, v in prof.items() if k != "draws"}
    if not values:
        return Explanation(judge, scope, prof, None, vote,
                           problem=f"the sample has no features from {prof['feature_source']!r}, the source the "
                                   "profile was fitted on: annotate it first")
    return Explanation(judge, scope, prof, fit.contributions(prof["attributes"], prof["mean"], values), vote)
