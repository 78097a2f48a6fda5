"""The manipulation experiment, run for real, and held against the Simulator's prediction.

The paper's sharpest result (its AlpacaEval 2.0 and MT-Bench experiment): telling a model under test
to show what a judge likes raises its judge-based win rate; showing what the judge dislikes lowers
it. ``core.simulate`` predicts that shift from a fitted profile; this module measures it.

**Design.** An experiment is a record (``experiments`` table: settings, provenance, result) and a
job (kind ``experiment``, ``core.jobs``) that runs five stages, each idempotent, so a killed or
paused job resumes where it stopped and nothing is paid for twice:

1. *Generate.* For every query and every arm, the model under test answers with a system prompt
   that asks for the arm's attributes to be shown (or avoided); the ``control`` arm gets the plain
   system prompt. A baseline endpoint, when given, answers with the plain prompt too (its own
   step, ``baseline``). Generation requests go through the annotator's keyed engine
   (``paidwork.run_work``: store-first, budget-checked, recorded as they return) with their own
   prompt version (``core/data/experiment_prompts.json``). They hang on the experiment's queries,
   stored as a dataset of their own (``experiment-<id>-queries``: query, baseline response).
2. *Pairs.* Each arm's responses become pair samples in the dataset ``experiment-<id>``: response A
   the arm's, response B the baseline's, same query; ``model_a`` names the arm
   (``<model> [<arm>]``), ``category`` is the arm, ``source_id`` the query. So the existing
   annotation, judging and simulation machinery works on them unchanged.
3. *Annotate* the pairs with the profile's own feature set: the offline heuristics
   (``heuristic:v1``) or the LLM annotator that made the profile's features (``llm:<model>:<version>``).
4. *Judge* every pair in both orders (``judges.collect_labels``), under the judge name given.
5. *Measure and predict* (``measure``): per arm, the measured win rate (ties count 1/2, 94% Jeffreys
   interval) and its shift against the control (94% normal interval); the profile's predicted win
   rate on the arm's *actual* comparison features (mean over pairs of P(arm preferred), both
   presentation orders averaged, per posterior draw: credible and predictive intervals as
   ``simulate``'s), and the predicted shift (per draw, arm minus control; predictive interval from
   the label noise of both arms); per asked-for attribute the realised success rate (how often the
   arm's comparison moved in the asked direction against the control's on the same query, among
   queries where it could); and the Simulator's a-priori prediction: the control's pairs with the
   asked-for changes injected at those realised rates (``simulate.simulate_arrays``).

Layering: above annotate, judges and simulate (it uses them), below jobs and cli (they call it);
nothing below imports it. The engine and profile names it uses are imported in one place (below).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any, Callable, Sequence

import numpy as np

from . import catalogue
# the paid-request engine, the annotators and the profile rule: the only touch points with those modules
from .annotate import plan_requests, run_annotation, run_heuristics
from .featureset import HEURISTIC, FeatureSet
from .fit import library_versions
from .llm import LLMSettings
from .paidwork import Request, endpoint_dialect, gather_all, run_work
from .prompts import prompts as annotator_prompts
from .records import Dataset, ImportBatch, Sample
from .sampler import expected_score
from .intervals import INTERVAL_PROB, jeffreys, normal_interval, tails
from .simulate import (Estimate, predictive_interval, profile_draws, profile_for, simulate_arrays,
                       tie_draws, unmeasured)
from .store import Store, now

PROMPTS_FILE = Path(__file__).resolve().parent / "data" / "experiment_prompts.json"
CONTROL = "control"
HEURISTIC_SOURCE = str(HEURISTIC)


class ExperimentError(ValueError):
    """An experiment that cannot be set up or measured as asked (the message says why)."""


@lru_cache(maxsize=4)
def _prompts(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def prompts() -> dict[str, Any]:
    """The generation prompts (``PREFDISSECT_EXPERIMENT_PROMPTS`` may point at another file of that shape)."""
    return _prompts(os.environ.get("PREFDISSECT_EXPERIMENT_PROMPTS") or str(PROMPTS_FILE))


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Arm:
    """One arm: the model under test told to show ``show`` and avoid ``avoid`` (both empty: the control)."""

    name: str
    show: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "show", tuple(self.show))
        object.__setattr__(self, "avoid", tuple(self.avoid))
        keys = set(catalogue.attribute_keys())
        for k in (*self.show, *self.avoid):
            if k not in keys:
                raise ExperimentError(f"arm {self.name!r}: unknown attribute {k!r}")
        both = set(self.show) & set(self.avoid)
        if both:
            raise ExperimentError(f"arm {self.name!r}: cannot both show and avoid {', '.join(sorted(both))}")

    @property
    def changes(self) -> list[tuple[str, int]]:
        """(attribute, target comparison value): +1 shown, -1 avoided."""
        return [(k, 1) for k in self.show] + [(k, -1) for k in self.avoid]

    @classmethod
    def parse(cls, text: str) -> "Arm":
        """``name=+attr,+attr,-attr`` (a bare attribute means +)."""
        name, _, rest = text.partition("=")
        show, avoid = [], []
        for item in filter(None, (x.strip() for x in rest.split(","))):
            (avoid if item.startswith("-") else show).append(item.lstrip("+-"))
        if not name.strip() or not (show or avoid):
            raise ExperimentError(f"an arm is NAME=+attribute,-attribute,..., not {text!r}")
        return cls(name.strip(), tuple(show), tuple(avoid))


@dataclass
class Spec:
    """What an experiment runs: stored as its ``spec`` (settings hold no API key)."""

    name: str
    model: dict[str, Any]  # the model under test: LLMSettings.public()
    judge: dict[str, Any]  # the judge's endpoint
    judge_name: str  # the labels are stored under this judge name
    profile: dict[str, Any]  # dataset, scope, judge (, feature_source, method): the profile that predicts
    arms: list[Arm]
    queries: dict[str, Any]  # {"dataset", "limit", "baseline_model"} or {"file"}: where queries came from
    baseline: dict[str, Any] | None = None  # a baseline endpoint (else the stored responses)
    annotator: dict[str, Any] | None = None  # the LLM annotator's endpoint, for llm:* feature sets
    seed: int = 0
    max_tokens: int = 700
    top_k: int = 5

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arms"] = [asdict(a) for a in self.arms]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Spec":
        d = dict(d)
        d["arms"] = [Arm(a["name"], tuple(a.get("show", ())), tuple(a.get("avoid", ()))) for a in d["arms"]]
        return cls(**d)

    def arm_model(self, arm: str) -> str:
        return f"{self.model['model']} [{arm}]"

    @property
    def baseline_model(self) -> str:
        if self.baseline:
            return f"{self.baseline['model']} [baseline]"
        return f"{self.queries.get('baseline_model') or 'stored'} [baseline]"


def default_arms(profile: dict[str, Any], k: int = 5) -> list[Arm]:
    """The paper's manipulation: a control, the judge's top-``k`` attributes shown (``liked``) and its
    bottom-``k`` shown (``disliked``), among the attributes the profile measured (positive and
    negative weights only)."""
    skip = set(unmeasured(profile))
    weights = [(m, a) for a, m in zip(profile["attributes"], profile["mean"])
               if a in catalogue.attribute_keys() and a not in skip and m is not None and not math.isnan(m)]
    ranked = sorted(weights, reverse=True)
    liked = tuple(a for m, a in ranked if m > 0)[:k]
    disliked = tuple(a for m, a in reversed(ranked) if m < 0)[:k]
    arms = [Arm(CONTROL)]
    if liked:
        arms.append(Arm("liked", liked))
    if disliked:
        arms.append(Arm("disliked", disliked))
    if len(arms) == 1:
        raise ExperimentError("the profile has no measured attribute with a non-zero weight to manipulate")
    return arms


def queries_dataset_name(experiment_id: int) -> str:
    return f"experiment-{experiment_id}-queries"


def pairs_dataset_name(experiment_id: int) -> str:
    return f"experiment-{experiment_id}"


# --------------------------------------------------------------------------- setting up


def read_queries(store: Store, source: dict[str, Any]) -> list[dict[str, Any]]:
    """[{query, baseline}] from a stored dataset (the baseline: the response of ``baseline_model``
    where named, else response B) or a JSONL / JSON file of {"query", optional "baseline"}."""
    if source.get("file"):
        path = Path(source["file"])
        text = path.read_text(encoding="utf-8")
        rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
        out = []
        for i, r in enumerate(rows):
            if isinstance(r, str):
                r = {"query": r}
            if not isinstance(r, dict) or not str(r.get("query") or "").strip():
                raise ExperimentError(f"{path}: item {i + 1} has no \"query\"")
            out.append({"query": str(r["query"]), "baseline": r.get("baseline") or r.get("response")})
        return out[: source["limit"]] if source.get("limit") else out
    dataset = source.get("dataset")
    if not dataset:
        raise ExperimentError("queries come from a stored dataset (--queries-dataset) or a file (--queries-file)")
    rows = store.samples_for(dataset, limit=source.get("limit"))
    if not rows:
        raise ExperimentError(f"no samples in dataset {dataset!r}")
    meta = store.pair_meta(dataset)
    want = source.get("baseline_model")
    out = []
    for r in rows:
        m = meta.get(r["id"], {})
        if want and m.get("model_a") == want:
            base = r["response_a"]
        elif want and m.get("model_b") != want:
            continue  # the baseline model did not answer this query
        else:
            base = r["response_b"]
        out.append({"query": r["query"], "baseline": base})
    if not out:
        raise ExperimentError(f"no sample of {dataset!r} has a response by {want!r}")
    return out


def create(store: Store, spec: Spec) -> int:
    """Store the experiment and its queries (nothing is sent): its id. The profile must exist and
    its feature set must be one new responses can be annotated with."""
    profile = _profile(store, spec)
    _annotation_plan(profile["feature_source"], spec)  # refuses a feature set that cannot be reproduced
    if not spec.arms:
        spec.arms = default_arms(profile, spec.top_k)
    if not any(a.name == CONTROL and not a.changes for a in spec.arms):
        spec.arms.insert(0, Arm(CONTROL))
    names = [a.name for a in spec.arms]
    if len(set(names)) != len(names):
        raise ExperimentError(f"arm names repeat: {names}")
    queries = read_queries(store, spec.queries)
    if not spec.baseline and any(not q["baseline"] for q in queries):
        raise ExperimentError("some queries have no baseline response: give a baseline endpoint (--baseline-model)")
    prov = {"created_at": now(), "seed": spec.seed, "prompt_version": prompts()["version"],
            "annotator_prompt_version": annotator_prompts()["version"], "profile_id": profile.get("id"),
            "profile_method": profile["method"], "feature_source": profile["feature_source"],
            "libraries": library_versions(), "queries": len(queries)}
    exp_id = store.add_experiment(spec.name, spec.to_dict(), prov)
    qds = queries_dataset_name(exp_id)
    samples = [Sample(dataset=qds, query=q["query"], response_a=q["baseline"] or "", response_b="", source_id=str(i),
                      occurrence=i, metadata={"experiment": exp_id}) for i, q in enumerate(queries)]
    store.write_batch(ImportBatch(Dataset(qds, source="experiment", description=f"queries of experiment {exp_id}: "
                                          "the stored baseline response as A (the generation requests hang on these)"),
                                  samples))
    store.update_experiment(exp_id, queries_dataset=qds, dataset=pairs_dataset_name(exp_id), spec=spec.to_dict())
    return exp_id


def _profile(store: Store, spec: Spec) -> dict[str, Any]:
    p = spec.profile
    return profile_for(store, p["dataset"], p.get("scope", "all"), p["judge"], feature_source=p.get("feature_source"),
                       method=p.get("method"))


def _annotation_plan(source: str, spec: Spec) -> tuple[str, LLMSettings | None, bool]:
    """How the pairs get the profile's features: ("heuristic", None, _) or ("llm", settings, both orders)."""
    fs = FeatureSet.parse(source)
    if fs.kind == "heuristic":
        if fs != HEURISTIC:
            raise ExperimentError(f"the profile's features came from heuristics {fs.version}; these are {HEURISTIC.version}")
        return "heuristic", None, False
    if fs.kind == "llm":
        if fs.version != annotator_prompts()["version"]:
            raise ExperimentError(f"the profile's features came from prompt version {fs.version}; this annotator's is "
                                  f"{annotator_prompts()['version']}: refit the profile on current annotations")
        return "llm", LLMSettings.from_env(**{**(spec.annotator or {}), "model": fs.model}), fs.both_orders
    raise ExperimentError(f"the profile's feature set {source!r} cannot be measured on new responses: use a profile "
                          f"fitted on {HEURISTIC_SOURCE} or on LLM annotations (llm:<model>:<version>)")


# --------------------------------------------------------------------------- generation


def system_prompt(arm: Arm) -> str:
    p = prompts()
    parts = [p["system"]]
    for kind, keys in (("show", arm.show), ("avoid", arm.avoid)):
        if keys:
            items = "\n".join(Template(p["item"]).safe_substitute(
                label=catalogue.attribute(k).label,
                definition=p.get("definitions", {}).get(k) or catalogue.attribute(k).definition) for k in keys)
            parts.append(Template(p[kind]).safe_substitute(items=items))
    return "\n\n".join(parts)


def _text(text: str | None, top_logprobs=None) -> str:
    if not (text or "").strip():
        raise ValueError("an empty answer")
    return text


def generation_request(query_sample: dict[str, Any], arm: Arm, max_tokens: int, *, step: str = "generate") -> Request:
    messages = [{"role": "system", "content": system_prompt(arm)}, {"role": "user", "content": query_sample["query"]}]
    return Request(query_sample["id"], step, "AB", messages, None, max_tokens, validate=_text,
                   prompt_version=prompts()["version"])


async def _generate(query_sample: dict[str, Any], runner, *, arms: Sequence[Arm], max_tokens: int,
                    step: str = "generate") -> bool:
    got = await gather_all({a.name: runner.run(generation_request(query_sample, a, max_tokens, step=step))
                            for a in arms})
    return all(v is not None for v in got.values())


def _answers(store: Store, queries: list[dict[str, Any]], arms: Sequence[Arm], settings: LLMSettings, max_tokens: int,
             step: str = "generate") -> dict[tuple[str, str], str]:
    """(query sample id, arm) -> the stored answer, for the requests that succeeded."""
    dialect = endpoint_dialect(store, settings, probe=False)
    version = prompts()["version"]
    reqs = {(q["id"], a.name): generation_request(q, a, max_tokens, step=step).finalize(settings, version, dialect)
            for q in queries for a in arms}
    cached = store.cached_annotations([r.key for r in reqs.values()])
    return {k: cached[r.key] for k, r in reqs.items() if isinstance(cached.get(r.key), str)}


# --------------------------------------------------------------------------- running


@dataclass
class Outcome:
    status: str  # done, paused, cancelled, failed
    message: str
    done: int = 0
    total: int = 0


def _stopped(pr) -> Outcome | None:
    if pr.fatal:
        return Outcome("failed", f"stopped early: {pr.fatal}", pr.done, pr.total)
    if pr.stopped == "cancelled":
        return Outcome("cancelled", "cancelled by user; resume to continue", pr.done, pr.total)
    if pr.stopped:
        return Outcome("paused", f"stopped: {pr.stopped}; resume with a larger budget to continue", pr.done, pr.total)
    return None


def run(store: Store, experiment_id: int, *, budget: float | None = None, job_id: int | None = None,
        spent: Callable[[], float] = lambda: 0.0, should_stop: Callable[[], bool] | None = None,
        on_stage: Callable[[str, int, int], None] | None = None) -> Outcome:
    """Run (or resume) an experiment's five stages. ``budget`` covers the whole job; ``spent()``
    says what its requests have cost so far (all runs), so each stage gets what is left."""
    exp = store.experiment(experiment_id)
    if exp is None:
        raise ExperimentError(f"no experiment {experiment_id}")
    spec = Spec.from_dict(exp["spec"])
    store.update_experiment(experiment_id, status="running", job_id=job_id)
    queries = store.samples_for(exp["queries_dataset"])

    def left() -> float | None:
        return None if budget is None else max(0.0, budget - spent())

    def stage(name: str):
        def progress(pr) -> None:
            if on_stage:
                on_stage(name, pr.done, pr.total)
        return progress

    def stop(out: Outcome) -> Outcome:
        store.update_experiment(experiment_id, status=out.status)
        return out

    common = dict(job_id=job_id, should_stop=should_stop)
    model = LLMSettings.from_env(**spec.model)
    pr = run_work(store, queries, model, _generate, {"arms": spec.arms, "max_tokens": spec.max_tokens},
                  budget=left(), on_progress=stage("generate"), **common)
    if (out := _stopped(pr)):
        return stop(out)
    base_settings = LLMSettings.from_env(**spec.baseline) if spec.baseline else None
    if base_settings is not None:
        pr = run_work(store, queries, base_settings, _generate,
                      {"arms": [Arm(CONTROL)], "max_tokens": spec.max_tokens, "step": "baseline"},
                      budget=left(), on_progress=stage("baseline"), **common)
        if (out := _stopped(pr)):
            return stop(out)
    pairs = write_pairs(store, experiment_id, spec, queries, model, base_settings)
    if not pairs:
        return stop(Outcome("failed", "no query got both an arm's answer and a baseline answer; resume to retry"))

    profile = _profile(store, spec)
    how, annotator, both = _annotation_plan(profile["feature_source"], spec)
    if on_stage:
        on_stage("annotate", 0, len(pairs))
    if how == "heuristic":
        run_heuristics(store, pairs)
    else:
        pr = run_annotation(store, pairs, annotator, both_orders=both, budget=left(), on_progress=stage("annotate"),
                            **common)
        if (out := _stopped(pr)):
            return stop(out)
    judge = LLMSettings.from_env(**spec.judge)
    from .judges import collect_labels

    pr = collect_labels(store, pairs, judge, judge=spec.judge_name, both_orders=True, budget=left(),
                        on_progress=stage("judge"), **common)
    if (out := _stopped(pr)):
        return stop(out)
    result = measure(store, experiment_id)
    store.update_experiment(experiment_id, status="done", result=result, finished_at=now())
    missing = len(queries) * len(spec.arms) - len(pairs)
    msg = f"finished: {len(pairs)} pairs judged over {len(spec.arms)} arms"
    if missing or pr.failed:
        msg += f"; {missing} answers and {pr.failed} verdicts missing (resume to retry them)"
    return Outcome("done", msg, len(pairs), len(queries) * len(spec.arms))


def write_pairs(store: Store, experiment_id: int, spec: Spec, queries: list[dict[str, Any]], model: LLMSettings,
                base_settings: LLMSettings | None) -> list[dict[str, Any]]:
    """Each arm's answers as pair samples against the baseline's (stored once; a rerun adds only new ones)."""
    answers = _answers(store, queries, spec.arms, model, spec.max_tokens)
    if base_settings is not None:
        base = {q: t for (q, _), t in _answers(store, queries, [Arm(CONTROL)], base_settings, spec.max_tokens,
                                                step="baseline").items()}
    else:
        base = {q["id"]: q["response_a"] for q in queries}
    ds = pairs_dataset_name(experiment_id)
    samples = []
    for i, arm in enumerate(spec.arms):
        for j, q in enumerate(queries):
            text, b = answers.get((q["id"], arm.name)), base.get(q["id"])
            if text and b:
                samples.append(Sample(dataset=ds, query=q["query"], response_a=text, response_b=b,
                                      model_a=spec.arm_model(arm.name), model_b=spec.baseline_model,
                                      category=arm.name, source_id=q["id"], occurrence=i * 1_000_000 + j,
                                      metadata={"experiment": experiment_id, "arm": arm.name}))
    if samples:
        store.write_batch(ImportBatch(Dataset(ds, source="experiment", description=f"experiment {experiment_id} "
                                              f"({spec.name}): each arm's answer (A) against the baseline's (B)"),
                                      samples))
    return store.samples_for(ds) if samples else []


# --------------------------------------------------------------------------- estimate


@dataclass
class CostEstimate:
    requests: int
    cached: int
    cost: float
    price_known: bool
    by_stage: dict[str, dict[str, float]] = field(default_factory=dict)

    def text(self) -> str:
        from .prices import fmt_cost

        lines = [f"{self.requests} requests to send ({self.cached} already answered), estimated "
                 f"{fmt_cost(self.cost, known=self.price_known)} (an upper bound for generation: max_tokens)"]
        for k, v in self.by_stage.items():
            lines.append(f"  {k:<9} {int(v['requests']):>6} requests  {fmt_cost(v['cost'], known=self.price_known)}")
        return "\n".join(lines)


def estimate(store: Store, experiment_id: int) -> CostEstimate:
    """The cost of what is still to send, before anything is sent: generation at ``max_tokens`` per
    answer, judging and LLM annotation on stand-in answers of that length where answers are not in yet."""
    from .judges import plan_judge_requests

    exp = store.experiment(experiment_id)
    spec = Spec.from_dict(exp["spec"])
    queries = store.samples_for(exp["queries_dataset"])
    by: dict[str, dict[str, float]] = {}
    cached = 0
    known = True

    def count(name: str, settings: LLMSettings, reqs: list[Request]) -> None:
        nonlocal cached, known
        dialect = endpoint_dialect(store, settings, probe=False)
        for r in reqs:
            r.finalize(settings, r.prompt_version or annotator_prompts()["version"], dialect)
        done = store.cached_annotations([r.key for r in reqs])
        st = by.setdefault(name, {"requests": 0, "cost": 0.0})
        for r in reqs:
            if r.key in done:
                cached += 1
                continue
            st["requests"] += 1
            st["cost"] += r.estimate_cost(settings)
        known = known and settings.price.known

    model = LLMSettings.from_env(**spec.model)
    count("generate", model, [generation_request(q, a, spec.max_tokens) for q in queries for a in spec.arms])
    if spec.baseline:
        count("baseline", LLMSettings.from_env(**spec.baseline),
              [generation_request(q, Arm(CONTROL), spec.max_tokens, step="baseline") for q in queries])
    pairs = store.samples_for(exp["dataset"]) if exp.get("dataset") else []
    if not pairs:  # stand-ins: answers of a typical length for max_tokens
        stand_in = " ".join(["word"] * int(spec.max_tokens * 0.75))
        pairs = [{"id": f"{q['id']}:{a.name}", "query": q["query"], "response_a": stand_in,
                  "response_b": q["response_a"] or stand_in, "words_a": 0, "words_b": 0}
                 for q in queries for a in spec.arms]
    count("judge", LLMSettings.from_env(**spec.judge), [r for s in pairs for r in plan_judge_requests(s, True)])
    how, annotator, both = _annotation_plan(_profile(store, spec)["feature_source"], spec)
    if how == "llm":
        count("annotate", annotator, [r for s in pairs for r in plan_requests(s, both)])
    total = sum(v["cost"] for v in by.values())
    return CostEstimate(requests=int(sum(v["requests"] for v in by.values())), cached=cached, cost=total,
                        price_known=known, by_stage=by)


# --------------------------------------------------------------------------- measuring and predicting


def _score(choice: str) -> float:
    return {"A": 1.0, "B": 0.0, "tie": 0.5}[choice]


def predicted(X: np.ndarray, W: np.ndarray, intercept: bool, half_nu: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per draw: (mean over pairs of P(A preferred), label-noise variance of the observed rate), both
    presentation orders averaged (the position term once for A first, once against it). P is the
    expected score with ties counting 1/2 for a profile fitted with Davidson's ties."""
    n = X.shape[0]
    if n == 0:
        return np.full(W.shape[0], np.nan), np.zeros(W.shape[0])
    off = 1 if intercept else 0
    z = X @ W[:, off:].T.astype(float)  # (n, D)
    b = W[:, 0].astype(float) if intercept else np.zeros(W.shape[0])

    hn = None if half_nu is None else half_nu.astype(float)
    p = 0.5 * (expected_score(z + b, hn) + expected_score(z - b, hn))
    return p.mean(axis=0), (p * (1 - p)).sum(axis=0) / n ** 2


def _estimate(means: np.ndarray, var: np.ndarray) -> dict[str, float]:
    return asdict(Estimate.from_draws(means, INTERVAL_PROB, var=var))


def _shift_estimate(diff: np.ndarray, var: np.ndarray) -> dict[str, float]:
    """A difference of rates in [-1, 1]: credible quantiles of the per-draw difference, and the
    predictive interval of the observed difference (the mixture over draws of Normal(diff, var)),
    through ``predictive_interval`` on (diff + 1) / 2."""
    lo, hi = np.quantile(diff, tails())
    plo, phi = predictive_interval((diff + 1) / 2, var / 4, INTERVAL_PROB)
    return {"mean": float(diff.mean()), "lo": float(lo), "hi": float(hi), "pred_lo": 2 * plo - 1,
            "pred_hi": 2 * phi - 1}


def measure(store: Store, experiment_id: int) -> dict[str, Any]:
    """The experiment's result from what is stored: per arm the measured win rate and shift, the
    predicted ones, and per asked-for attribute the realised success rate (see the module doc)."""
    exp = store.experiment(experiment_id)
    spec = Spec.from_dict(exp["spec"])
    profile = _profile(store, spec)
    source = profile["feature_source"]
    keys = list(catalogue.attribute_keys())
    col = {k: j for j, k in enumerate(keys)}
    arm_of = {spec.arm_model(a.name): a.name for a in spec.arms}

    feats: dict[str, dict[str, np.ndarray]] = {a.name: {} for a in spec.arms}  # arm -> query -> features
    for r in store.experiment_features(exp["dataset"], source):
        arm = arm_of.get(r["model_a"])
        if arm is None:
            continue
        x = feats[arm].setdefault(r["source_id"], np.zeros(len(keys)))
        if r["attribute"] in col:
            x[col[r["attribute"]]] = r["value"]
    scores: dict[str, dict[str, float]] = {a.name: {} for a in spec.arms}
    for r in store.experiment_labels(exp["dataset"], spec.judge_name):
        arm = arm_of.get(r["model_a"])
        if arm is not None:
            scores[arm][r["source_id"]] = _score(r["choice"])

    W, intercept = profile_draws(profile, keys)
    half_nu = tie_draws(profile)
    skip = set(unmeasured(profile))
    per: dict[str, Any] = {}
    draws: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for arm in spec.arms:
        qs = [q for q in scores[arm.name] if q in feats[arm.name]]  # judged and annotated
        X = np.array([feats[arm.name][q] for q in qs]).reshape(len(qs), len(keys))
        m, v = predicted(X, W, intercept, half_nu)
        draws[arm.name] = (m, v)
        s = np.array([scores[arm.name][q] for q in qs])
        wins = float(s.sum())
        lo, hi = jeffreys(wins, len(s))
        per[arm.name] = {"arm": arm.name, "show": list(arm.show), "avoid": list(arm.avoid), "n": len(qs),
                         "measured": {"rate": wins / len(s) if len(s) else None, "lo": lo, "hi": hi},
                         "predicted": _estimate(m, v) if len(qs) else None, "_scores": s, "_queries": qs}
    control = per.get(CONTROL)
    for arm in spec.arms:
        row = per[arm.name]
        row["shift"] = row["predicted_shift"] = row["simulated"] = None
        row["success"] = {}
        if arm.name == CONTROL or control is None or not row["n"] or not control["n"]:
            continue
        s, c = row["_scores"], control["_scores"]
        d = float(s.mean() - c.mean())
        se = math.sqrt(s.var(ddof=1) / len(s) + c.var(ddof=1) / len(c)) if len(s) > 1 and len(c) > 1 else float("nan")
        lo, hi = normal_interval(d, se)
        row["shift"] = {"mean": d, "lo": lo, "hi": hi}
        (ma, va), (mc, vc) = draws[arm.name], draws[CONTROL]
        row["predicted_shift"] = _shift_estimate(ma - mc, va + vc)
        # realised success per asked-for attribute: against the control's comparison on the same query
        shared = [q for q in feats[arm.name] if q in feats[CONTROL]]
        rates = []
        for k, t in arm.changes:
            a = np.array([feats[arm.name][q][col[k]] for q in shared])
            b = np.array([feats[CONTROL][q][col[k]] for q in shared])
            can = b != t
            moved = (a - b) * t > 0
            rate = float(moved[can].mean()) if can.any() else None
            row["success"][k] = {"direction": "show" if t > 0 else "avoid", "rate": rate, "moved": int(moved.sum()),
                                 "could_move": int(can.sum()), "queries": len(shared),
                                 "at_target_arm": float((a == t).mean()) if len(a) else None,
                                 "at_target_control": float((b == t).mean()) if len(b) else None,
                                 "measured_by_profile": k not in skip}
            rates.append((k, t, rate))
        row["simulated"] = _simulated(control, feats[CONTROL], W, intercept, half_nu, col, rates, skip, mc)
    for row in per.values():
        row.pop("_scores")
        row.pop("_queries")
    return {"arms": [per[a.name] for a in spec.arms], "judge": spec.judge_name, "feature_source": source,
            "profile": {"id": profile.get("id"), "dataset": profile["dataset"], "scope": profile["scope"],
                        "judge": profile["judge"], "method": profile["method"], "draws": int(W.shape[0])},
            "interval": INTERVAL_PROB, "measured_at": now()}


def _simulated(control: dict, ctrl_feats: dict[str, np.ndarray], W, intercept, half_nu, col, rates, skip,
               control_means) -> dict[str, Any] | None:
    """The Simulator's a-priori prediction: the control's pairs with each asked-for change taking
    effect at its realised success rate (``simulate.simulate_arrays``, both orders averaged)."""
    changes = [(col[k], t, r) for k, t, r in rates if r is not None and k not in skip]
    qs = control["_queries"]
    if not changes or not qs or len(changes) > 6:
        return None
    X = np.array([ctrl_feats[q] for q in qs], dtype=float)
    off = 1 if intercept else 0
    afters, vars_ = [], []
    for side in ((1.0, -1.0) if intercept else (0.0,)):
        Xo = np.hstack([np.full((len(qs), 1), side), X]) if intercept else X
        res = simulate_arrays(Xo, W, [c + off for c, _, _ in changes], [t for _, t, _ in changes],
                              [r for _, _, r in changes], half_nu=half_nu)
        afters.append(res.after)
        vars_.append(res.var_after)
    after, var = np.mean(afters, axis=0), np.mean(vars_, axis=0)
    out = _estimate(after, var)
    out["shift"] = float((after - control_means).mean())
    return out


# --------------------------------------------------------------------------- reading results


def arms_frame(result: dict[str, Any]):
    """One row per arm: measured and predicted win rates and shifts with their intervals."""
    import pandas as pd

    rows = []
    for a in result.get("arms", []):
        m, p, s, ps, sim = a["measured"], a.get("predicted") or {}, a.get("shift") or {}, \
            a.get("predicted_shift") or {}, a.get("simulated") or {}
        rows.append({"arm": a["arm"], "show": ", ".join(a["show"]), "avoid": ", ".join(a["avoid"]), "n": a["n"],
                     "measured": m["rate"], "measured_lo": m["lo"], "measured_hi": m["hi"],
                     "predicted": p.get("mean"), "predicted_lo": p.get("lo"), "predicted_hi": p.get("hi"),
                     "predicted_pred_lo": p.get("pred_lo"), "predicted_pred_hi": p.get("pred_hi"),
                     "shift": s.get("mean"), "shift_lo": s.get("lo"), "shift_hi": s.get("hi"),
                     "predicted_shift": ps.get("mean"), "predicted_shift_pred_lo": ps.get("pred_lo"),
                     "predicted_shift_pred_hi": ps.get("pred_hi"), "simulated": sim.get("mean"),
                     "simulated_pred_lo": sim.get("pred_lo"), "simulated_pred_hi": sim.get("pred_hi")})
    return pd.DataFrame(rows)


def success_frame(result: dict[str, Any]):
    """One row per (arm, asked-for attribute): the realised success rate and its counts."""
    import pandas as pd

    rows = [{"arm": a["arm"], "attribute": k, **v} for a in result.get("arms", []) for k, v in a["success"].items()]
    return pd.DataFrame(rows, columns=["arm", "attribute", "direction", "rate", "moved", "could_move", "queries",
                                       "at_target_arm", "at_target_control", "measured_by_profile"])


def within(result: dict[str, Any]) -> dict[str, bool]:
    """Per manipulated arm: whether the measured shift lies in the predicted shift's predictive interval."""
    out = {}
    for a in result.get("arms", []):
        if a.get("shift") and a.get("predicted_shift"):
            ps = a["predicted_shift"]
            out[a["arm"]] = ps["pred_lo"] <= a["shift"]["mean"] <= ps["pred_hi"]
    return out


def export(store: Store, experiment_id: int, fmt: str = "json", what: str = "arms") -> str:
    """A finished experiment as JSON (record and result) or CSV (``what``: the arms' table or the
    attributes' success rates), CSV through ``safecsv`` only."""
    exp = store.experiment(experiment_id)
    if exp is None:
        raise ExperimentError(f"no experiment {experiment_id}")
    if fmt == "json":
        return json.dumps(exp, indent=2, sort_keys=True, default=str)
    if not exp.get("result"):
        raise ExperimentError(f"experiment {experiment_id} has no result yet (status {exp['status']})")
    from .safecsv import to_csv

    frame = arms_frame(exp["result"]) if what == "arms" else success_frame(exp["result"])
    return to_csv(frame, index=False)
