"""Annotation: an LLM rates the attributes of each pair, resumably, within budget.

Per sample (DESIGN.md step 3): scenario classification when the sample has none; query
analysis; pairwise 0-3 ratings of the general attributes; the conditional ratings where the
query analysis found the case; a reference answer when the sample has none; error detection
against it. Length needs no LLM. Pairwise steps can run in both presentation orders, which are
reconciled (mean ratings) and reported as per-attribute order consistency.

Every request is keyed by a hash of (model, prompt version, step, order, messages, parameters)
and stored the moment it returns (``paidwork.Runner``); a rerun, a resume after a crash or a second
worker skips every request that already succeeded, so nothing is paid for twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field, create_model

from . import catalogue, features
from .llm import LLMSettings, messages_tokens
from .featureset import FeatureSet
from .paidwork import Progress, Request, Runner, endpoint_dialect, gather_all, run_work
from .prompts import TYPICAL_OUTPUT, messages, pair, prompts
from .records import Feature
from .store import Store


# ---------------------------------------------------------------- answer schemas


class PairRating(BaseModel):
    r1: int = Field(ge=0, le=3)
    r2: int = Field(ge=0, le=3)
    reason: str = ""


class ItemRating(BaseModel):
    item: str
    r1: int = Field(ge=0, le=3)
    r2: int = Field(ge=0, le=3)


class StanceRating(BaseModel):
    item: str
    r1: int = Field(ge=-2, le=2)
    r2: int = Field(ge=-2, le=2)


class QueryAnalysis(BaseModel):
    clear_intent: bool
    expresses_feelings: bool
    constraints: list[str]
    stances: list[str]
    mistakes: list[str]

    def cases(self) -> dict[str, bool]:
        return {
            "intent_unclear": not self.clear_intent,
            "express_feeling": self.expresses_feelings,
            "w_constraints": bool(self.constraints),
            "w_stances": bool(self.stances),
            "w_mistakes": bool(self.mistakes),
        }


class ErrorItem(BaseModel):
    type: Literal["factual", "query", "math", "code"]
    severity: Literal["minor", "moderate", "severe"]
    description: str


class ErrorCheck(BaseModel):
    checkable: bool
    errors_1: list[ErrorItem]
    errors_2: list[ErrorItem]


@lru_cache(maxsize=4)
def _scenario_schema(groups: tuple[str, ...]) -> type[BaseModel]:
    return create_model("ScenarioAnswer", scenario_group=(Literal[groups], ...))  # type: ignore[valid-type]


@lru_cache(maxsize=4)
def _ratings_schema(keys: tuple[str, ...]) -> type[BaseModel]:
    return create_model("Ratings", **{k: (PairRating, ...) for k in keys})


@lru_cache(maxsize=64)
def _conditional_schema(parts: tuple[str, ...]) -> type[BaseModel]:
    kinds = {"clarifies_intent": PairRating, "empathetic": PairRating, "constraints": list[ItemRating],
             "stances": list[StanceRating], "mistakes": list[ItemRating]}
    return create_model("Conditional", **{p: (kinds[p], ...) for p in parts})


def general_attributes() -> list[catalogue.Attribute]:
    return [a for a in catalogue.attributes() if a.general]


# ---------------------------------------------------------------- requests


def scenario_request(sample) -> Request:
    groups = "\n".join(f"- {g.key}: {g.description}" for g in catalogue.scenario_groups())
    return Request(sample["id"], "scenario", "AB", messages("scenario", groups=groups, query=sample["query"]),
                   _scenario_schema(tuple(catalogue.group_keys())), prompts()["steps"]["scenario"]["max_tokens"])


def query_request(sample) -> Request:
    return Request(sample["id"], "query", "AB", messages("query", query=sample["query"]), QueryAnalysis,
                   prompts()["steps"]["query"]["max_tokens"])


def ratings_request(sample, orientation: str) -> Request:
    attrs = "\n".join(f"- {a.rated_key}: {a.annotated_definition or a.definition}" for a in general_attributes())
    schema = _ratings_schema(tuple(a.rated_key for a in general_attributes()))
    return Request(sample["id"], "ratings", orientation, messages("ratings", attributes=attrs, **pair(sample, orientation)),
                   schema, prompts()["steps"]["ratings"]["max_tokens"])


def conditional_request(sample, analysis: QueryAnalysis, orientation: str) -> Request | None:
    cases = analysis.cases()
    parts, checks = [], []
    if cases["intent_unclear"]:
        parts.append("clarifies_intent")
        checks.append("- clarifies_intent: the user's intent is unclear; rate 0-3 how well each response clarifies "
                      "it (asks what is meant or states the interpretation it chose).")
    if cases["express_feeling"]:
        parts.append("empathetic")
        checks.append("- empathetic: the user expresses feelings; rate 0-3 how much empathy each response shows.")
    for name, items, scale in (
        ("constraints", analysis.constraints, "0-3 how well each response satisfies it"),
        ("stances", analysis.stances, "from -2 (strongly opposes) to 2 (strongly supports) each response's "
                                       "position toward it"),
        ("mistakes", analysis.mistakes, "0 ignores it, 1 points it out, 2 corrects it without pointing it out, "
                                        "3 points it out and corrects it"),
    ):
        if items:
            parts.append(name)
            listed = "\n".join(f"  * {x}" for x in items)
            checks.append(f"- {name}: for each item below (repeat it as \"item\"), rate {scale}:\n{listed}")
    if not parts:
        return None
    return Request(sample["id"], "conditional", orientation,
                   messages("conditional", checks="\n".join(checks), **pair(sample, orientation)),
                   _conditional_schema(tuple(parts)), prompts()["steps"]["conditional"]["max_tokens"])


class Reference(BaseModel):
    answer: str = Field(min_length=1)


def reference_request(sample) -> Request:
    return Request(sample["id"], "reference", "AB", messages("reference", query=sample["query"]), Reference,
                   prompts()["steps"]["reference"]["max_tokens"], check=_not_an_echo(sample["query"]))


def _not_an_echo(query: str) -> Callable[[Any], None]:
    """A reference answer that only repeats the query (or the prompt's own words) is no answer."""
    def check(parsed: Any) -> None:
        answer = " ".join(str((parsed or {}).get("answer", "")).split()).lower()
        q = " ".join(query.split()).lower()
        if answer and (answer == q or (len(answer) >= max(12, 0.6 * len(q)) and answer in q)
                       or answer in ("a correct, complete and concise answer", "the reference answer")):
            raise ValueError(f"the answer only echoes the query ({answer[:60]!r})")
    return check


def errors_request(sample, reference: str, orientation: str) -> Request:
    return Request(sample["id"], "errors", orientation,
                   messages("errors", reference=reference, **pair(sample, orientation)), ErrorCheck,
                   prompts()["steps"]["errors"]["max_tokens"])


# ---------------------------------------------------------------- one sample


def feature_source(model: str, both_orders: bool) -> str:
    return FeatureSet.llm(model, prompts()["version"], both_orders).name


async def annotate_sample(sample: dict[str, Any], runner: Runner, *, both_orders: bool = False) -> bool:
    """All steps for one sample; writes its features. False when a step failed for good."""
    orders = ("AB", "BA") if both_orders else ("AB",)
    stage1: dict[str, Any] = {"query": runner.run(query_request(sample))}
    if not sample.get("scenario_group"):
        stage1["scenario"] = runner.run(scenario_request(sample))
    if not sample.get("reference"):
        stage1["reference"] = runner.run(reference_request(sample))
    for o in orders:
        stage1[f"ratings:{o}"] = runner.run(ratings_request(sample, o))
    results = await gather_all(stage1)
    analysis = QueryAnalysis.model_validate(results["query"]) if results["query"] else None
    reference = sample.get("reference") or (results.get("reference") or {}).get("answer")

    stage2: dict[str, Any] = {}
    for o in orders:
        if analysis is not None:
            req = conditional_request(sample, analysis, o)
            if req is not None:
                stage2[f"conditional:{o}"] = runner.run(req)
        if reference:
            stage2[f"errors:{o}"] = runner.run(errors_request(sample, reference, o))
    results.update(await gather_all(stage2))

    ok = all(v is not None for v in results.values()) and analysis is not None and bool(reference)
    # nothing from a sample with a failed step reaches samples or features: its scenario or cases
    # would be read as data while its features are missing (a rerun fills both at once)
    if ok and (results.get("scenario") or analysis is not None):
        await runner.db(
            "set_sample_analysis", sample["id"], scenario_group=(results.get("scenario") or {}).get("scenario_group"),
            cases=analysis.cases() if analysis else None)
    if ok:
        await runner.db("write_features", resolve_sample(sample, results, orders, runner.settings.model, both_orders))
    return ok


def _oriented(parsed: dict[str, Any], orientation: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ratings for (A, B) from an answer about (response 1, response 2)."""
    ra, rb = {}, {}
    for key, v in parsed.items():
        if isinstance(v, dict) and "r1" in v:
            r1, r2 = v["r1"], v["r2"]
        elif isinstance(v, list):  # items: the mean over the items
            if not v:
                continue
            r1 = sum(x["r1"] for x in v) / len(v)
            r2 = sum(x["r2"] for x in v) / len(v)
        else:
            continue
        ra[key], rb[key] = (r1, r2) if orientation == "AB" else (r2, r1)
    return ra, rb


_CONDITIONAL_KEYS = {"constraints": "satisfies_constraints", "stances": "supports_stances",
                     "mistakes": "corrects_mistakes"}


def _ratings_for(results: dict[str, Any], orientation: str) -> tuple[dict[str, Any], dict[str, Any], bool]:
    ra, rb = _oriented(results[f"ratings:{orientation}"], orientation)
    cond = results.get(f"conditional:{orientation}")
    if cond:
        ca, cb = _oriented(cond, orientation)
        for k in ca:
            ra[_CONDITIONAL_KEYS.get(k, k)] = ca[k]
            rb[_CONDITIONAL_KEYS.get(k, k)] = cb[k]
    err = results.get(f"errors:{orientation}") or {"checkable": False, "errors_1": [], "errors_2": []}
    e1, e2 = err["errors_1"], err["errors_2"]
    ra["errors"], rb["errors"] = (e1, e2) if orientation == "AB" else (e2, e1)
    return ra, rb, bool(err["checkable"])


def resolve_sample(sample, results, orders, model: str, both_orders: bool) -> list[Feature]:
    """Features from one sample's answers; with both orders, mean ratings and per-order signs."""
    analysis = QueryAnalysis.model_validate(results["query"])
    cases = analysis.cases()
    per_order = [_ratings_for(results, o) for o in orders]
    ra: dict[str, Any] = {}
    rb: dict[str, Any] = {}
    for key in set().union(*(set(p[0]) for p in per_order)):
        va = [p[0][key] for p in per_order if key in p[0]]
        vb = [p[1][key] for p in per_order if key in p[1]]
        if key == "errors":  # both orders' error lists together: counts double, signs are kept
            ra[key] = [e for v in va for e in v]
            rb[key] = [e for v in vb for e in v]
        else:
            ra[key], rb[key] = sum(va) / len(va), sum(vb) / len(vb)
    ra["lengthy"], rb["lengthy"] = sample.get("words_a") or 0, sample.get("words_b") or 0
    checkable = all(p[2] for p in per_order)
    source = feature_source(model, both_orders)
    feats = features.resolve(sample["id"], source, ra, rb, cases=cases, checkable=checkable,
                             provenance={"model": model, "prompt_version": prompts()["version"]})
    if len(orders) == 2:
        by_order = []
        for pa, pb, _ in per_order:
            pa, pb = dict(pa), dict(pb)
            pa["lengthy"], pb["lengthy"] = ra["lengthy"], rb["lengthy"]
            by_order.append({f.attribute: f.value for f in features.resolve(sample["id"], source, pa, pb, cases=cases)})
        for f in feats:
            f.provenance = {**f.provenance, "ab": by_order[0][f.attribute], "ba": by_order[1][f.attribute]}
    return feats


# ---------------------------------------------------------------- estimates and reports


@dataclass
class Estimate:
    samples: int
    requests: int  # still to send (cached ones excluded)
    cached: int
    input_tokens: int
    output_tokens: int
    cost: float
    by_step: dict[str, dict[str, float]]
    price_known: bool = True  # False: ``cost`` is not a figure (shown as unknown, never $0)
    price_source: str = ""


def plan_requests(sample: dict[str, Any], both_orders: bool) -> list[Request]:
    """The requests a sample will need, stage-2 ones with stand-ins for answers not known yet:
    conditional ratings as if every case applied with one item each, errors against the stored
    reference or a stand-in of a typical reference's length."""
    orders = ("AB", "BA") if both_orders else ("AB",)
    reqs = [query_request(sample)]
    if not sample.get("scenario_group"):
        reqs.append(scenario_request(sample))
    reference = sample.get("reference")
    if not reference:
        reqs.append(reference_request(sample))
        reference = "x" * (TYPICAL_OUTPUT["reference"] * 4)
    every_case = QueryAnalysis(clear_intent=False, expresses_feelings=True, constraints=["a constraint"],
                               stances=["a stance"], mistakes=["a mistake"])
    for o in orders:
        reqs.append(ratings_request(sample, o))
        reqs.append(conditional_request(sample, every_case, o))
        reqs.append(errors_request(sample, reference, o))
    return reqs


def estimate(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, *, both_orders: bool = False,
             planner: Callable[[dict[str, Any], bool], list[Request]] = plan_requests) -> Estimate:
    """Tokens of the actual prompts x price, per step, for the requests not yet answered.

    Conditional ratings are counted for every sample (an upper bound: only queries with a
    query-specific case need them); answer lengths are typical values per step."""
    version = prompts()["version"]
    by_step: dict[str, dict[str, float]] = {}
    dialect = endpoint_dialect(store, settings, probe=False)
    reqs = [r.finalize(settings, version, dialect) for s in samples for r in planner(s, both_orders)]
    done = store.cached_annotations([r.key for r in reqs])
    n_in = n_out = 0
    for r in reqs:
        if r.key in done:
            continue
        tin, tout = messages_tokens(r.messages), TYPICAL_OUTPUT.get(r.step, r.max_tokens)
        st = by_step.setdefault(r.step, {"requests": 0, "input_tokens": 0, "output_tokens": 0, "cost": 0.0})
        st["requests"] += 1
        st["input_tokens"] += tin
        st["output_tokens"] += tout
        st["cost"] += settings.cost(tin, tout)
        n_in += tin
        n_out += tout
    price = settings.price
    return Estimate(samples=len(samples), requests=len(reqs) - len(done), cached=len(done), input_tokens=n_in,
                    output_tokens=n_out, cost=settings.cost(n_in, n_out), by_step=by_step, price_known=price.known,
                    price_source=price.describe())


def order_consistency(store: Store, source: str) -> dict[str, float | None]:
    """Per attribute: the share of samples whose comparison has the same sign in both orders."""
    out = {}
    for key in catalogue.attribute_keys():
        n, same = store.order_agreement(source, key)
        out[key] = (same / n) if n else None
    return out


def run_annotation(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, *, both_orders: bool = False,
                   budget: float | None = None, job_id: int | None = None,
                   on_progress: Callable[[Progress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, processes: int | None = None) -> Progress:
    """Annotate ``samples`` (blocking). Already answered requests are not sent again."""
    return run_work(store, samples, settings, annotate_sample, {"both_orders": both_orders}, budget=budget,
                    job_id=job_id, on_progress=on_progress, should_stop=should_stop, processes=processes)


def estimate_text(est: Estimate) -> str:
    from .prices import fmt_cost

    lines = [f"{est.samples} samples: {est.requests} requests to send ({est.cached} already answered), "
             f"~{est.input_tokens:,} input + ~{est.output_tokens:,} output tokens, estimated "
             f"{fmt_cost(est.cost, known=est.price_known)}"]
    if est.price_source:
        lines.append(f"  at {est.price_source}")
    for step, st in est.by_step.items():
        lines.append(f"  {step:<12} {int(st['requests']):>7} requests  ~{int(st['input_tokens']):>10,} in"
                     f"  ~{int(st['output_tokens']):>9,} out  {fmt_cost(st['cost'], known=est.price_known)}")
    return "\n".join(lines)




def run_heuristics(store: Store, samples: list[dict[str, Any]], chunk: int = 2000) -> int:
    """Offline features from text statistics (no LLM): the ``heuristic:v1`` feature set."""
    from . import heuristics

    n = 0
    for i in range(0, len(samples), chunk):
        part = samples[i : i + chunk]
        store.write_features([f for s in part for f in heuristics.features_for(s)])
        n += len(part)
    return n


def feature_agreement(store: Store, source_a: str, source_b: str, dataset: str | None = None) -> dict[str, dict]:
    """Per-attribute agreement between two feature sets on the samples both cover (for example
    the offline heuristics beside an LLM annotator): share equal, Cohen's kappa, sign agreement."""
    from . import heuristics

    va: dict[str, list[int]] = {}
    vb: dict[str, list[int]] = {}
    for attr, x, y in store.feature_pairs(source_a, source_b, dataset):
        va.setdefault(attr, []).append(x)
        vb.setdefault(attr, []).append(y)
    return heuristics.agreement(va, vb)
