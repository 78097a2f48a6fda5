"""The paid-request engine: requests keyed and stored once, a runner within budget, work over processes.

Every request is keyed by a hash of (model, prompt version, step, order, messages, parameters)
and stored the moment it returns (``Runner``); a rerun, a resume after a crash or a second worker
skips every request that already succeeded, so nothing is paid for twice. ``run_work`` drives one
per-sample coroutine (``annotate.annotate_sample``, ``judges.judge_sample``: passed in by
reference, so this module knows neither) over many samples, split over processes when the
concurrency asks for it.
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
from typing import Any, Awaitable, Callable

from pydantic import BaseModel

from .llm import LLM, OPENAI_DIALECT, Dialect, LLMError, LLMSettings, messages_tokens, settle_dialect, strict_schema
from .prompts import TYPICAL_OUTPUT, prompts
from .store import Store

#: a per-sample coroutine: (sample, runner, **kwargs) -> True when the sample is complete
Work = Callable[..., Awaitable[bool]]


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


#: requests in flight one process drives well; above it the work is split over processes
IN_FLIGHT_PER_PROCESS = 64


def run_work(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, work: Work, kwargs: dict[str, Any], *,
             budget: float | None = None, job_id: int | None = None,
             on_progress: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] | None = None,
             processes: int | None = None,
             more: Callable[[], Awaitable[list[dict[str, Any]] | None]] | None = None) -> Progress:
    """Run ``work`` (a per-sample coroutine such as ``annotate.annotate_sample``) over samples through one
    LLM endpoint. ``work`` must be a module-level function: it goes to child processes by reference.

    One process drives about IN_FLIGHT_PER_PROCESS requests in flight before the HTTP client's
    own CPU cost becomes the limit; above that the samples are split over processes (by query,
    so identical requests stay in one process and are still sent once), each with its share of
    the concurrency and of the budget."""
    if processes is None:
        processes = min(os.cpu_count() or 1, -(-settings.concurrency // IN_FLIGHT_PER_PROCESS))
    processes = max(1, min(processes, len(samples) // 8 or 1))
    if processes > 1:
        endpoint_dialect(store, settings)  # probed once here, read from the store by every worker
        return _run_sharded(store, samples, settings, work, kwargs, processes, budget=budget, job_id=job_id,
                            on_progress=on_progress, should_stop=should_stop)
    fn = work
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
        total = sum_progress(latest.values(), total=len(samples))
        if on_progress:
            on_progress(total)
        if should_stop and not stop.is_set() and should_stop():
            stop.set()
    for w in workers:
        w.join(5)
    if error:
        raise RuntimeError(error)
    return sum_progress(latest.values(), total=len(samples))


def sum_progress(parts, *, total: int) -> Progress:
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
