"""Batch mode: annotation and judge collection through a batch runner instead of request by request.

A batch runner takes a JSONL file of requests and gives back a JSONL file of answers: the OpenAI
Batch API (and gateways that speak it: half the price, results within a 24-hour window), or vLLM's
offline runner (``python -m vllm.entrypoints.openai.run_batch -i requests.jsonl -o results.jsonl``),
which reads and writes the same format. Each input line is
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body": {...}}``; each output line
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": {"code", "message"} | null}``.

The work is the same as online (``annotate.annotate_sample`` / ``judges.judge_sample``), run by a
``PlanningRunner`` in rounds:

1. *Plan*: every sample's work runs; a request already answered in the store is answered from it
   (the same request keys as online: never pay twice); a request with a result waiting from a batch
   is parsed and recorded like an online answer (the same annotations rows, cost at the batch
   price); any other request goes into the round's JSONL (the ``custom_id`` is its request key) and
   the sample waits (``Pending``). Steps that need earlier answers (conditional ratings after query
   analysis, errors after the reference) appear in the next round's plan. A sample with every answer
   resolves its features (or labels) as online.
2. *Write and submit*: the requests go into files split by the runner's limits (50,000 requests and
   200 MB per file for OpenAI), each recorded (``llm_batches``, ``llm_batch_requests``) before it is
   uploaded, then uploaded and created with the ``openai`` client's files and batches endpoints; the
   batch carries its local id in its metadata, so a worker killed between creating a batch and
   recording its id finds it again instead of creating a second one.
3. *Poll and ingest*: finished batches' output and error files are read line by line and each line
   is stored the moment it is read. A failed, expired or malformed line, or a request with no line at
   all, counts as a failed attempt and is planned again (up to ``max_attempts``).

A request waiting in a batch that is still open is never planned again, whichever job or worker
asks. The API key is never written to a file or the store: the JSONL holds model, messages and
parameters only.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import ValidationError

from .paidwork import Progress, Request, Work, annotation_id, messages_sha
from .prompts import prompts
from .llm import LLMSettings, dialect_body, http_client, parse_json_tolerant
from .store import Store

ENDPOINT = "/v1/chat/completions"
#: the statuses of a remote batch after which nothing more will come
TERMINAL = {"completed", "expired", "failed", "cancelled"}
#: samples per transaction in a planning pass
PASS_CHUNK = 250
_CUSTOM_ID = re.compile(r'"custom_id"\s*:\s*"([0-9a-f]{64})"')


@dataclass(frozen=True)
class Limits:
    """What one batch file may hold (OpenAI: 50,000 requests, 200 MB)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024


class Pending(Exception):
    """A request is not answered yet: it is planned, or waiting in an open batch."""


def batch_dir(store_path: str | Path) -> Path:
    """Where batch files are kept: ``batches/`` beside the store."""
    return Path(store_path).resolve().parent / "batches"


def request_body(req: Request, settings: LLMSettings) -> dict[str, Any]:
    """The chat-completions body of one request, as online with structured outputs (no key)."""
    body: dict[str, Any] = {"model": settings.model, "messages": req.messages, "temperature": settings.temperature,
                            "max_tokens": req.max_tokens or settings.max_tokens}
    body.update(dialect_body("json_schema", req.schema))  # OpenAI's structured outputs; vLLM takes them too
    if req.logprobs:
        body.update(logprobs=True, top_logprobs=req.logprobs)
    return body


class _Writer:
    """Batch files written as requests are planned, split by ``Limits``; only keys kept in memory."""

    def __init__(self, directory: Path, limits: Limits, round_: int):
        self.directory = directory
        self.limits = limits
        self.round = round_
        self.files: list[dict[str, Any]] = []
        self._fh: io.BufferedWriter | None = None

    def add(self, key: str, sample_id: str, body: dict[str, Any]) -> None:
        line = json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body},
                          ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        cur = self.files[-1] if self.files else None
        if cur is None or cur["requests"] >= self.limits.max_requests or (
                cur["requests"] and cur["bytes"] + len(line) > self.limits.max_bytes):
            self._open()
            cur = self.files[-1]
        self._fh.write(line)
        cur["bytes"] += len(line)
        cur["requests"] += 1
        cur["keys"].append((key, sample_id))
        cur["hash"].update(key.encode())

    def _open(self) -> None:
        if self._fh:
            self._fh.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f".writing-{time.time_ns()}-{len(self.files)}.jsonl"
        self._fh = open(path, "wb")
        self.files.append({"path": path, "requests": 0, "bytes": 0, "keys": [], "hash": hashlib.sha256()})

    def close(self) -> list[dict[str, Any]]:
        """The files, each named by its local batch id (a hash of its requests' keys and the time:
        the same requests planned again after a failed round make a batch of their own)."""
        if self._fh:
            self._fh.close()
            self._fh = None
        for f in self.files:
            h = f.pop("hash")
            h.update(str(time.time_ns()).encode())
            f["id"] = "b" + h.hexdigest()[:24]
            final = self.directory / f"{f['id']}.jsonl"
            f["path"].replace(final)
            f["path"] = final
        return self.files


class PlanningRunner:
    """Stands in for ``paidwork.Runner``: answers from the store or a batch's result, else plans."""

    def __init__(self, store: Store, settings: LLMSettings, writer: _Writer | None, *, job_id: int | None,
                 max_attempts: int, progress: Progress):
        self.store = store
        self.settings = settings
        self.version = prompts()["version"]
        self.writer = writer
        self.job_id = job_id
        self.max_attempts = max_attempts
        self.progress = progress
        self.planned: set[str] = set()
        self.waiting = 0  # requests waiting in open batches
        self.stop_reason: str | None = None

    async def db(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.store, method)(*args, **kwargs)

    async def run(self, req: Request) -> Any:
        req.finalize(self.settings, self.version)
        key, store = req.key, self.store
        row_id = annotation_id(key, req.sample_id)
        if key in self.planned:
            raise Pending(key)
        cached = store.cached_annotations([key])
        if key in cached:
            self.progress.cached += 1
            store.reuse_annotation(key, req.sample_id, row_id)
            return cached[key]
        state = store.batch_states([key]).get(key)
        if state and state[0] in ("answered", "errored"):
            parsed = self._record(req, row_id, state)
            store.mark_batch_recorded(key)
            if parsed is not None:
                return parsed
        elif state:  # still in an open batch
            self.waiting += 1
            raise Pending(key)
        if store.failed_attempts([key]).get(key, 0) >= self.max_attempts:
            return None  # failed for good, as online: the sample counts as failed
        if self.writer is None:
            raise Pending(key)
        self.writer.add(key, req.sample_id, request_body(req, self.settings))
        self.planned.add(key)
        raise Pending(key)

    def _record(self, req: Request, row_id: str, state: tuple[str, str | None, str | None]) -> Any:
        """Parse one batch result as an online answer is parsed, and store it in ``annotations``."""
        kind, line, error = state
        body, usage, raw, parsed = None, (0, 0), None, None
        if kind == "answered":
            try:
                body = json.loads(line)["response"]["body"]
                u = body.get("usage") or {}
                usage = (int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
                parsed, raw, error = parse_answer(body, req)
            except (ValueError, KeyError, TypeError) as e:
                error = f"unreadable result line: {str(e)[:200]}"
        cost = self.settings.cost(*usage)
        self.store.record_annotation({
            "id": row_id, "request_key": req.key, "sample_id": req.sample_id, "annotator": self.settings.model,
            "prompt_version": self.version, "step": req.step, "orientation": req.orientation,
            "params": {"temperature": self.settings.temperature, "max_tokens": req.max_tokens,
                       "base_url": self.settings.base_url, "messages_sha": messages_sha(req.messages), "batch": True,
                       **({"mode": "json_schema"} if req.schema is not None else {})},
            "job_id": self.job_id, "raw": raw, "parsed": parsed, "prompt_tokens": usage[0],
            "completion_tokens": usage[1], "cost": cost, "latency_s": 0.0,
            "status": "failed" if error else "ok", "error": error, "attempts": 1})
        p = self.progress
        p.requests += 1
        p.cost += cost
        if error:
            p.request_failures += 1
            p.errors = (p.errors + [error])[-5:]
            return None
        return parsed


def parse_answer(body: dict[str, Any], req: Request) -> tuple[Any, str | None, str | None]:
    """(parsed, raw text, error) from a chat-completion body, with the online path's checks
    (``LLM.complete``: refusal, schema, template placeholder, a judge's letter). There is no
    re-ask inside a batch: an answer that cannot be used is a failed attempt, planned again."""
    from .llm import letter_logprobs, placeholder_in

    choices = body.get("choices") or []
    choice = choices[0] if choices else None
    msg = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(msg, dict):
        return None, None, "the answer had no message"
    raw = msg.get("content")
    if msg.get("refusal"):
        return None, raw, f"the model refused: {msg['refusal']}"
    top = letter_logprobs(choice) if req.logprobs else None
    try:
        if req.schema is not None:
            value: Any = req.schema.model_validate(parse_json_tolerant(raw)).model_dump()
            hole = placeholder_in(value)
            if hole is not None:
                raise ValueError(f"the answer leaves a template placeholder ({hole[:40]!r})")
        elif req.validate is not None:
            value = req.validate(raw, top)
        else:
            value = raw
        if req.check is not None:
            req.check(value)
    except (ValueError, ValidationError) as e:
        cut = " (cut off at its token limit)" if choice.get("finish_reason") == "length" else ""
        return None, raw, f"the answer cannot be used{cut}: {' '.join(str(e).split())[:300]}"
    if req.logprobs:
        value = {"text": raw, "top_logprobs": top}
    return value, raw, None


# ---------------------------------------------------------------- one planning pass


@dataclass
class Round:
    """What a planning pass found: samples resolved, failed and waiting, and the files written."""

    done: int = 0
    failed: int = 0
    pending: int = 0
    waiting: int = 0  # requests in open batches
    files: list[dict[str, Any]] = field(default_factory=list)


def plan_round(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, work: Work,
               kwargs: dict[str, Any], *, directory: Path | None, limits: Limits, round_: int,
               job_id: int | None, max_attempts: int, progress: Progress) -> Round:
    """Run every sample's work once: record what came back, resolve what is complete, and write
    the requests still needed into batch files under ``directory`` (None: write nothing)."""
    fn = work
    writer = _Writer(directory, limits, round_) if directory is not None else None
    runner = PlanningRunner(store, settings, writer, job_id=job_id, max_attempts=max_attempts, progress=progress)
    out = Round()

    async def main() -> None:
        # one transaction per chunk of samples: the results recorded and features resolved here come
        # from result lines already stored, so a crash loses nothing, and one commit per request
        # was most of a pass's time
        for i in range(0, len(samples), PASS_CHUNK):
            with store.writing():
                for sample in samples[i:i + PASS_CHUNK]:
                    try:
                        ok = await fn(sample, runner, **kwargs)
                    except Pending:
                        out.pending += 1
                        continue
                    out.done += 1
                    if not ok:
                        out.failed += 1

    try:
        asyncio.run(main())
    finally:
        files = writer.close() if writer else []
    out.files = files
    out.waiting = runner.waiting
    return out


# ---------------------------------------------------------------- the Batch API


def client_for(settings: LLMSettings):
    import openai

    return openai.OpenAI(api_key=settings.api_key or "not-set", base_url=settings.base_url,
                         timeout=settings.timeout_s, max_retries=settings.max_retries,
                         http_client=http_client(settings.timeout_s, sync=True))


def submit(store: Store, client, batch: dict[str, Any], completion_window: str = "24h") -> dict[str, Any]:
    """Upload a recorded batch file and create its batch, unless a batch with its local id exists
    already (created by a worker that died before recording it)."""
    found = None
    for b in client.batches.list(limit=100):
        if (b.metadata or {}).get("prefdissect_batch") == batch["id"]:
            found = b
            break
        if b.created_at and b.created_at < time.time() - 3 * 86400:
            break  # older than any batch of ours that could be open
    if found is None:
        with open(batch["path"], "rb") as fh:
            f = client.files.create(file=(Path(batch["path"]).name, fh, "application/jsonl"), purpose="batch")
        found = client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window=completion_window,
                                      metadata={"prefdissect_batch": batch["id"]})
    store.update_llm_batch(batch["id"], status="submitted", remote_id=found.id, input_file_id=found.input_file_id,
                           remote_status=found.status)
    return {**batch, "remote_id": found.id, "status": "submitted"}


def ingest_lines(store: Store, batch_id: str | None, lines: Iterable[bytes | str]) -> dict[str, int]:
    """Stage result lines (output or error file of a runner) for their requests. A line that is not
    JSON, or names no request of ours, is counted; a line whose request can be read from it is
    staged as failed (and planned again). With ``batch_id`` None, each line goes to the batch its
    request was last sent in (a runner's file brought back by hand)."""
    counts = {"answered": 0, "errored": 0, "malformed": 0, "unknown": 0}
    staged: list[tuple[str, str, str | None, str | None]] = []
    by_batch: dict[str, list] = {}

    def flush() -> None:
        if not staged:
            return
        keys = [k for k, *_ in staged]
        owner = {k: batch_id for k in keys} if batch_id else store.batch_of_keys(keys)
        for item in staged:
            b = owner.get(item[0])
            if b is None:
                counts["unknown"] += 1
                continue
            by_batch.setdefault(b, []).append(item)
            counts["answered" if item[1] == "answered" else "errored"] += 1
        for b, items in by_batch.items():
            store.stage_batch_results(b, items)
        by_batch.clear()
        staged.clear()

    for raw in lines:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if not text:
            continue
        try:
            obj = json.loads(text)
            key = obj["custom_id"]
            if not isinstance(key, str):
                raise TypeError("custom_id is not a string")
        except (ValueError, KeyError, TypeError) as e:
            counts["malformed"] += 1
            m = _CUSTOM_ID.search(text)
            if m:  # enough of the line to know whose it was: a failed attempt, planned again
                staged.append((m.group(1), "errored", None, f"malformed result line: {str(e)[:200]}"))
            continue
        resp, err = obj.get("response") or {}, obj.get("error")
        if err or resp.get("status_code") != 200 or not isinstance(resp.get("body"), dict):
            detail = err or (resp.get("body") or {}).get("error") or {}
            msg = detail.get("message") if isinstance(detail, dict) else str(detail)
            code = (detail.get("code") if isinstance(detail, dict) else None) or resp.get("status_code")
            staged.append((key, "errored", None, f"batch error {code}: {str(msg)[:300]}"))
        else:
            staged.append((key, "answered", text, None))
        if len(staged) >= 2000:
            flush()
    flush()
    return counts


def _download(client, file_id: str, dest: Path) -> Path:
    with client.files.with_streaming_response.content(file_id) as resp, open(dest, "wb") as fh:
        for chunk in resp.iter_bytes():
            fh.write(chunk)
    return dest


def poll(store: Store, client, batch: dict[str, Any]) -> bool:
    """Check one submitted batch; when it has ended, ingest its output and error files and mark
    every request without a line as failed. True when the batch was ingested."""
    b = client.batches.retrieve(batch["remote_id"])
    if b.status not in TERMINAL:
        if b.status != batch.get("remote_status"):
            store.update_llm_batch(batch["id"], remote_status=b.status)
        return False
    counts = {"answered": 0, "errored": 0, "malformed": 0, "unknown": 0}
    directory = Path(batch["path"]).parent if batch.get("path") else Path(".")
    for fid, suffix in ((b.output_file_id, "out"), (b.error_file_id, "err")):
        if not fid:
            continue
        dest = _download(client, fid, directory / f"{batch['id']}.{suffix}.jsonl")
        with open(dest, "rb") as fh:
            got = ingest_lines(store, batch["id"], fh)
        for k, v in got.items():
            counts[k] += v
    missing = store.batch_request_keys(batch["id"], "sent")
    why = {"expired": "the batch expired before this request ran", "failed": "the batch failed",
           "cancelled": "the batch was cancelled"}.get(b.status, "no result line for this request")
    errors = [e.message for e in ((b.errors.data if b.errors else None) or []) if e.message]
    if errors:
        why += f" ({errors[0][:200]})"
    store.stage_batch_results(batch["id"], [(k, "errored", None, why) for k in missing])
    store.update_llm_batch(batch["id"], status="ingested", remote_status=b.status, answered=counts["answered"],
                           failed=counts["errored"] + len(missing), malformed=counts["malformed"],
                           error=why if missing else None)
    return True


# ---------------------------------------------------------------- the whole run


@dataclass
class BatchOutcome:
    progress: Progress
    rounds: int
    batches: list[str]  # local ids submitted or written by this run
    files: list[Path]  # files written (file-only mode)
    waiting: int  # requests still in open batches (file-only: waiting for --ingest)


def run_batch(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, work: Work,
              kwargs: dict[str, Any], *, job_id: int | None = None, budget: float | None = None,
              on_progress: Callable[[Progress], None] | None = None, should_stop: Callable[[], bool] | None = None,
              poll_s: float = 30.0, limits: Limits = Limits(), max_attempts: int = 3,
              file_only: Path | None = None, directory: Path | None = None, client=None,
              on_event: Callable[[str], None] | None = None, max_rounds: int = 50,
              adopt_after_s: float = 120.0) -> BatchOutcome:
    """Annotate (``work`` = ``annotate.annotate_sample``) or collect a judge's labels
    (``judges.judge_sample``) through a batch runner, round after round until every sample is resolved or has failed for good.

    ``file_only``: write the next round's files there and return (a runner outside the tool runs
    them; ``ingest_file`` brings the answers back). Otherwise the files go to ``directory``
    (default ``batches/`` beside the store) and through the Batch API at ``settings.base_url``; the
    run polls after 1 s, then less and less often, up to every ``poll_s`` seconds. ``budget``: no new round is submitted when the estimated
    cost of its requests would pass it."""
    from dataclasses import replace

    settings = replace(settings, batch=True)
    say = on_event or (lambda _m: None)
    progress = Progress(total=len(samples))
    base = settings.base_url or ""
    mode = "file" if file_only is not None else "api"
    directory = Path(file_only) if file_only is not None else (directory or batch_dir(store.path))
    if client is None and file_only is None:
        client = client_for(settings)
    submitted: list[str] = []
    written: list[Path] = []
    rounds = 0
    replan = True
    last: Round | None = None
    wait = min(poll_s, 1.0)  # polls start often (a fast runner is done in seconds) and back off to poll_s
    while True:
        if should_stop and should_stop():
            progress.stopped = "cancelled"
            break
        # 1. open batches (of any job on this endpoint and model): poll, ingest what has ended
        if mode == "api":
            for b in store.llm_batches(statuses=("planned",), base_url=base, model=settings.model):
                # recorded but not known to be created: its worker died, or is creating it right now
                # (give it ``adopt_after_s`` before taking over, so two workers never both create it)
                if _age_s(b["updated_at"]) < adopt_after_s:
                    continue
                b = submit(store, client, b)
                submitted.append(b["id"])
                say(f"batch {b['id']} submitted again as {b['remote_id']} (recorded, not yet created)")
            for b in store.llm_batches(statuses=("submitted",), base_url=base, model=settings.model):
                if poll(store, client, b):
                    replan = True
                    wait = min(poll_s, 1.0)
                    say(f"batch {b['id']} ({b['remote_id']}) ingested")
        if replan:
            replan = False
            progress.done = progress.failed = 0
            if file_only is not None:
                for b in store.llm_batches(statuses=("file",), base_url=base, model=settings.model):
                    store.drop_batch(b["id"])  # written again below when still needed
            last = plan_round(store, samples, settings, work, kwargs, directory=directory, limits=limits,
                              round_=rounds + 1, job_id=job_id, max_attempts=max_attempts, progress=progress)
            progress.done, progress.failed = last.done, last.failed
            if on_progress:
                on_progress(progress)
            if last.files and rounds >= max_rounds:
                for f in last.files:
                    f["path"].unlink(missing_ok=True)
                progress.stopped = f"stopped after {max_rounds} rounds; run again to continue"
                break
            if last.files:
                rounds += 1
                cost = _planned_cost(last.files, settings)
                if budget is not None and progress.cost + cost > budget:
                    for f in last.files:
                        f["path"].unlink(missing_ok=True)
                    progress.stopped = (f"budget of ${budget:.4f} reached: round {rounds} would cost about "
                                        f"${cost:.4f} more (spent ${progress.cost:.4f})")
                    break
                for f in last.files:
                    store.add_llm_batch({"id": f["id"], "job_id": job_id, "base_url": base, "model": settings.model,
                                         "round": rounds, "mode": mode, "path": str(f["path"]),
                                         "requests": f["requests"], "bytes": f["bytes"],
                                         "status": "file" if mode == "file" else "planned"}, f["keys"])
                    say(f"round {rounds}: {f['requests']:,} requests, {f['bytes'] / 1e6:.1f} MB in {f['path']}")
                if mode == "file":
                    written = [f["path"] for f in last.files]
                    break
                for f in last.files:
                    b = submit(store, client, {"id": f["id"], "path": str(f["path"])})
                    submitted.append(b["id"])
                    say(f"batch {f['id']} submitted as {b['remote_id']}")
                continue  # poll at once: a fast runner may be done already
            if mode == "file" or not last.waiting and not store.llm_batches(
                    statuses=("planned", "submitted"), base_url=base, model=settings.model):
                break
        if mode == "file":
            break
        _sleep(wait, should_stop)
        wait = min(poll_s, wait * 2)
    waiting = last.waiting if last else 0
    progress.total = len(samples)
    return BatchOutcome(progress, rounds, submitted, written, waiting)


def _age_s(stamp: str) -> float:
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return float("inf")
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - t).total_seconds()


def _planned_cost(files: list[dict[str, Any]], settings: LLMSettings) -> float:
    """An estimate of a round's cost from its files' sizes (about 4 bytes a token, answers at
    their typical lengths are not known per line: counted at the input's size / 4)."""
    n_bytes = sum(f["bytes"] for f in files)
    n_req = sum(f["requests"] for f in files)
    return settings.cost(n_bytes // 4, n_req * 300)


def _sleep(seconds: float, should_stop: Callable[[], bool] | None) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if should_stop and should_stop():
            return
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))


def resolve(store: Store, samples: list[dict[str, Any]], settings: LLMSettings, work: Work,
            kwargs: dict[str, Any], *, job_id: int | None = None, max_attempts: int = 3) -> Progress:
    """Record the batch results waiting in the store and resolve every sample that is complete,
    planning nothing."""
    from dataclasses import replace

    progress = Progress(total=len(samples))
    r = plan_round(store, samples, replace(settings, batch=True), work, kwargs, directory=None, limits=Limits(),
                   round_=0, job_id=job_id, max_attempts=max_attempts, progress=progress)
    progress.done, progress.failed = r.done, r.failed
    return progress


def ingest_file(store: Store, path: str | Path) -> dict[str, int]:
    """Bring back a runner's output file (vLLM's ``run_batch``, a gateway, a download from the Batch
    API): each line goes to the request it answers; lines for requests this store never planned are
    counted as unknown. Batches whose every request has its line are marked ingested. The next
    ``run_batch`` (or ``annotate --ingest``) records them and resolves features."""
    with open(path, "rb") as fh:
        counts = ingest_lines(store, None, fh)
    for b in store.llm_batches(statuses=("file", "superseded")):
        if not store.batch_request_keys(b["id"], "sent"):
            store.update_llm_batch(b["id"], status="ingested")
    return counts
