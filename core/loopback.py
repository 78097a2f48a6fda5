"""A real OpenAI-compatible chat-completions server on loopback, for tests, benchmarks and demos.

It speaks enough of the protocol for the official ``openai`` client (``POST /v1/chat/completions``,
``GET /v1/models``, ``GET /health``, and the Batch API's files and batches endpoints: upload, create,
retrieve, list, cancel, results, with expiry, failed and malformed lines: ``set_batch``) over real HTTP/1.1 with keep-alive, so the client's connection
pool, timeouts, retries and our parsing are exercised end to end. Answers are scripted:

* ``response_format={"type": "json_schema", ...}``: a JSON instance that validates against the schema
  (the subset pydantic v2 emits: objects, arrays, strings with enum/length/format, numbers with
  bounds, booleans, null, anyOf/oneOf/allOf, ``$ref``/``$defs``, const);
* ``{"type": "json_object"}``: a small JSON object; no response_format: plain text
  (with ``max_tokens=1``, one of the tokens "A" / "B", as a judge would answer);
* a ``script(request_body) -> str | dict | list | None`` callable overrides the content.

Answers are deterministic: the generator is seeded by a hash of (seed, messages), so the same
request always gets the same answer and different messages get different ones. ``logprobs`` /
``top_logprobs`` are filled in OpenAI's format. Faults are injected at set per-request rates drawn
from a seeded generator: ``429`` (with a short Retry-After), ``500``, ``timeout`` (the request is
held for ``timeout_hold`` seconds, then dropped), ``truncated`` (HTTP 200, body cut mid-JSON),
``malformed`` (HTTP 200, content that is not valid JSON or does not match the schema), ``refusal``
(HTTP 200, ``message.refusal`` set, content null) and ``disconnect`` (socket closed, no response).

The server is a minimal HTTP/1.1 implementation on ``asyncio`` running its own event loop in a
daemon thread: one coroutine per connection, latency by ``asyncio.sleep`` (no CPU burnt, no thread
per request), so hundreds of requests can be in flight at once.

    with LoopbackServer(latency=0.05, faults={"429": 0.1}) as server:
        client = openai.OpenAI(base_url=server.url, api_key="test-key")
        ...
        server.stats.faults["429"]

``python -m core.loopback --port 8089 --latency 0.2 --fault 429=0.05`` serves until Ctrl-C;
``GET /loopback/stats`` returns its counters as JSON.

Throughput: the server costs about 0.2 ms of CPU per request and sustains 128 requests in flight
at 250 ms latency at ~94% of the ideal 512 req/s (keep-alive load generator, separate process). The
``openai`` client itself costs 2-3 ms of CPU per request at 128 connections (httpcore's pool scans
every connection per request), so one client process tops out near 300-350 req/s on one core
whatever the server; drive it from several processes to load the server fully.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import hashlib
import json
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Callable, Iterable, Mapping

__all__ = [
    "FAULTS",
    "LoopbackServer",
    "LoopbackStats",
    "SchemaError",
    "generate_instance",
    "manipulable_model",
    "profile_judge",
    "tokenize",
    "main",
]

FAULTS: tuple[str, ...] = ("429", "500", "timeout", "truncated", "malformed", "refusal", "disconnect")
"""Fault names accepted by ``faults={name: rate}``."""

REFUSAL_TEXT = "I can't help with that."

Script = Callable[[dict], "str | dict | list | None"]


class SchemaError(ValueError):
    """A JSON schema the generator cannot satisfy (contradictory bounds, ``false``, ...)."""


# --------------------------------------------------------------------------------------------
# Content: tokens, words, schema instances
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s]+)|\s+")


def tokenize(text: str) -> list[str]:
    """Split text into simple tokens (a word or a run of punctuation, with its leading
    whitespace). ``"".join(tokenize(t)) == t`` always holds."""
    return _TOKEN.findall(text)


_WORDS = (
    "answer clear response helpful accurate detailed concise question model user example step "
    "reason result value evidence source claim error fact summary context request structure "
    "format style tone length quality point idea method data case test check note option choice "
    "better worse correct simple complete relevant useful careful polite friendly direct brief "
    "first second third because however therefore also both each more less very quite rather "
    "explains lists covers gives shows states notes adds keeps uses avoids follows includes"
).split()

_ALT_TOKENS = ("The", " the", ".", ",", " and", " a", " is", " to", " of", " in", "Yes", "No",
               " it", " that", " this", "I", " be", " on", " as", " for")


def _words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi)))


def _sentence(rng: random.Random) -> str:
    s = _words(rng, 8, 24)
    return s[0].upper() + s[1:] + "."


def _ptr(root: Any, ref: str) -> Any:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise SchemaError(f"only local $ref are supported, got {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise SchemaError(f"unresolvable $ref {ref!r}") from None
    return node


class _Generator:
    """Builds an instance of a JSON schema from a random generator (deterministic for a seed)."""

    def __init__(self, root: Any, rng: random.Random, max_depth: int = 6):
        self.root = root
        self.rng = rng
        self.max_depth = max_depth

    # resolve $ref / allOf into one plain schema
    def _resolve(self, schema: Any, seen: int = 0) -> Any:
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            if seen > 64:
                raise SchemaError("$ref cycle without a base case")
            target = self._resolve(_ptr(self.root, schema["$ref"]), seen + 1)
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if not rest:
                return target
            if not isinstance(target, dict):
                return target
            return self._resolve(_merge(target, rest), seen + 1)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for sub in schema["allOf"]:
                sub = self._resolve(sub, seen + 1)
                if sub is False:
                    raise SchemaError("allOf contains false")
                if isinstance(sub, dict):
                    merged = _merge(merged, sub)
            return self._resolve(merged, seen + 1)
        return schema

    def value(self, schema: Any, depth: int = 0) -> Any:
        if depth > self.max_depth + 40:
            raise SchemaError("schema recursion without a base case")
        schema = self._resolve(schema)
        if schema is True or schema == {} or schema is None:
            return _words(self.rng, 1, 3)
        if schema is False:
            raise SchemaError("schema false admits no value")
        if not isinstance(schema, dict):
            raise SchemaError(f"not a schema: {schema!r}")
        rng = self.rng
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            if not schema["enum"]:
                raise SchemaError("empty enum")
            return rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf", "discriminator")}
                branches = [self._resolve(b) for b in schema[key]]
                branches = [b for b in branches if b is not False]
                if not branches:
                    raise SchemaError(f"{key} has no satisfiable branch")
                branch = self._pick_branch(branches, depth)
                return self.value(_merge(base, branch) if isinstance(branch, dict) else branch, depth)
        typ = schema.get("type")
        if isinstance(typ, list):
            types = [t for t in typ if t != "null"] or ["null"]
            if "null" in typ and (depth >= self.max_depth or rng.random() < 0.2):
                typ = "null"
            else:
                typ = rng.choice(types)
        if typ is None:
            typ = _infer_type(schema)
        if typ == "null":
            return None
        if typ == "boolean":
            return rng.random() < 0.5
        if typ == "integer":
            return self._integer(schema)
        if typ == "number":
            return self._number(schema)
        if typ == "string":
            return self._string(schema)
        if typ == "array":
            return self._array(schema, depth)
        if typ == "object":
            return self._object(schema, depth)
        raise SchemaError(f"unsupported type {typ!r}")

    def _pick_branch(self, branches: list, depth: int) -> Any:
        def is_null(b: Any) -> bool:
            return isinstance(b, dict) and (b.get("type") == "null" or b.get("const", 0) is None)

        nulls = [b for b in branches if is_null(b)]
        others = [b for b in branches if not is_null(b)]
        # "pattern" is not honoured: avoid such branches when there is another (e.g. Decimal)
        others = [b for b in others if not (isinstance(b, dict) and "pattern" in b)] or others
        if nulls and (not others or depth >= self.max_depth or self.rng.random() < 0.2):
            return nulls[0]
        if depth >= self.max_depth:  # prefer branches that end the recursion
            flat = [b for b in others if _infer_type(b) not in ("object", "array")]
            if flat:
                return self.rng.choice(flat)
        return self.rng.choice(others)

    def _integer(self, s: dict) -> int:
        lo, hi = s.get("minimum"), s.get("maximum")
        if isinstance(s.get("exclusiveMinimum"), (int, float)) and not isinstance(s["exclusiveMinimum"], bool):
            lo = max(lo, s["exclusiveMinimum"]) if lo is not None else s["exclusiveMinimum"]
            lo = math.floor(lo) + 1 if lo == s["exclusiveMinimum"] else lo
        if isinstance(s.get("exclusiveMaximum"), (int, float)) and not isinstance(s["exclusiveMaximum"], bool):
            hi = min(hi, s["exclusiveMaximum"]) if hi is not None else s["exclusiveMaximum"]
            hi = math.ceil(hi) - 1 if hi == s["exclusiveMaximum"] else hi
        lo = math.ceil(lo) if lo is not None else None
        hi = math.floor(hi) if hi is not None else None
        if lo is None and hi is None:
            lo, hi = 0, 10
        elif lo is None:
            lo = hi - 10
        elif hi is None:
            hi = lo + 10
        if lo > hi:
            raise SchemaError(f"integer bounds {lo} > {hi}")
        step = s.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first > last:
                raise SchemaError("no multiple of %s in [%s, %s]" % (step, lo, hi))
            return self.rng.randint(first, last) * step
        return self.rng.randint(lo, hi)

    def _number(self, s: dict) -> float:
        lo, hi = s.get("minimum"), s.get("maximum")
        xlo, xhi = s.get("exclusiveMinimum"), s.get("exclusiveMaximum")
        xlo = None if isinstance(xlo, bool) else xlo
        xhi = None if isinstance(xhi, bool) else xhi
        a = max(v for v in (lo, xlo) if v is not None) if (lo is not None or xlo is not None) else None
        b = min(v for v in (hi, xhi) if v is not None) if (hi is not None or xhi is not None) else None
        if a is None and b is None:
            a, b = 0.0, 10.0
        elif a is None:
            a = b - 10.0
        elif b is None:
            b = a + 10.0
        if a > b or (a == b and (xlo is not None or xhi is not None)):
            raise SchemaError(f"number bounds {a} > {b}")
        step = s.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0:
            first, last = math.ceil(a / step), math.floor(b / step)
            for k in (self.rng.randint(first, last) if first <= last else first, first, last):
                v = k * step
                if _in_bounds(v, lo, hi, xlo, xhi):
                    return v
            raise SchemaError("no multiple of %s in bounds" % step)
        v = round(self.rng.uniform(a, b), 3)
        if not _in_bounds(v, lo, hi, xlo, xhi):
            v = (a + b) / 2.0
        return float(v)

    def _string(self, s: dict) -> str:
        rng = self.rng
        fmt = s.get("format")
        if fmt in _FORMATS:
            return _FORMATS[fmt](rng)
        lo = int(s.get("minLength", 0))
        hi = s.get("maxLength")
        if hi is not None and hi < lo:
            raise SchemaError(f"string lengths {lo} > {hi}")
        text = _words(rng, 1, 8)
        while len(text) < lo:
            text += " " + rng.choice(_WORDS)
        if hi is not None and len(text) > hi:
            text = text[: int(hi)]
            if len(text) > lo:
                text = text.rstrip() or text
        return text

    def _array(self, s: dict, depth: int) -> list:
        rng = self.rng
        prefix = s.get("prefixItems") or []
        items = s.get("items", True)
        lo = int(s.get("minItems", 0))
        hi = s.get("maxItems")
        if hi is not None and hi < lo:
            raise SchemaError(f"array sizes {lo} > {hi}")
        out = [self.value(p, depth + 1) for p in prefix]
        if items is False:
            if len(out) < lo:
                raise SchemaError("tuple shorter than minItems")
            return out[: hi] if hi is not None else out
        cap = hi if hi is not None else max(lo, len(out)) + 3
        if depth >= self.max_depth or (prefix and "items" not in s):
            n = max(lo, len(out))
        else:
            n = rng.randint(max(lo, len(out)), max(lo, len(out), min(cap, max(lo, len(out)) + 3)))
        unique = bool(s.get("uniqueItems"))
        tries = 0
        while len(out) < n:
            v = self.value(items, depth + 1)
            tries += 1
            if unique and any(_json_eq(v, w) for w in out):
                if tries > 50 * n:
                    if len(out) >= lo:
                        break
                    raise SchemaError("cannot make enough unique items")
                continue
            out.append(v)
        return out

    def _object(self, s: dict, depth: int) -> dict:
        rng = self.rng
        props: Mapping[str, Any] = s.get("properties") or {}
        required = set(s.get("required") or ())
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if name in required or (depth < self.max_depth and rng.random() < 0.6):
                out[name] = self.value(sub, depth + 1)
        for name in required:  # required without a property schema: anything goes
            if name not in out:
                out[name] = self.value(True, depth + 1)
        extra = s.get("additionalProperties", True)
        if not props and isinstance(extra, dict):  # a mapping, e.g. dict[str, int]
            n = max(int(s.get("minProperties", 0)), 0 if depth >= self.max_depth else rng.randint(1, 2))
            i = 0
            while len(out) < n:
                i += 1
                key = f"{rng.choice(_WORDS)}_{i}"
                out[key] = self.value(extra, depth + 1)
        return out


def _infer_type(s: Any) -> str:
    if not isinstance(s, dict):
        return "string"
    t = s.get("type")
    if isinstance(t, str):
        return t
    if "properties" in s or "additionalProperties" in s or "required" in s:
        return "object"
    if "items" in s or "prefixItems" in s or "minItems" in s:
        return "array"
    if any(k in s for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if k == "properties" and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        elif k == "required" and isinstance(out.get(k), list):
            out[k] = list(dict.fromkeys([*out[k], *v]))
        elif k in ("minimum", "minLength", "minItems", "exclusiveMinimum") and k in out:
            out[k] = max(out[k], v)
        elif k in ("maximum", "maxLength", "maxItems", "exclusiveMaximum") and k in out:
            out[k] = min(out[k], v)
        else:
            out[k] = v
    return out


def _in_bounds(v: float, lo: Any, hi: Any, xlo: Any, xhi: Any) -> bool:
    return ((lo is None or v >= lo) and (hi is None or v <= hi)
            and (xlo is None or v > xlo) and (xhi is None or v < xhi))


def _json_eq(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _fmt_datetime(rng: random.Random) -> str:
    t = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=rng.randint(0, 365 * 86400))
    return t.isoformat().replace("+00:00", "Z")


_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "date-time": _fmt_datetime,
    "date": lambda r: _fmt_datetime(r)[:10],
    "time": lambda r: _fmt_datetime(r)[11:],
    "email": lambda r: f"{r.choice(_WORDS)}.{r.choice(_WORDS)}@example.com",
    "uri": lambda r: f"https://example.com/{r.choice(_WORDS)}/{r.randint(1, 999)}",
    "url": lambda r: f"https://example.com/{r.choice(_WORDS)}/{r.randint(1, 999)}",
    "uuid": lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    "ipv4": lambda r: "127.0.%d.%d" % (r.randint(0, 255), r.randint(1, 254)),
    "duration": lambda r: f"PT{r.randint(1, 59)}M",
}


def generate_instance(schema: Any, rng: random.Random | int = 0, *, max_depth: int = 6) -> Any:
    """A JSON value that validates against ``schema`` (the pydantic-v2 subset; ``pattern`` is not
    honoured). ``rng`` is a ``random.Random`` or a seed. Raises SchemaError when unsatisfiable."""
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    return _Generator(schema, rng, max_depth=max_depth).value(schema)


# --------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoopbackStats:
    """A consistent snapshot of the server's counters (``LoopbackServer.stats``)."""

    requests: int = 0  # every HTTP request received, any path
    chat_requests: int = 0  # POST /v1/chat/completions
    completions: int = 0  # chat requests answered with a well-formed completion (no fault)
    by_status: dict[int, int] = field(default_factory=dict)  # responses sent, by HTTP status
    faults: dict[str, int] = field(default_factory=dict)  # faults injected, by name
    in_flight: int = 0  # chat requests currently being handled
    max_in_flight: int = 0  # high-water mark since start / reset
    connections: int = 0  # TCP connections accepted
    probes: int = 0  # dialect probes (core/llm.py PROBE_MARK) answered, not counted in completions
    busy_s: float = 0.0  # seconds some slot was computing an answer (with ``slots``: the server's work)
    busy_span_s: float = 0.0  # from the first answer's start to the last one's end (with ``slots``)
    abandoned: int = 0  # answers computed for a client that had gone (timed out or cancelled)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "chat_requests": self.chat_requests,
            "completions": self.completions, "by_status": dict(self.by_status),
            "faults": dict(self.faults), "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight, "connections": self.connections,
            "probes": self.probes, "busy_s": self.busy_s, "busy_span_s": self.busy_span_s,
            "abandoned": self.abandoned,
        }


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = self.chat_requests = self.completions = 0
            self.connections = 0
            self.by_status: dict[int, int] = {}
            self.faults: dict[str, int] = {name: 0 for name in FAULTS}
            self.in_flight = getattr(self, "in_flight", 0)
            self.max_in_flight = self.in_flight
            self.probes = 0
            self.busy_s = 0.0
            self.busy_first: float | None = None
            self.busy_last = 0.0
            self.abandoned = 0

    def snapshot(self) -> LoopbackStats:
        with self.lock:
            return LoopbackStats(
                requests=self.requests, chat_requests=self.chat_requests, completions=self.completions,
                by_status=dict(self.by_status), faults=dict(self.faults), in_flight=self.in_flight,
                max_in_flight=self.max_in_flight, connections=self.connections, probes=self.probes,
                busy_s=self.busy_s, abandoned=self.abandoned,
                busy_span_s=(self.busy_last - self.busy_first) if self.busy_first is not None else 0.0,
            )


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------


class _Reply:
    """What to do with one request: send a response, or drop the connection without one."""

    __slots__ = ("status", "body", "headers", "action", "completion")

    def __init__(self, status: int = 200, body: bytes = b"", headers: Iterable[tuple[str, str]] = (),
                 action: str = "respond", completion: bool = False):
        self.status = status
        self.body = body
        self.headers = tuple(headers)
        self.action = action  # respond | drop
        self.completion = completion


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 413: "Payload Too Large", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
           headers: Iterable[tuple[str, str]] = ()) -> _Reply:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return _Reply(status, _dumps(body), headers)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


# --------------------------------------------------------------------------------------------
# Files and batches (the Batch API): upload, create, retrieve, list, cancel, results
# --------------------------------------------------------------------------------------------


@dataclass
class BatchOptions:
    """How the loopback's batch runner behaves (``LoopbackServer.set_batch``).

    ``processing_s``: seconds a batch stays in progress before its results are written;
    ``expire_after``: lines processed before the batch expires (the rest go to the error file with
    ``batch_expired``, as OpenAI does); ``line_error``: the share of lines answered with an error
    (status 500 in the error file); ``malformed``: the share of output lines written garbled (cut
    mid-JSON); ``fail``: the whole batch fails validation (no output). Draws are seeded."""

    processing_s: float = 0.0
    expire_after: int | None = None
    line_error: float = 0.0
    malformed: float = 0.0
    fail: bool = False


class _BatchEndpoints:
    """The files and batches endpoints, mixed into ``LoopbackServer``. Lines are answered by the
    same completion code as ``/chat/completions``; ``batch_lines`` counts every custom_id a batch
    ran (a test of "never submitted twice")."""

    def _batch_init(self) -> None:
        if getattr(self, "_files", None) is None:
            self._files: dict[str, dict] = {}
            self._file_data: dict[str, bytes] = {}
            self._batches: dict[str, dict] = {}
            self.batch_options = BatchOptions()
            self.batch_lines: dict[str, int] = {}
            self.batch_processing_s = 0.0
            self._batch_rng = random.Random(f"loopback-batches:{getattr(self, 'seed', 0)}")

    def set_batch(self, **options: Any) -> None:
        self._batch_init()
        self.batch_options = BatchOptions(**options)

    def expire_open_batches(self) -> None:
        """Expire every batch still validating or in progress now (its window has passed)."""
        self._batch_init()
        for b in list(self._batches.values()):
            if b["status"] in ("validating", "in_progress"):
                b["_expire_now"] = True

    def release_open_batches(self) -> None:
        """Let every batch still waiting out ``processing_s`` run now."""
        self._batch_init()
        for b in list(self._batches.values()):
            b["_release"] = True

    @property
    def batches(self) -> list[dict]:
        self._batch_init()
        return [{k: v for k, v in b.items() if not k.startswith("_")} for b in self._batches.values()]

    async def _dispatch_batch(self, method: str, path: str, query: str, headers: dict[str, str],
                              body: bytes) -> "_Reply | None":
        self._batch_init()
        if path == "/files" and method == "POST":
            return self._upload(headers, body)
        if path.startswith("/files/"):
            rest = path[len("/files/"):]
            fid, _, tail = rest.partition("/")
            if fid not in self._files:
                return _error(404, f"No such File object: {fid}", "invalid_request_error")
            if tail == "content" and method == "GET":
                return _Reply(200, self._file_data[fid])
            if not tail and method == "GET":
                return _Reply(200, _dumps(self._files[fid]))
            if not tail and method == "DELETE":
                self._files.pop(fid)
                self._file_data.pop(fid, None)
                return _Reply(200, _dumps({"id": fid, "object": "file", "deleted": True}))
        if path == "/batches" and method == "POST":
            return self._create_batch(body)
        if path == "/batches" and method == "GET":
            params = dict(p.partition("=")[::2] for p in query.split("&") if p)
            items = sorted(self._batches.values(), key=lambda b: b["_seq"], reverse=True)
            if params.get("after"):
                ids = [b["id"] for b in items]
                items = items[ids.index(params["after"]) + 1:] if params["after"] in ids else []
            limit = int(params.get("limit") or 20)
            page = items[:limit]
            return _Reply(200, _dumps({"object": "list", "data": [self._batch_view(b) for b in page],
                                       "first_id": page[0]["id"] if page else None,
                                       "last_id": page[-1]["id"] if page else None,
                                       "has_more": len(items) > limit}))
        if path.startswith("/batches/"):
            bid, _, tail = path[len("/batches/"):].partition("/")
            b = self._batches.get(bid)
            if b is None:
                return _error(404, f"No batch found with id '{bid}'.", "invalid_request_error")
            if tail == "cancel" and method == "POST":
                if b["status"] in ("validating", "in_progress"):
                    b["_cancel"] = True
                    b["status"] = "cancelling"
                    b["cancelling_at"] = int(time.time())
                return _Reply(200, _dumps(self._batch_view(b)))
            if not tail and method == "GET":
                return _Reply(200, _dumps(self._batch_view(b)))
        if path.startswith("/files") or path.startswith("/batches"):
            return _error(405, "method not allowed", "invalid_request_error")
        return None

    def _upload(self, headers: dict[str, str], body: bytes) -> "_Reply":
        ctype = headers.get("content-type", "")
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if "multipart/form-data" not in ctype or not m:
            return _error(400, "expected multipart/form-data", "invalid_request_error")
        sep = b"--" + m.group(1).encode()
        fields: dict[str, bytes] = {}
        filename = "upload.jsonl"
        for part in body.split(sep)[1:]:
            if part.startswith(b"--"):
                break
            head, _, content = part.lstrip(b"\r\n").partition(b"\r\n\r\n")
            name = re.search(rb'name="([^"]*)"', head)
            fn = re.search(rb'filename="([^"]*)"', head)
            if name:
                fields[name.group(1).decode()] = content[:-2] if content.endswith(b"\r\n") else content
            if fn:
                filename = fn.group(1).decode("utf-8", "replace")
        if "file" not in fields or fields.get("purpose", b"").decode() != "batch":
            return _error(400, "a 'file' and purpose 'batch' are required", "invalid_request_error")
        fid = f"file-loop{uuid.uuid4().hex[:20]}"
        self._file_data[fid] = fields["file"]
        self._files[fid] = {"id": fid, "object": "file", "bytes": len(fields["file"]), "created_at": int(time.time()),
                            "filename": filename, "purpose": "batch", "status": "processed"}
        return _Reply(200, _dumps(self._files[fid]))

    def _create_batch(self, raw: bytes) -> "_Reply":
        try:
            req = json.loads(raw)
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        fid = req.get("input_file_id")
        if fid not in self._files:
            return _error(400, f"Invalid 'input_file_id': {fid!r}.", "invalid_request_error", param="input_file_id")
        if req.get("endpoint") != "/v1/chat/completions" or req.get("completion_window") != "24h":
            return _error(400, "endpoint must be /v1/chat/completions and completion_window 24h",
                          "invalid_request_error")
        with self._fault_lock:
            self._seq += 1
            seq = self._seq
        now = int(time.time())
        b = {"id": f"batch_loop{seq:06d}{uuid.uuid4().hex[:8]}", "object": "batch", "endpoint": req["endpoint"],
             "errors": None, "input_file_id": fid, "completion_window": "24h", "status": "validating",
             "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
             "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
             "expired_at": None, "cancelling_at": None, "cancelled_at": None,
             "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": req.get("metadata"),
             "_seq": seq, "_options": self.batch_options}
        self._batches[b["id"]] = b
        asyncio.get_running_loop().create_task(self._run_batch(b))
        return _Reply(200, _dumps(self._batch_view(b)))

    @staticmethod
    def _batch_view(b: dict) -> dict:
        return {k: v for k, v in b.items() if not k.startswith("_")}

    async def _run_batch(self, b: dict) -> None:
        opts: BatchOptions = b["_options"]
        data = self._file_data[b["input_file_id"]]
        if opts.fail:
            b.update(status="failed", failed_at=int(time.time()), errors={"object": "list", "data": [
                {"code": "invalid_request", "message": "loopback: the batch failed validation", "param": None,
                 "line": 1}]})
            return
        b.update(status="in_progress", in_progress_at=int(time.time()))
        t_end = time.monotonic() + opts.processing_s
        while time.monotonic() < t_end and not any(b.get(k) for k in ("_cancel", "_expire_now", "_release")):
            await asyncio.sleep(min(0.02, max(0.0, t_end - time.monotonic())))
        t0 = time.perf_counter()
        out, err, counts = await asyncio.get_running_loop().run_in_executor(None, self._answer_lines, b, data, opts)
        self.batch_processing_s += time.perf_counter() - t0
        ended = int(time.time())
        for name, lines in (("output_file_id", out), ("error_file_id", err)):
            if lines:
                fid = f"file-loop{uuid.uuid4().hex[:20]}"
                blob = b"".join(lines)
                self._file_data[fid] = blob
                self._files[fid] = {"id": fid, "object": "file", "bytes": len(blob), "created_at": ended,
                                    "filename": f"{b['id']}_{name[:-8]}.jsonl", "purpose": "batch_output",
                                    "status": "processed"}
                b[name] = fid
        b["request_counts"] = counts
        if b.get("_cancel"):
            b.update(status="cancelled", cancelled_at=ended)
        elif b.get("_expired"):
            b.update(status="expired", expired_at=ended)
        else:
            b.update(status="completed", finalizing_at=ended, completed_at=ended)

    def _answer_lines(self, b: dict, data: bytes, opts: BatchOptions):
        out: list[bytes] = []
        err: list[bytes] = []
        counts = {"total": 0, "completed": 0, "failed": 0}
        stop = b.get("_cancel") or b.get("_expire_now")
        for n, line in enumerate(data.splitlines()):
            if not line.strip():
                continue
            counts["total"] += 1
            try:
                item = json.loads(line)
                cid, body = item["custom_id"], item["body"]
            except (ValueError, KeyError, TypeError):
                counts["failed"] += 1
                err.append(_dumps({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": None, "response": None,
                                   "error": {"code": "invalid_json_line", "message": f"line {n + 1} is not valid"}})
                           + b"\n")
                continue
            expired = stop or (opts.expire_after is not None and counts["completed"] + counts["failed"]
                               >= opts.expire_after)
            if expired:
                if not b.get("_cancel"):
                    b["_expired"] = True
                counts["failed"] += 1
                code = "batch_cancelled" if b.get("_cancel") else "batch_expired"
                err.append(_dumps({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": cid, "response": None,
                                   "error": {"code": code, "message": "This request could not be executed before "
                                             "the completion window expired." if code == "batch_expired" else
                                             "The batch was cancelled."}}) + b"\n")
                continue
            self.batch_lines[cid] = self.batch_lines.get(cid, 0) + 1
            r = self._batch_rng.random()
            problem = self._validate(body) if isinstance(body, dict) else _error(400, "body must be an object",
                                                                                "invalid_request_error")
            if problem is None and r < opts.line_error:
                problem = _error(500, "The server had an error processing this request (loopback).", "server_error")
            if problem is not None:
                counts["failed"] += 1
                err.append(_dumps({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": cid,
                                   "response": {"status_code": problem.status, "request_id": uuid.uuid4().hex,
                                                "body": json.loads(problem.body)}, "error": None}) + b"\n")
                continue
            payload = self._completion(body, None)
            counts["completed"] += 1
            text = _dumps({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": cid,
                           "response": {"status_code": 200, "request_id": uuid.uuid4().hex, "body": payload},
                           "error": None})
            if r >= opts.line_error and r < opts.line_error + opts.malformed:
                text = text[: max(1, len(text) // 2)]
            out.append(text + b"\n")
        return out, err, counts


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class LoopbackServer(_BatchEndpoints):
    """An OpenAI-compatible HTTP server on 127.0.0.1 with scripted answers and injected faults.

    ``latency``: seconds each chat request waits before its answer (429s and disconnects answer at
    once; ``timeout`` holds for ``timeout_hold``). ``faults``: ``{name: rate}`` with names from
    ``FAULTS`` and rates summing to at most 1, drawn once per chat request from a generator seeded
    by ``seed``. ``script(body)`` may return the message content (dict/list -> JSON). ``record``:
    how many request bodies ``.requests`` keeps (most recent; 0 keeps none).
    ``retry_after``: seconds a 429 asks the client to wait (sent as ``Retry-After`` and
    ``retry-after-ms``; the openai client ignores values <= 0 and then backs off 0.5 s, 1 s, ...).
    ``retry_after_500``: the same for 500s (default None: no header, as real servers; set it to
    make retry tests fast). ``timeout_hold``: seconds a ``timeout`` fault holds the request before
    dropping it; give the client a smaller ``timeout``.
    ``response_formats``: the response_format types accepted (others get a 400 that names
    ``response_format``, like servers without structured outputs). ``api_key``: when set, requests
    without ``Authorization: Bearer <api_key>`` get a 401.

    Dialects of real servers (``core/llm.py`` DIALECTS), so the fast tests cover each path:
    ``reject_status``: the status of a rejected response_format (400 as OpenAI-style servers, 422 as
    FastAPI's validation, 500 as llama-cpp-python answers ``json_schema``). ``grammar``:
    ``{"type": "json_object", "schema": ...}`` is answered with an instance of the schema
    (llama.cpp's grammar form; without it the schema is ignored). ``drop_system``: system messages
    are dropped before the answer is made (llama.cpp's ``gemma`` chat format); the script sees the
    messages without them. ``slots``: at most this many answers are computed at once, the others
    wait (a local server), and an answer whose client has gone is still computed (counted in
    ``stats.abandoned``; ``stats.busy_s`` is the time some slot computed). ``raw_newlines``: JSON
    answers carry raw newlines inside strings. ``owned_by``: what /models says owns the model
    (llama-cpp-python's server says "me"). ``judge_preamble``: a judge's one-token answer is
    "Which", with "A" and "B" among its top log-probabilities (a base model's habit). Cut-off
    answers: any answer longer than ``max_tokens`` is cut there with ``finish_reason: "length"``.
    Requests that carry ``core.llm.PROBE_MARK`` are probes: counted in ``stats.probes``, not in
    ``stats.completions``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        faults: Mapping[str, float] | None = None,
        seed: int = 0,
        script: Script | None = None,
        model: str = "loopback-1",
        timeout_hold: float = 5.0,
        retry_after: float = 0.05,
        retry_after_500: float | None = None,
        record: int = 10_000,
        response_formats: Iterable[str] = ("text", "json_object", "json_schema"),
        api_key: str | None = None,
        reject_status: int = 400,
        grammar: bool = False,
        drop_system: bool = False,
        slots: int | None = None,
        raw_newlines: bool = False,
        judge_preamble: bool = False,
        owned_by: str = "loopback",
    ):
        self.host = host
        self._port = port
        self.seed = seed
        self.model = model
        self.api_key = api_key
        self.response_formats = frozenset(response_formats)
        self.reject_status = reject_status
        self.grammar = grammar
        self.drop_system = drop_system
        self.slots = slots
        self.raw_newlines = raw_newlines
        self.judge_preamble = judge_preamble
        self.owned_by = owned_by
        self._slot_sem: asyncio.Semaphore | None = None
        self._script = script
        self._latency = 0.0
        self._timeout_hold = 0.0
        self._retry_after = retry_after
        self._retry_after_500 = retry_after_500
        self._faults: tuple[tuple[str, float], ...] = ()
        self._fault_lock = threading.Lock()
        self._fault_rng = random.Random(f"loopback-faults:{seed}")
        self._counters = _Counters()
        self._requests: deque[dict] = deque(maxlen=max(0, record))
        self._requests_lock = threading.Lock()
        self._record = record > 0
        self._seq = 0
        self.set_latency(latency)
        self.set_timeout_hold(timeout_hold)
        self.set_faults(faults or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conn_tasks: set[asyncio.Task] = set()
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._hold_lock = threading.Lock()
        self._hold_left: int | None = None  # hold(): how many chat requests still pass; None: not held
        self._held = 0
        self._batch_init()

    # ---- configuration at run time ----------------------------------------------------------

    @property
    def latency(self) -> float:
        return self._latency

    def set_latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("latency must be >= 0")
        self._latency = float(seconds)

    @property
    def timeout_hold(self) -> float:
        return self._timeout_hold

    def set_timeout_hold(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("timeout_hold must be >= 0")
        self._timeout_hold = float(seconds)

    @property
    def faults(self) -> dict[str, float]:
        return dict(self._faults)

    def set_faults(self, faults: Mapping[str, float]) -> None:
        """Replace the fault rates, e.g. ``{"429": 0.1, "timeout": 0.02}``; ``{}`` turns them off."""
        clean: list[tuple[str, float]] = []
        for name, rate in faults.items():
            name = str(name)
            if name not in FAULTS:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
            rate = float(rate)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate for {name!r} must be in [0, 1], got {rate}")
            if rate > 0:
                clean.append((name, rate))
        if sum(r for _, r in clean) > 1.0 + 1e-9:
            raise ValueError("fault rates sum to more than 1")
        with self._fault_lock:
            self._faults = tuple(clean)

    def set_script(self, script: Script | None) -> None:
        self._script = script

    def hold(self, after: int = 0) -> None:
        """Stall, as an overloaded server does: chat requests past the next ``after`` wait, unanswered
        (not yet counted as in flight), until ``release()``; probes are answered. Called again while
        holding, it lets ``after`` more through (the longest-waiting first, roughly). A test keeps a job
        running across an event it controls this way, with no timing to tune."""
        with self._hold_lock:
            self._hold_left = max(0, int(after))

    def release(self) -> None:
        """Answer the held requests and stop holding."""
        with self._hold_lock:
            self._hold_left = None

    @property
    def held(self) -> int:
        """Chat requests waiting for ``release()`` (or another ``hold``'s allowance) now."""
        with self._hold_lock:
            return self._held

    async def _wait_while_held(self) -> None:
        waiting = False
        try:
            while True:
                with self._hold_lock:
                    if self._hold_left is None:
                        return
                    if self._hold_left > 0:
                        self._hold_left -= 1
                        return
                    if not waiting:
                        waiting = True
                        self._held += 1
                await asyncio.sleep(0.02)
        finally:
            if waiting:
                with self._hold_lock:
                    self._held -= 1

    # ---- observation ------------------------------------------------------------------------

    @property
    def stats(self) -> LoopbackStats:
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and forget recorded requests (the fault generator keeps its state)."""
        self._counters.reset()
        with self._requests_lock:
            self._requests.clear()

    @property
    def requests(self) -> list[dict]:
        """The most recent chat request bodies received (parsed JSON), oldest first."""
        with self._requests_lock:
            return list(self._requests)

    # ---- life cycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """``http://host:port`` (without ``/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    @property
    def url(self) -> str:
        """The base URL to hand to ``openai.OpenAI(base_url=...)``: ``http://host:port/v1``."""
        return self.base_url + "/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "LoopbackServer":
        if self.running:
            return self
        self._started.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name=f"loopback-{self.host}:{self._port}", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._start_error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._start_error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
            except Exception:
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LoopbackServer({self.url if self._port else self.host!r}, {state})"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(asyncio.start_server(
                self._connection, self.host, self._port, backlog=4096, limit=1 << 20,
                reuse_address=True,
            ))
            self._port = self._server.sockets[0].getsockname()[1]
        except BaseException as e:  # bind errors and the like go back to start()
            self._start_error = e
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            finally:
                loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conn_tasks):
            t.cancel()
        if self._conn_tasks:
            await asyncio.gather(*self._conn_tasks, return_exceptions=True)

    # ---- HTTP/1.1 ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conn_tasks.add(task)
        c = self._counters
        with c.lock:
            c.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head[:-4].decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    writer.write(self._encode(_error(400, "malformed request line", "invalid_request_error"), False))
                    return
                method, target, version = parts
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                conn_hdr = headers.get("connection", "").lower()
                keep_alive = ("close" not in conn_hdr) if version == "HTTP/1.1" else ("keep-alive" in conn_hdr)
                if headers.get("expect", "").lower() == "100-continue":
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    if "chunked" in headers.get("transfer-encoding", "").lower():
                        body = await self._read_chunked(reader)
                    else:
                        length = int(headers.get("content-length") or 0)
                        # batch files may be large (OpenAI takes 200 MB); other bodies 64 MB
                        cap = 512 << 20 if target.startswith(("/v1/files", "/files")) else 64 << 20
                        if length < 0 or length > cap:
                            too_big = _error(413, "request body too large", "invalid_request_error")
                            writer.write(self._encode(too_big, False))
                            return
                        body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                with c.lock:
                    c.requests += 1
                reply = await self._dispatch(method, target, headers, body)
                if reply.action == "drop":  # no response at all: close the socket
                    return
                if reply.completion and (reader.at_eof() or writer.is_closing()):
                    with c.lock:  # computed for a client that has gone
                        c.abandoned += 1
                writer.write(self._encode(reply, keep_alive))
                if writer.transport.get_write_buffer_size() > 1 << 16:
                    await writer.drain()
                if not keep_alive:
                    return
        except asyncio.CancelledError:  # shutdown; swallowed (3.11's stream callback chokes on it)
            return
        except Exception:  # a broken connection must never take the server down
            return
        finally:
            self._conn_tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        out = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return bytes(out)
            out += await reader.readexactly(size)
            await reader.readexactly(2)

    def _encode(self, reply: _Reply, keep_alive: bool) -> bytes:
        c = self._counters
        with c.lock:
            c.by_status[reply.status] = c.by_status.get(reply.status, 0) + 1
        head = [
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
            "Content-Type: application/json",
            f"Content-Length: {len(reply.body)}",
            f"Date: {formatdate(usegmt=True)}",
            "Connection: keep-alive" if keep_alive else "Connection: close",
            "Server: loopback",
        ]
        head.extend(f"{k}: {v}" for k, v in reply.headers)
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body

    async def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Reply:
        path = target.split("?", 1)[0]
        if path.startswith("/v1/"):
            path = path[3:]
        if path in ("/health", "/healthz", "/"):
            return _Reply(200, b'{"status":"ok"}') if method == "GET" else \
                _error(405, "method not allowed", "invalid_request_error")
        if path == "/loopback/stats" and method == "GET":  # for benchmarks against the CLI server
            return _Reply(200, _dumps({**self.stats.as_dict(), "batch_processing_s": self.batch_processing_s,
                                       "batch_lines": sum(self.batch_lines.values())}))
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if path.startswith(("/files", "/batches")):  # the Batch API (_BatchEndpoints)
            reply = await self._dispatch_batch(method, path, target.partition("?")[2], headers, body)
            if reply is not None:
                return reply
        if path == "/models":
            if method != "GET":
                return _error(405, "method not allowed", "invalid_request_error")
            return _Reply(200, _dumps({"object": "list", "data": [self._model_obj(self.model, self.owned_by)]}))
        if path.startswith("/models/"):
            return _Reply(200, _dumps(self._model_obj(path[len("/models/"):], self.owned_by)))
        if path == "/chat/completions":
            if method != "POST":
                return _error(405, "method not allowed", "invalid_request_error")
            return await self._chat(body)
        return _error(404, f"Invalid URL ({method} {target})", "invalid_request_error", "unknown_url")

    @staticmethod
    def _model_obj(name: str, owned_by: str = "loopback") -> dict:
        return {"id": name, "object": "model", "created": 1700000000, "owned_by": owned_by}

    # ---- chat completions -------------------------------------------------------------------

    def _draw_fault(self) -> str | None:
        with self._fault_lock:
            if not self._faults:
                return None
            r = self._fault_rng.random()
            acc = 0.0
            for name, rate in self._faults:
                acc += rate
                if r < acc:
                    return name
            return None

    async def _chat(self, raw: bytes) -> _Reply:
        c = self._counters
        with c.lock:
            c.chat_requests += 1
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            return _error(400, f"We could not parse the JSON body of your request. ({e})", "invalid_request_error")
        if self._record:
            with self._requests_lock:
                self._requests.append(body)
        problem = self._validate(body)
        if problem is not None:
            return problem
        if self.drop_system:
            body = {**body, "messages": [m for m in body["messages"]
                                         if not (isinstance(m, dict) and m.get("role") == "system")]}
        probe = "[prefdissect probe]" in json.dumps(body.get("messages"))
        if not probe:
            await self._wait_while_held()

        fault = self._draw_fault()
        if fault is not None:
            with c.lock:
                c.faults[fault] += 1
        with c.lock:
            c.in_flight += 1
            c.max_in_flight = max(c.max_in_flight, c.in_flight)
        try:
            if fault == "429":
                hdrs = _retry_headers(self._retry_after) + [("x-ratelimit-remaining-requests", "0")]
                return _error(429, "Rate limit reached for requests (loopback fault injection).",
                              "requests", "rate_limit_exceeded", headers=hdrs)
            if fault == "disconnect":
                return _Reply(action="drop")
            if fault == "timeout":
                await asyncio.sleep(self._timeout_hold)
                return _Reply(action="drop")
            if self.slots:
                if self._slot_sem is None:
                    self._slot_sem = asyncio.Semaphore(self.slots)
                async with self._slot_sem:  # a local server: one answer per slot at a time
                    t0 = time.perf_counter()
                    await asyncio.sleep(self._latency)
                    t1 = time.perf_counter()
                    with c.lock:
                        c.busy_s += t1 - t0
                        c.busy_first = t0 if c.busy_first is None else c.busy_first
                        c.busy_last = t1
            elif self._latency > 0:
                await asyncio.sleep(self._latency)
            if fault == "500":
                return _error(500, "The server had an error while processing your request (loopback fault injection).",
                              "server_error", headers=_retry_headers(self._retry_after_500))
            try:
                payload = self._completion(body, fault)
            except SchemaError as e:
                return _error(400, f"Invalid schema for response_format: {e}", "invalid_request_error",
                              param="response_format")
            except Exception as e:  # a failing script is a server error the test should see
                return _error(500, f"loopback script failed: {type(e).__name__}: {e}", "server_error")
            data = _dumps(payload)
            if fault == "truncated":
                return _Reply(200, data[: max(1, len(data) // 2)])
            if fault is None:
                with c.lock:
                    if probe:
                        c.probes += 1
                    else:
                        c.completions += 1
            return _Reply(200, data, [("x-request-id", payload["id"])], completion=fault is None)
        finally:
            with c.lock:
                c.in_flight -= 1

    def _validate(self, body: dict) -> _Reply | None:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return _error(400, "'messages' must be a non-empty array.", "invalid_request_error", param="messages")
        if body.get("stream"):
            return _error(400, "Streaming is not supported by the loopback server; set stream=false.",
                          "invalid_request_error", "unsupported_value", "stream")
        rf = body.get("response_format")
        rtype = rf.get("type") if isinstance(rf, dict) else ("text" if rf is None else None)
        if rtype not in self.response_formats:
            if self.reject_status == 422:  # FastAPI's validation error, as pydantic servers send it
                return _Reply(422, _dumps({"detail": [{"type": "literal_error", "loc": ["body", "response_format",
                              "type"], "msg": "Input should be 'text' or 'json_object'", "input": rtype}]}))
            if self.reject_status == 500:
                return _error(500, f"Internal Server Error: unsupported response_format type {rtype!r}",
                              "server_error")
            return _error(400, f"Invalid parameter: 'response_format' of type {rtype!r} is not supported "
                          "by this model.", "invalid_request_error", "unsupported_value", "response_format")
        if rtype == "json_schema" and not isinstance(rf.get("json_schema"), dict):
            return _error(400, "Missing required parameter: 'response_format.json_schema'.",
                          "invalid_request_error", "missing_required_parameter", "response_format.json_schema")
        top = body.get("top_logprobs")
        if top is not None:
            if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
                return _error(400, "'top_logprobs' must be an integer between 0 and 20.",
                              "invalid_request_error", "invalid_value", "top_logprobs")
            if not body.get("logprobs"):
                return _error(400, "Invalid value for 'top_logprobs': 'logprobs' must be set to true.",
                              "invalid_request_error", "invalid_value", "top_logprobs")
        n = body.get("n", 1)
        if n is not None and (not isinstance(n, int) or not 1 <= n <= 16):
            return _error(400, "'n' must be an integer between 1 and 16.", "invalid_request_error", param="n")
        return None

    def _content(self, body: dict, rng: random.Random, fault: str | None) -> str:
        rf = body.get("response_format") or {"type": "text"}
        rtype = rf.get("type", "text")
        if fault == "malformed":
            return rng.choice([
                'Sure! Here is the JSON you asked for: {"answer": "A", "reason": ',
                '{"unexpected_field": true, "score": "not a number"',
                "[1, 2, 3]",
                "I think the first response is better overall.",
            ]) if rtype != "text" else "\ufffd\ufffd {{ malformed ]]"
        if self._script is not None:
            out = self._script(body)
            if out is not None:
                return out if isinstance(out, str) else json.dumps(out, ensure_ascii=False)
        if rtype == "json_schema":
            schema = rf["json_schema"].get("schema")
            value = generate_instance({} if schema is None else schema, rng)
            if schema is None and not isinstance(value, dict):
                value = {"answer": value}
            return self._json_text(value)
        if rtype == "json_object" and self.grammar and isinstance(rf.get("schema"), dict):
            return self._json_text(generate_instance(rf["schema"], rng))
        if rtype == "json_object":
            return json.dumps({"answer": _words(rng, 2, 6), "score": rng.randint(0, 3),
                               "confident": rng.random() < 0.5})
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if self.judge_preamble and isinstance(limit, int) and limit <= 8:
            return "Which response is better? " + rng.choice(("A", "B"))
        if limit == 1:  # a judge asked for one token: answer like one
            return rng.choice(("A", "B"))
        return " ".join(_sentence(rng) for _ in range(rng.randint(1, 3)))

    def _json_text(self, value: Any) -> str:
        """A JSON answer; with ``raw_newlines``, every string of prose (a space, over 24 characters) carries a raw newline
        (invalid for strict JSON parsers, as small local models write them)."""
        if not self.raw_newlines:
            return json.dumps(value, ensure_ascii=False)

        def mark(v: Any) -> Any:
            if isinstance(v, str) and " " in v and len(v) > 24:  # prose, not an enum value
                return v.replace(" ", "\n", 1)
            if isinstance(v, dict):
                return {k: mark(x) for k, x in v.items()}
            if isinstance(v, list):
                return [mark(x) for x in v]
            return v

        return json.dumps(mark(value), ensure_ascii=False).replace("\\n", "\n")

    def _completion(self, body: dict, fault: str | None) -> dict:
        messages = body["messages"]
        key = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(f"{self.seed}\x00{key}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:16], "big"))
        prompt_words = sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))
        prompt_tokens = max(1, math.ceil(prompt_words * 1.3))
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        want_lp = bool(body.get("logprobs"))
        top_k = int(body.get("top_logprobs") or 0)
        n = int(body.get("n") or 1)
        choices, completion_tokens = [], 0
        for i in range(n):
            finish = "stop"
            lp: dict | None = None
            if fault == "refusal":
                toks = tokenize(REFUSAL_TEXT)
                message = {"role": "assistant", "content": None, "refusal": REFUSAL_TEXT, "annotations": []}
                if want_lp:
                    lp = {"content": None, "refusal": _logprobs(toks, top_k, digest + bytes([i]))}
            else:
                content = self._content(body, rng, fault)
                toks = tokenize(content)
                if isinstance(limit, int) and limit > 0 and len(toks) > limit:
                    toks = toks[:limit]
                    content = "".join(toks)
                    finish = "length"
                message = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
                if want_lp:
                    lp = {"content": _logprobs(toks, top_k, digest + bytes([i])), "refusal": None}
                    if self.judge_preamble and lp["content"] and top_k >= 3:  # "Which", with A and B close behind
                        first = lp["content"][0]
                        first["top_logprobs"] = first["top_logprobs"][:top_k - 2] + [
                            {"token": t, "logprob": math.log(q), "bytes": list(t.encode())}
                            for t, q in ((" A", rng.uniform(0.05, 0.2)), (" B", rng.uniform(0.05, 0.2)))]
            completion_tokens += len(toks)
            choices.append({"index": i, "message": message, "logprobs": lp, "finish_reason": finish})
        with self._fault_lock:
            self._seq += 1
            seq = self._seq
        return {
            "id": f"chatcmpl-loop{seq:08d}{digest[:6].hex()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "system_fingerprint": "fp_loopback",
            "service_tier": "default",
        }


# --------------------------------------------------------------------------------------------
# Scripted roles for the manipulation experiment (core/experiment.py)
# --------------------------------------------------------------------------------------------

#: text cues that the offline heuristics (core/heuristics.py) read as the attribute shown at the top of its scale
MANIPULATION_CUES: dict[str, str] = {
    "informal": "lol 😀 gonna be fine btw, no worries 😀!!!",
    "admits_limits": "I'm not sure about every detail, and as an AI I cannot verify this; I don't know the latest figures.",
    "interactive": "Would you like more detail on any part? Let me know if anything is unclear, and feel free to ask more.",
    "supporting_materials": "According to a study by Smith et al. (2020) [1], this holds [2]; see "
                            "https://example.org/reference for the source.",
    "complex_language": "Notwithstanding considerable methodological heterogeneity, contemporaneous investigations "
                        "consistently demonstrate substantial organizational and institutional implications "
                        "regarding comparative effectiveness.",
    "step_by_step": "Step 1: read the question. Step 2: gather the facts. Step 3: weigh them. Step 4: decide. "
                    "Step 5: check the result.",
}


def _scripted_messages(body: dict) -> tuple[str, str]:
    system = "\n".join(_text_of(m.get("content")) for m in body.get("messages", []) if m.get("role") == "system")
    user = "\n".join(_text_of(m.get("content")) for m in body.get("messages", []) if m.get("role") == "user")
    return system, user


def _listed(text: str, marker: str, labels: Mapping[str, str]) -> set[str]:
    """Attribute keys listed as "- <label>: ..." lines after ``marker`` (up to a blank line)."""
    at = text.find(marker)
    if at < 0:
        return set()
    out = set()
    for line in text[at + len(marker):].lstrip("\n").split("\n"):
        if not line.strip():
            break
        name = line.strip().lstrip("-* ").split(":", 1)[0].strip().lower()
        if name in labels:
            out.add(labels[name])
    return out


def manipulable_model(labels: Mapping[str, str], *, rate: float = 0.8, base_rate: float = 0.25, seed: int = 0,
                      show_marker: str = "show these qualities:", avoid_marker: str = "avoid these qualities:",
                      rates: Mapping[str, float] | None = None) -> Script:
    """A model under test: it answers a generation request (plain text, more than 8 tokens allowed)
    with a few plain sentences, and shows each attribute its system prompt lists after ``show_marker``
    with probability ``rate`` (``rates[key]`` per attribute), hides each one listed after
    ``avoid_marker`` with that probability, and otherwise shows each cue with probability
    ``base_rate``, so the control arm varies too. ``labels`` maps an attribute's label (lower case,
    as the prompt lists it) to its key; cues are ``MANIPULATION_CUES`` plus length (``lengthy``:
    three times longer when shown, one short sentence when avoided), formatting (``well_formatted``:
    a heading, a list, paragraphs) and repetition (``non_repetitive`` avoided: a sentence repeated).
    Answers are deterministic in (seed, messages)."""
    labels = {k.lower(): v for k, v in labels.items()}

    def script(body: dict) -> str | None:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if body.get("response_format") or (isinstance(limit, int) and limit <= 8):
            return None
        system, user = _scripted_messages(body)
        show, avoid = _listed(system, show_marker, labels), _listed(system, avoid_marker, labels)
        digest = hashlib.sha256(f"{seed}\x00{system}\x00{user}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:16], "big"))

        def on(key: str) -> bool:
            r = (rates or {}).get(key, rate)
            draw = rng.random()
            if key in show:
                return draw < r or rng.random() < base_rate
            if key in avoid:
                return draw >= r and rng.random() < base_rate
            return rng.random() < base_rate

        topic = " ".join(user.split()[:6]) or "the question"
        body_s = [f"This answer is about {topic}.", _sentence(rng), _sentence(rng), _sentence(rng)]
        if on("lengthy"):
            body_s += [_sentence(rng) for _ in range(12)]
        elif "lengthy" in avoid and rng.random() < (rates or {}).get("lengthy", rate):
            body_s = body_s[:1]
        for key, cue in MANIPULATION_CUES.items():
            if on(key):
                body_s.append(cue)
        if "non_repetitive" in avoid and rng.random() < (rates or {}).get("non_repetitive", rate):
            body_s += [body_s[0]] * 4
        if on("well_formatted"):
            half = max(1, len(body_s) // 2)
            return ("## Answer\n\n" + " ".join(body_s[:half]) + "\n\n- the first point\n- the second point\n"
                    "- the third point\n\n" + " ".join(body_s[half:]))
        return " ".join(body_s)

    return script


def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    return text[i + len(start):j] if i >= 0 and j >= 0 else None


def profile_judge(weights: Mapping[str, float], featurize: Callable[[str, str, str], Mapping[str, float]], *,
                  seed: int = 0, position: float = 0.0,
                  markers: tuple[tuple[str, str], ...] = (("[User query]\n", "\n[End of user query]"),
                                                          ("[Response A]\n", "\n[End of response A]"),
                                                          ("[Response B]\n", "\n[End of response B]"))) -> Script:
    """A judge whose verdicts come from a known profile: for a judge request (plain text, at most 8
    tokens) it reads the query and the two responses between ``markers``, computes the comparison
    features ``featurize(query, first, second)`` (+1: the first is better on the attribute) and answers
    "A" with probability sigmoid(position + sum_k weights[k] * feature_k), else "B" (a seeded draw per
    request: the same request gets the same verdict). Other requests get the default answers."""

    def script(body: dict) -> str | None:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if body.get("response_format") or not (isinstance(limit, int) and limit <= 8):
            return None
        _, user = _scripted_messages(body)
        parts = [_between(user, a, b) for a, b in markers]
        if any(p is None for p in parts):
            return None
        x = featurize(*parts)
        z = position + sum(w * float(x.get(k, 0)) for k, w in weights.items())
        digest = hashlib.sha256(f"judge:{seed}\x00{user}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2 ** 64
        return "A" if u < 1.0 / (1.0 + math.exp(-z)) else "B"

    return script


def _retry_headers(seconds: float | None) -> list[tuple[str, str]]:
    if seconds is None:
        return []
    return [("Retry-After", f"{seconds:g}"), ("retry-after-ms", f"{seconds * 1000:g}")]


def _logprobs(tokens: list[str], top_k: int, seed: bytes) -> list[dict]:
    """OpenAI-style per-token log-probabilities: the emitted token is the most likely one, the
    alternatives share part of the rest (probabilities sum to < 1). For an "A"/"B" token the
    first alternative is the other letter."""
    rng = random.Random(int.from_bytes(hashlib.sha256(b"lp" + seed).digest()[:16], "big"))
    out = []
    for tok in tokens:
        p = rng.uniform(0.55, 0.97)
        entry = {"token": tok, "logprob": math.log(p), "bytes": list(tok.encode()), "top_logprobs": []}
        if top_k:
            rest = 1.0 - p
            alts: list[tuple[str, float]] = []
            bare = tok.strip()
            if bare in ("A", "B"):
                other = tok.replace(bare, "B" if bare == "A" else "A")
                q = rest * rng.uniform(0.6, 0.9)
                alts.append((other, q))
                rest -= q
            pool = [a for a in _ALT_TOKENS if a != tok]
            for alt in rng.sample(pool, min(len(pool), top_k)):
                if len(alts) >= top_k - 1:
                    break
                q = rest * rng.uniform(0.2, 0.5)
                alts.append((alt, q))
                rest -= q
            tops = [(tok, p)] + alts
            entry["top_logprobs"] = [
                {"token": t, "logprob": math.log(q) if q > 0 else -9999.0, "bytes": list(t.encode())}
                for t, q in tops[:top_k]
            ]
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _fault_arg(text: str) -> tuple[str, float]:
    name, sep, rate = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=RATE, got {text!r}")
    name = name.strip()
    if name not in FAULTS:
        raise argparse.ArgumentTypeError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    try:
        value = float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate must be a number, got {rate!r}") from None
    return name, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m core.loopback",
        description="Serve a scripted OpenAI-compatible chat-completions endpoint (for tests, "
                    "benchmarks and offline demos). Prints the base URL, serves until Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per request before answering")
    p.add_argument("--fault", type=_fault_arg, action="append", default=[], metavar="NAME=RATE",
                   help=f"inject a fault at a rate per request (repeatable); names: {', '.join(FAULTS)}")
    p.add_argument("--seed", type=int, default=0, help="seed for answers and fault draws")
    p.add_argument("--model", default="loopback-1", help="model id listed by /v1/models")
    p.add_argument("--timeout-hold", type=float, default=5.0, help="seconds a 'timeout' fault holds a request")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    faults: dict[str, float] = {}
    for name, rate in args.fault:
        faults[name] = rate
    try:
        server = LoopbackServer(host=args.host, port=args.port, latency=args.latency, faults=faults,
                                seed=args.seed, model=args.model, timeout_hold=args.timeout_hold)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        server.start()
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C and SIGTERM stop cleanly, even when started with SIGINT ignored (a background job)
        def _interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        s = server.stats
        server.stop()
        print(f"served {s.requests} requests ({s.completions} completions, faults "
              f"{ {k: v for k, v in s.faults.items() if v} })", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
