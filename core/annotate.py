"""Annotation: an LLM rates the attributes of each pair, resumably, within budget.

Per sample (DESIGN.md step 3): scenario classification when the sample has none; query
analysis; pairwise 0-3 ratings of the general attributes; the conditional ratings where the
query analysis found the case; a reference answer when the sample has none; error detection
against it. Length needs no LLM. Pairwise steps can run in both presentation orders, which are
reconciled (mean ratings) and reported as per-attribute order consistency.

Every request is keyed by a hash of (model, prompt version, step, order, messages, parameters)
and stored the moment it returns (``Runner``); a rerun, a resume after a crash or a second worker
skips every request that already succeeded, so nothing is paid for twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Any, Awaitable, Callable, Literal

from pydantic import BaseModel, Field, create_model

from . import catalogue, features
from .llm import (LLM, OPENAI_DIALECT, Dialect, LLMError, LLMSettings, messages_tokens, settle_dialect,
                  strict_schema)
from .records import Feature
from .store import Store

PROMPTS_FILE = Path(__file__).resolve().parent / "data" / "prompts.json"

#: typical answer lengths (tokens) per step, for cost estimates before any answer exists
TYPICAL_OUTPUT = {"scenario": 12, "query": 120, "ratings": 900, "conditional": 200, "reference": 450,
                  "errors": 220, "judge": 1}


@lru_cache(maxsize=4)
def _prompts(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def prompts() -> dict[str, Any]:
    """The versioned prompt set (``PREFDISSECT_PROMPTS`` may point at another file of that shape)."""
    return _prompts(os.environ.get("PREFDISSECT_PROMPTS") or str(PROMPTS_FILE))


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


@dataclass
class Request:
    sample_id: str
    step: str
    orientation: str  # "AB": response 1 is A; "BA": response 1 is B
    messages: list[dict[str, str]]
    schema: type[BaseModel] | None
    max_tokens: int
    logprobs: int = 0
    validate: Callable[..., Any] | None = None  # for answers without a schema: (text, top_logprobs)
    check: Callable[[Any], None] | None = None  # a parsed answer's sanity (raises ValueError: degraded)
    key: str = ""
    #: the version of the prompt set this request's messages come from, when not the annotator's
    #: (the experiment's generation prompts are versioned apart: core/data/experiment_prompts.json)
    prompt_version: str | None = None

    def finalize(self, settings: LLMSettings, prompt_version: str, dialect: Dialect | None = None) -> "Request":
        """Key the request. The key holds the response mode and a folded system message where they
        differ from OpenAI's (so an answer got in plain JSON mode is never taken for a schema-bound
        one), and the answer's room where the ``max_tokens`` setting lowers it."""
        body = {
            "model": settings.model, "prompt_version": self.prompt_version or prompt_version, "step": self.step,
            "orientation": self.orientation, "messages": self.messages, "temperature": settings.temperature,
            "max_tokens": min(self.max_tokens, max(1, settings.max_tokens)), "logprobs": self.logprobs,
            "schema": schema_digest(self.schema) if self.schema else None,
        }
        d = settle_dialect(settings, dialect or Dialect())
        if self.schema is not None and d.mode != "json_schema":
            body["mode"] = d.mode
        if not d.system_role:
            body["system"] = "folded"
        self.key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return self

    def estimate_cost(self, settings: LLMSettings) -> float:
        return settings.cost(messages_tokens(self.messages), TYPICAL_OUTPUT.get(self.step, self.max_tokens))


@lru_cache(maxsize=256)
def schema_digest(schema: type[BaseModel]) -> str:
    """A hash of the answer schema as sent, part of every request key."""
    return hashlib.sha256(json.dumps(strict_schema(schema), sort_keys=True).encode()).hexdigest()


def annotation_id(request_key: str, sample_id: str) -> str:
    return hashlib.sha256(f"{request_key}\x1f{sample_id}".encode()).hexdigest()[:32]


def messages_sha(messages: list[dict[str, str]]) -> str:
    """A hash of the messages alone, kept with each answer to trace which request it was."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def _messages(step: str, **values: str) -> list[dict[str, str]]:
    p = prompts()
    spec = p["steps"][step]
    return [
        {"role": "system", "content": spec.get("system", p["system"])},
        {"role": "user", "content": Template(spec["template"]).safe_substitute(**values)},
    ]


def _pair(sample: dict[str, Any], orientation: str) -> dict[str, str]:
    a, b = sample["response_a"], sample["response_b"]
    r1, r2 = (a, b) if orientation == "AB" else (b, a)
    return {"query": sample["query"], "response_1": r1, "response_2": r2}


def scenario_request(sample) -> Request:
    groups = "\n".join(f"- {g.key}: {g.description}" for g in catalogue.scenario_groups())
    return Request(sample["id"], "scenario", "AB", _messages("scenario", groups=groups, query=sample["query"]),
                   _scenario_schema(tuple(catalogue.group_keys())), prompts()["steps"]["scenario"]["max_tokens"])


def query_request(sample) -> Request:
    return Request(sample["id"], "query", "AB", _messages("query", query=sample["query"]), QueryAnalysis,
                   prompts()["steps"]["query"]["max_tokens"])


def ratings_request(sample, orientation: str) -> Request:
    attrs = "\n".join(f"- {a.rated_key}: {a.annotated_definition or a.definition}" for a in general_attributes())
    schema = _ratings_schema(tuple(a.rated_key for a in general_attributes()))
    return Request(sample["id"], "ratings", orientation, _messages("ratings", attributes=attrs, **_pair(sample, orientation)),
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
                   _messages("conditional", checks="\n".join(checks), **_pair(sample, orientation)),
                   _conditional_schema(tuple(parts)), prompts()["steps"]["conditional"]["max_tokens"])


class Reference(BaseModel):
    answer: str = Field(min_length=1)


def reference_request(sample) -> Request:
    return Request(sample["id"], "reference", "AB", _messages("reference", query=sample["query"]), Reference,
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
                   _messages("errors", reference=reference, **_pair(sample, orientation)), ErrorCheck,
                   prompts()["steps"]["errors"]["max_tokens"])


# ---------------------------------------------------------------- running requests


class BudgetReached(Exception):
    pass


@dataclass
class Progress:
    total: int = 0  # samples
    done: int = 0
    failed: int = 0  # samples with at least one failed request
    requests: int = 0  # sent
    cached: int = 0  # answered from the store
    request_failures: int = 0
    cost: float = 0.0
    stopped: str | None = None  # why the run stopped early (budget, cancelled, a deterministic failure)
    errors: list[str] = field(default_factory=list)  # the latest failure reasons
    fatal: str | None = None  # every request failed for one deterministic reason: it, in one line
    estimated: int = 0  # requests whose usage is an estimate (timed out: the server never said)


class Runner:
    """Sends requests through one LLM, never twice: store-first, budget-checked, recorded.

    Store reads and writes run on one thread of their own with its own connection (``db``), so
    the event loop keeps serving the other requests in flight while SQLite commits or waits for
    another process's lock; a coroutine still awaits its answer's commit before using it."""

    def __init__(self, store: Store, llm: LLM, *, budget: float | None = None, job_id: int | None = None,
                 progress: Progress | None = None, on_result: Callable[[], None] | None = None):
        self.store = store
        self.llm = llm
        self.settings = llm.settings
        self.version = prompts()["version"]
        self.budget = budget
        self.job_id = job_id
        self.progress = progress or Progress()
        self.reserved = 0.0
        self.on_result = on_result
        self.stop_reason: str | None = None
        self.inflight: dict[str, asyncio.Future] = {}
        self.successes = 0
        self.first_failures: list[LLMError] = []  # failures before the first success
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-io")
        self._io_store: Store | None = None

    async def db(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a Store method on the store thread."""

        def call():
            if self._io_store is None:
                self._io_store = Store(self.store.path)
            return getattr(self._io_store, method)(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._io, call)

    def close(self) -> None:
        def close_store():
            if self._io_store is not None:
                self._io_store.close()

        self._io.submit(close_store).result()
        self._io.shutdown()

    async def run(self, req: Request) -> Any:
        """The parsed answer (dict, or text for schema-less steps), or None when it failed.

        Identical requests (the same query in several samples, repeated pairs) are sent once:
        answered from the store, or joined to the one in flight."""
        req.finalize(self.settings, self.version, self.llm.dialect)
        row_id = annotation_id(req.key, req.sample_id)
        cached = await self.db('cached_annotations', [req.key])
        if req.key in cached:
            self.progress.cached += 1
            await self.db('reuse_annotation', req.key, req.sample_id, row_id)
            return cached[req.key]
        if req.key in self.inflight:
            parsed = await asyncio.shield(self.inflight[req.key])
            self.progress.cached += 1
            if parsed is not None:
                await self.db('reuse_annotation', req.key, req.sample_id, row_id)
            return parsed
        future = asyncio.get_running_loop().create_future()
        self.inflight[req.key] = future
        try:
            parsed = await self._send(req, row_id)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(e)
                future.exception()  # mark retrieved: joiners re-raise it, nobody else needs to
            raise
        else:
            future.set_result(parsed)
            return parsed
        finally:
            del self.inflight[req.key]

    async def _send(self, req: Request, row_id: str) -> Any:
        if self.stop_reason:
            raise BudgetReached(self.stop_reason)
        estimate = req.estimate_cost(self.settings)
        if self.budget is not None and self.progress.cost + self.reserved + estimate > self.budget:
            self.stop_reason = f"budget of ${self.budget:.4f} reached (spent ${self.progress.cost:.4f})"
            raise BudgetReached(self.stop_reason)
        self.reserved += estimate
        row = {"id": row_id, "request_key": req.key, "sample_id": req.sample_id, "annotator": self.settings.model,
               "prompt_version": req.prompt_version or self.version, "step": req.step, "orientation": req.orientation,
               "params": {"temperature": self.settings.temperature, "max_tokens": req.max_tokens,
                          "base_url": self.settings.base_url, "messages_sha": messages_sha(req.messages),
                          **({"mode": self.llm.mode} if req.schema is not None else {})},
               "job_id": self.job_id}
        try:
            c = await self.llm.complete(req.messages, schema=req.schema, max_tokens=req.max_tokens,
                                        logprobs=req.logprobs, validate=req.validate)
            if req.check is not None:
                try:
                    req.check(c.parsed.model_dump() if isinstance(c.parsed, BaseModel) else c.parsed)
                except ValueError as e:  # degraded: paid for, recorded as failed, never used
                    raise LLMError(str(e), raw=c.content, usage=(c.prompt_tokens, c.completion_tokens),
                                   attempts=c.attempts, latency_s=c.latency_s, kind="placeholder") from e
        except LLMError as e:
            cost = self.settings.cost(*e.usage)
            await self.db('record_annotation', {**row, "raw": e.raw, "parsed": None, "prompt_tokens": e.usage[0],
                                          "completion_tokens": e.usage[1], "cost": cost, "latency_s": e.latency_s,
                                          "status": "failed", "error": str(e), "attempts": e.attempts,
                                          "usage_estimated": int(e.estimated)})
            self._account(estimate, cost, failed=e)
            return None
        parsed = c.parsed.model_dump() if isinstance(c.parsed, BaseModel) else c.parsed
        if req.logprobs:
            parsed = {"text": c.content, "top_logprobs": c.top_logprobs}
        await self.db('record_annotation', {**row, "raw": c.content, "parsed": parsed, "prompt_tokens": c.prompt_tokens,
                                      "completion_tokens": c.completion_tokens, "cost": c.cost,
                                      "latency_s": c.latency_s, "status": "ok", "error": None,
                                      "attempts": c.attempts})
        self._account(estimate, c.cost)
        return parsed

    #: failures in a row, before any success, that stop a run when they share one deterministic reason
    #: (twice as many when the reason is the model's answers rather than the server's rejection)
    FATAL_AFTER = 4

    def _account(self, estimate: float, cost: float, failed: LLMError | None = None) -> None:
        self.reserved -= estimate
        p = self.progress
        p.requests += 1
        p.cost += cost
        if failed is not None:
            p.request_failures += 1
            p.errors = (p.errors + [str(failed)])[-5:]
            p.estimated += int(failed.estimated)
            if not self.successes:
                self.first_failures.append(failed)
                self._maybe_fatal()
        else:
            self.successes += 1
        if self.on_result:
            self.on_result()

    def _maybe_fatal(self) -> None:
        """Stop when the first requests all failed the same deterministic way: sending the rest
        would fail (and be paid for) again. The reason is kept in one line with what to change."""
        fs = self.first_failures
        # a server's rejection repeats for sure; a model's unusable answers only probably: more of them
        needed = self.FATAL_AFTER * (2 if fs and fs[0].kind in ("schema", "placeholder", "refused") else 1)
        if len(fs) < needed or self.stop_reason:
            return
        if all(f.deterministic for f in fs) and len({(f.kind, _gist(str(f))) for f in fs}) == 1:
            self.progress.fatal = f"every request failed the same way ({len(fs)} of {len(fs)}): " \
                                  f"{_gist(str(fs[0]), 240)}. {_advice(fs[0].kind)}"
            self.stop_reason = self.progress.fatal


def _gist(text: str, n: int = 120) -> str:
    """An error's words without what varies between requests (numbers, quoted answers)."""
    import re

    return re.sub(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?", "…", " ".join(text.split()))[:n]


def _advice(kind: str) -> str:
    return {
        "status 401": "Check the API key (PREFDISSECT_LLM_API_KEY).",
        "status 403": "Check the API key's permissions.",
        "status 404": "Check --model and --base-url (the server does not know this model or path).",
        "cut off": "Raise --max-tokens / PREFDISSECT_LLM_MAX_TOKENS.",
        "refused": "The model refuses these prompts: try another model.",
        "placeholder": "The model fills in templates instead of answering: try another model or response mode.",
        "schema": "The model's answers do not follow the format: try another model, or force a response mode "
                  "(PREFDISSECT_LLM_RESPONSE_MODE) the server enforces.",
    }.get(kind, "The server rejects these requests: check its options, or force a response mode "
                "(PREFDISSECT_LLM_RESPONSE_MODE) or the system role (PREFDISSECT_LLM_SYSTEM_ROLE).")


async def gather_all(named: dict[str, Any]) -> dict[str, Any]:
    """Await every request even when one hits the budget, so no answer already paid for is
    dropped; then re-raise the first failure."""
    values = await asyncio.gather(*named.values(), return_exceptions=True)
    for v in values:
        if isinstance(v, BaseException):
            raise v
    return dict(zip(named, values))


async def run_samples(samples: list[dict[str, Any]], work: Callable, runner: Runner,
                      should_stop: Callable[[], bool] | None = None,
                      more: Callable[[], Awaitable[list[dict[str, Any]] | None]] | None = None) -> Progress:
    """Run ``work(sample, runner) -> bool (ok)`` over samples with bounded concurrency.

    ``more``: where further samples come from once these are started (shared work: another
    process takes what this one does not), None when there are no more."""
    p = runner.progress
    p.total = len(samples)
    queue = list(reversed(samples))
    width = max(1, runner.settings.concurrency * 2)
    fetching = asyncio.Lock()
    exhausted = more is None

    async def refill() -> None:
        nonlocal exhausted
        async with fetching:  # one fetch at a time: the end of the work is seen once
            if queue or exhausted:
                return
            got = await more()
            if got is None:
                exhausted = True
            else:
                p.total += len(got)
                queue.extend(reversed(got))

    async def worker():
        while not runner.stop_reason:
            if not queue:
                await refill()
                if not queue:
                    break
            if should_stop and should_stop():
                runner.stop_reason = "cancelled"
                break
            sample = queue.pop()
            try:
                ok = await work(sample, runner)
            except BudgetReached:
                return
            p.done += 1
            if not ok:
                p.failed += 1
            if runner.on_result:
                runner.on_result()

    workers = [asyncio.ensure_future(worker()) for _ in range(width)]

    async def watch() -> None:
        """Cancel: stop the requests in flight within a second or two (their connections close,
        nothing half-answered is stored), rather than waiting out each one's answer or timeout."""
        while True:
            await asyncio.sleep(CANCEL_POLL_S)
            if should_stop():
                runner.stop_reason = runner.stop_reason or "cancelled"
                for w in workers:
                    w.cancel()
                return

    watcher = asyncio.ensure_future(watch()) if should_stop else None
    try:
        await asyncio.gather(*workers, return_exceptions=True)
    finally:
        if watcher is not None:
            watcher.cancel()
    for w in workers:  # a failure (not a cancel) in a worker is the run's failure
        if not w.cancelled() and w.exception() is not None:
            raise w.exception()
    p.stopped = runner.stop_reason
    return p


#: how often a run asks whether it was cancelled while requests are in flight
CANCEL_POLL_S = 0.5


# ---------------------------------------------------------------- one sample


def feature_source(model: str, both_orders: bool) -> str:
    return f"llm:{model}:{prompts()['version']}" + (":both" if both_orders else "")


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
        row = store.conn.execute(
            "SELECT COUNT(*), SUM(json_extract(provenance, '$.ab') = json_extract(provenance, '$.ba'))"
            " FROM features WHERE source = ? AND attribute = ? AND json_extract(provenance, '$.ab') IS NOT NULL",
            (source, key),
        ).fetchone()
        out[key] = (row[1] / row[0]) if row[0] else None
    return out


def run_annotation(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, *, both_orders: bool = False,
                   budget: float | None = None, job_id: int | None = None,
                   on_progress: Callable[[Progress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, processes: int | None = None) -> Progress:
    """Annotate ``samples`` (blocking). Already answered requests are not sent again."""
    return run_work(store, samples, settings, "annotate", {"both_orders": both_orders}, budget=budget,
                    job_id=job_id, on_progress=on_progress, should_stop=should_stop, processes=processes)


#: requests in flight one process drives well; above it the work is split over processes
IN_FLIGHT_PER_PROCESS = 64


def _work_fn(name: str) -> Callable:
    if name == "annotate":
        return annotate_sample
    from .judges import judge_sample

    return judge_sample


def run_work(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, work: str | Callable,
             kwargs: dict[str, Any], *,
             budget: float | None = None, job_id: int | None = None,
             on_progress: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] | None = None,
             processes: int | None = None,
             more: Callable[[], Awaitable[list[dict[str, Any]] | None]] | None = None) -> Progress:
    """Run ``work`` ("annotate" or "judge", or a coroutine function ``work(sample, runner, **kwargs)
    -> bool`` of a module above this one, run in this process) over samples through one LLM endpoint.

    One process drives about IN_FLIGHT_PER_PROCESS requests in flight before the HTTP client's
    own CPU cost becomes the limit; above that the samples are split over processes (by query,
    so identical requests stay in one process and are still sent once), each with its share of
    the concurrency and of the budget."""
    if processes is None:
        processes = min(os.cpu_count() or 1, -(-settings.concurrency // IN_FLIGHT_PER_PROCESS))
    processes = max(1, min(processes, len(samples) // 8 or 1))
    if processes > 1 and isinstance(work, str):
        endpoint_dialect(store, settings)  # probed once here, read from the store by every worker
        return _run_sharded(store, samples, settings, work, kwargs, processes, budget=budget, job_id=job_id,
                            on_progress=on_progress, should_stop=should_stop)
    fn = work if callable(work) else _work_fn(work)
    dialect = endpoint_dialect(store, settings)

    async def main() -> Progress:
        async with LLM(settings, dialect) as llm:
            runner = Runner(store, llm, budget=budget, job_id=job_id)
            if on_progress:
                runner.on_result = lambda: on_progress(runner.progress)

            async def one(sample, r):
                return await fn(sample, r, **kwargs)

            try:
                return await run_samples(samples, one, runner, should_stop, more)
            finally:
                if llm.mode != dialect.mode and not settings.response_mode:  # moved on during the run
                    await runner.db("save_llm_dialect", settings.base_url, settings.model, llm.dialect.as_dict())
                runner.close()

    return asyncio.run(main())


def endpoint_dialect(store: Store, settings: LLMSettings, *, probe: bool = True) -> Dialect:
    """The endpoint's dialect: stored from an earlier probe, else probed now (a few tiny requests)
    and stored, per (base URL, model). OpenAI itself is known and not probed. With ``probe`` False,
    an endpoint not probed yet is assumed to speak OpenAI's dialect (estimates do this)."""
    settings.check()
    if not settings.base_url:
        return OPENAI_DIALECT
    known = store.llm_dialect(settings.base_url, settings.model)
    if known is not None:
        return Dialect.from_dict(known)
    if not probe:
        return Dialect()

    async def run() -> Dialect:
        async with LLM(settings) as llm:
            return await llm.probe()

    found = asyncio.run(run())
    store.save_llm_dialect(settings.base_url, settings.model, found.as_dict())
    return found


def _pull_from(work_queue, samples: list[dict[str, Any]]) -> Callable[[], Awaitable[list[dict[str, Any]] | None]]:
    """``run_samples``' ``more`` over a shared queue of index groups (None: the end of the work)."""
    async def more() -> list[dict[str, Any]] | None:
        group = await asyncio.get_running_loop().run_in_executor(None, work_queue.get)
        return None if group is None else [samples[i] for i in group]

    return more


def _shard_main(store_path: str, samples, settings, work, kwargs, budget, job_id, index, queue, stop,
                work_queue) -> None:
    """One share of the work, in a child process or in a thread of the parent: it takes groups of
    samples from ``work_queue`` as it has room for them and reports progress through ``queue``."""
    last = [0.0]

    def report(p: Progress, final: bool = False) -> None:
        t = time.monotonic()
        if final or t - last[0] >= 0.2:
            last[0] = t
            queue.put(("progress", index, asdict(p)))

    try:
        with Store(store_path) as store:
            p = run_work(store, [], settings, work, kwargs, budget=budget, job_id=job_id, on_progress=report,
                         should_stop=stop.is_set, processes=1, more=_pull_from(work_queue, samples))
        report(p, final=True)
        queue.put(("done", index, None))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        queue.put(("error", index, f"{type(e).__name__}: {e}"))


def _run_sharded(store: Store, samples, settings, work, kwargs, processes: int, *, budget, job_id, on_progress,
                 should_stop) -> Progress:
    """The work shared by ``processes`` workers: the parent's own thread, which starts sending at
    once, and child processes, which join as soon as they have started. They draw groups of samples
    from one queue, so none sits idle while another still has a backlog; a group holds the samples
    of one query, so identical requests stay in one worker and are still sent once."""
    import multiprocessing as mp
    import queue as queue_mod

    groups: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        h = int(hashlib.sha256(s["query"].encode("utf-8", "surrogatepass")).hexdigest()[:8], 16)
        groups.setdefault(h, []).append(i)
    share = replace(settings, concurrency=max(1, settings.concurrency // processes))
    ctx = mp.get_context("spawn")
    q, stop, work_queue = ctx.Queue(), ctx.Event(), ctx.Queue()
    work_queue.cancel_join_thread()  # work left over after a stop must not hold up the exit
    for g in groups.values():
        work_queue.put(g)
    for _ in range(processes):
        work_queue.put(None)  # one end-of-work mark per worker
    args = [(str(store.path), samples, share, work, kwargs, None if budget is None else budget / processes, job_id,
             i, q, stop, work_queue) for i in range(processes)]
    workers = [threading.Thread(target=_shard_main, args=args[0], daemon=True)]
    workers += [ctx.Process(target=_shard_main, args=a, daemon=True) for a in args[1:]]
    for w in workers:
        w.start()
    latest = {i: Progress() for i in range(processes)}
    finished: set[int] = set()
    ended: set[int] = set()  # workers seen gone without their last message, given one more wait for it
    error = None
    while len(finished) < len(workers):
        try:
            kind, i, payload = q.get(timeout=0.2)
        except queue_mod.Empty:
            dead = [i for i in ended if i not in finished]
            if dead:
                code = getattr(workers[dead[0]], "exitcode", None)
                error = error or f"worker {dead[0]} died" + (f" (exit code {code})" if code is not None else "")
                finished.update(dead)
            ended = {i for i, w in enumerate(workers) if not w.is_alive() and i not in finished}
        else:
            if kind == "progress":
                latest[i] = Progress(**payload)
            elif kind == "error":
                error = error or payload
                finished.add(i)
            else:
                finished.add(i)
        total = _sum_progress(latest.values(), total=len(samples))
        if on_progress:
            on_progress(total)
        if should_stop and not stop.is_set() and should_stop():
            stop.set()
    for w in workers:
        w.join(5)
    if error:
        raise RuntimeError(error)
    return _sum_progress(latest.values(), total=len(samples))


def _sum_progress(parts, *, total: int) -> Progress:
    out = Progress(total=total)  # the workers' own totals grow as they take work
    for p in parts:
        out.done += p.done
        out.failed += p.failed
        out.requests += p.requests
        out.cached += p.cached
        out.request_failures += p.request_failures
        out.cost += p.cost
        out.errors = (out.errors + p.errors)[-5:]
        out.stopped = out.stopped or p.stopped
        out.fatal = out.fatal or p.fatal
        out.estimated += p.estimated
    return out


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

    sql = ("SELECT a.attribute, a.value, b.value FROM features a JOIN features b"
           " ON b.sample_id = a.sample_id AND b.attribute = a.attribute AND b.source = ?")
    params: list[Any] = [source_b]
    if dataset:
        sql += " JOIN samples s ON s.id = a.sample_id AND s.dataset = ?"
        params.append(dataset)
    sql += " WHERE a.source = ? ORDER BY a.attribute, a.sample_id"
    params.append(source_a)
    va: dict[str, list[int]] = {}
    vb: dict[str, list[int]] = {}
    for attr, x, y in store.conn.execute(sql, params):
        va.setdefault(attr, []).append(x)
        vb.setdefault(attr, []).append(y)
    return heuristics.agreement(va, vb)
