"""The LLM boundary: one object with a fixed contract.

Messages and an optional response schema go in; the parsed result, the raw text, usage, cost and
latency come out. Everything above this module (annotation, judge collection) talks to any
OpenAI-compatible server (OpenAI, vLLM, Ollama, a gateway) through the official ``openai`` client,
whose own retries (exponential backoff with jitter, honouring Retry-After) handle 429, 5xx,
timeouts and dropped connections. Here we add: bounded concurrency, request- and token-per-minute
limits, structured outputs in each server's own dialect (``DIALECTS``, data; found once per endpoint by
``LLM.probe`` and kept in the store by ``paidwork.endpoint_dialect``), lenient JSON, cut-off answers
asked again with more room, one re-ask when an answer does not parse, local-server etiquette (a
one-slot server gets one request computing and one waiting, timeouts that fit its pace), failure
kinds that tell a deterministic failure from one that may pass, and prices.

The API key is read from the environment (or handed over from Streamlit secrets by the dashboard)
and lives only inside the client: it is not part of ``public()``, reprs, job records or logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import BaseModel, ValidationError

from . import config

if TYPE_CHECKING:
    import openai

KEY_ENVS = ("PREFDISSECT_LLM_API_KEY", "OPENAI_API_KEY")
CLIENT_SLOTS = 16


def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(name)
    return v if v not in (None, "") else default


def _float(name: str, default: float | None) -> float | None:
    v = _env(name)
    return float(v) if v is not None else default


@dataclass(frozen=True)
class LLMSettings:
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    temperature: float = 0.0
    max_tokens: int = 2048
    concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    price_input: float | None = None  # USD per million input tokens; None: the price table's (core/prices.py)
    price_output: float | None = None  # USD per million output tokens
    batch: bool = False  # priced as a Batch-API run (the table's batch prices)
    timeout_s: float = 120.0
    max_retries: int = 6
    #: force a structured-output dialect (a name in DIALECTS) instead of probing the endpoint
    response_mode: str | None = None
    #: "keep" or "fold" the system message into the user message; None: by the dialect
    system_role: str | None = None
    api_key: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, **overrides: Any) -> "LLMSettings":
        """Settings from ``PREFDISSECT_LLM_*`` variables (see the README), then ``overrides``.

        The configured key goes only with a base URL the operator configured
        (``config.key_allowed_for``); for any other base URL the key is the one typed for that
        job (``PREFDISSECT_LLM_TYPED_API_KEY`` in the worker's environment) or none."""
        s = cls(
            model=_env("PREFDISSECT_LLM_MODEL", cls.model),
            base_url=_env("PREFDISSECT_LLM_BASE_URL", _env("OPENAI_BASE_URL")),
            temperature=_float("PREFDISSECT_LLM_TEMPERATURE", cls.temperature),
            max_tokens=int(_float("PREFDISSECT_LLM_MAX_TOKENS", cls.max_tokens)),
            concurrency=int(_float("PREFDISSECT_LLM_CONCURRENCY", cls.concurrency)),
            requests_per_minute=_float("PREFDISSECT_LLM_RPM", None),
            tokens_per_minute=_float("PREFDISSECT_LLM_TPM", None),
            price_input=_float("PREFDISSECT_LLM_PRICE_INPUT", None),
            price_output=_float("PREFDISSECT_LLM_PRICE_OUTPUT", None),
            timeout_s=_float("PREFDISSECT_LLM_TIMEOUT", cls.timeout_s),
            max_retries=int(_float("PREFDISSECT_LLM_MAX_RETRIES", cls.max_retries)),
            response_mode=_env("PREFDISSECT_LLM_RESPONSE_MODE"),
            system_role=_env("PREFDISSECT_LLM_SYSTEM_ROLE"),
            api_key=next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), None),
        )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        s = replace(s, **overrides)
        if "api_key" not in overrides and not config.key_allowed_for(s.base_url):
            # a base URL the operator did not configure (typed in a page, a job's parameters, a CLI
            # flag) gets no server key: only a key typed for that job, if any
            s = replace(s, api_key=os.environ.get(config.TYPED_KEY_ENV) or None)
        return s

    @property
    def key_is_set(self) -> bool:
        return bool(self.api_key)

    def public(self) -> dict[str, Any]:
        """Everything but the key: safe to store, log and show."""
        return {
            "model": self.model,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "concurrency": self.concurrency,
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "price_input": self.price_input,
            "price_output": self.price_output,
            # only when set, so the jobs of settings without them keep their keys
            **({"response_mode": self.response_mode} if self.response_mode else {}),
            **({"system_role": self.system_role} if self.system_role else {}),
            **({"batch": True} if self.batch else {}),
            # a job's own timeout and retries (the page's field, --timeout, --max-retries): its worker reads its
            # settings from the job over its own environment
            **({"timeout_s": self.timeout_s} if self.timeout_s != LLMSettings.timeout_s else {}),
            **({"max_retries": self.max_retries} if self.max_retries != LLMSettings.max_retries else {}),
        }

    def check(self) -> None:
        """A clear error for a forced dialect or system-role setting that does not exist."""
        if self.response_mode is not None and self.response_mode not in DIALECTS:
            raise ValueError(f"PREFDISSECT_LLM_RESPONSE_MODE={self.response_mode!r} is not a response mode; "
                             f"known: {', '.join(DIALECTS)}")
        if self.system_role not in (None, "keep", "fold"):
            raise ValueError(f"PREFDISSECT_LLM_SYSTEM_ROLE={self.system_role!r}: expected keep or fold")

    @property
    def price(self):
        """This model's ``prices.Price``: the user's prices, else the table's, else unknown."""
        from .prices import price_of

        return price_of(self.model, self.base_url, batch=self.batch, price_input=self.price_input,
                        price_output=self.price_output)

    @property
    def price_known(self) -> bool:
        return self.price.known

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for these tokens; 0.0 when the price is unknown (check ``price_known`` before
        showing it: an unknown price is shown as unknown)."""
        return self.price.cost(prompt_tokens, completion_tokens) or 0.0


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters per token for English), used for cost
    estimates and the token rate limit; actual usage comes from the server's reply."""
    return max(1, (len(text) + 3) // 4)


def messages_tokens(messages: list[dict[str, str]]) -> int:
    return sum(estimate_tokens(m.get("content") or "") + 4 for m in messages)


class LLMError(Exception):
    """A request that failed for good; ``raw`` holds the last answer text, if any.

    ``kind`` names the reason in a form that can be compared across requests ("status 400",
    "schema", "cut off", "timeout", "connection", ...): a run whose requests all fail with one
    deterministic kind stops early (``DETERMINISTIC``). ``estimated``: ``usage`` is an estimate (the
    request timed out or the connection dropped, so the server never said what it used)."""

    def __init__(self, message: str, *, raw: str | None = None, usage: tuple[int, int] = (0, 0),
                 attempts: int = 1, latency_s: float = 0.0, kind: str = "other", estimated: bool = False):
        super().__init__(message)
        self.raw = raw
        self.usage = usage
        self.attempts = attempts
        self.latency_s = latency_s
        self.kind = kind
        self.estimated = estimated

    @property
    def deterministic(self) -> bool:
        """Would the same request fail the same way again (not a timeout, a 429, a dropped line)?"""
        return self.kind in DETERMINISTIC or self.kind.startswith("status 4") and self.kind != "status 429"


#: failure kinds that repeat when the same request is sent again
DETERMINISTIC = ("schema", "cut off", "refused", "placeholder", "status 500", "certificate")


@dataclass
class Completion:
    content: str | None
    parsed: Any
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_s: float
    attempts: int = 1
    mode: str = "text"
    top_logprobs: dict[str, float] | None = None  # first answer token with A/B (else the first): token -> logprob
    finish_reason: str | None = None


# ---------------------------------------------------------------- server dialects, as data

#: How each kind of server takes a JSON schema for its answer, in the order they are probed.
#: ``body`` is merged into the request; "$schema" and "$name" stand for the schema and its name.
#: ``constrains``: the server enforces the schema (a grammar or guided decoding), so a probe can
#: check that it did; the last two only ask for JSON, or nothing, and rely on the prompt.
DIALECTS: dict[str, dict[str, Any]] = {
    "json_schema": {"servers": "OpenAI; vLLM, LM Studio, Ollama >= 0.5, LiteLLM (OpenAI's structured outputs)",
                    "body": {"response_format": {"type": "json_schema", "json_schema": {
                        "name": "$name", "schema": "$schema", "strict": True}}}, "constrains": True},
    "json_object_schema": {"servers": "llama.cpp and llama-cpp-python (a grammar built from the schema)",
                           "body": {"response_format": {"type": "json_object", "schema": "$schema"}},
                           "constrains": True},
    "guided_json": {"servers": "vLLM's guided decoding", "body": {"guided_json": "$schema"}, "constrains": True},
    "ollama_format": {"servers": "Ollama's own format parameter", "body": {"format": "$schema"}, "constrains": True},
    "json_object": {"servers": "JSON mode without a schema", "body": {"response_format": {"type": "json_object"}},
                    "constrains": False},
    "text": {"servers": "anything: the prompt alone asks for JSON", "body": {}, "constrains": False},
}

#: words in a rejection that show the server refused the structured-output parameter itself
_FORMAT_WORDS = ("response_format", "json_schema", "guided_json", "schema", "format", "grammar")


def dialect_body(mode: str, schema: type[BaseModel] | None) -> dict[str, Any]:
    """The request fields that carry ``schema`` in dialect ``mode`` (nothing without a schema).

    Where the server turns the schema into a grammar (every constraining mode but OpenAI's), lists
    get a bound: a small model under a grammar otherwise writes list items until its token limit;
    small integer ranges become enums (llama-cpp-python's grammar ignores minimum and maximum, and
    a 270M model rated 4 on a 0-3 scale). Strings get none: llama.cpp expands ``maxLength`` into nested rules, and a long one (a reference
    answer's) made its grammar parser fail and the server crash (seen with llama-cpp-python 0.3.36)."""
    if schema is None:
        return {}
    js = strict_schema(schema)
    if mode != "json_schema" and DIALECTS[mode]["constrains"]:
        js = bounded_schema(schema)
    return _fill(DIALECTS[mode]["body"], {"$schema": js, "$name": schema.__name__})


#: the bound a grammar gets (``bounded_schema``): items per list
GRAMMAR_MAX_ITEMS = 10


@lru_cache(maxsize=256)
def bounded_schema(schema: type[BaseModel]) -> dict[str, Any]:
    import copy

    js = copy.deepcopy(strict_schema(schema))

    def bound(node: dict) -> None:
        if node.get("type") == "array":
            node.setdefault("maxItems", GRAMMAR_MAX_ITEMS)
        lo, hi = node.get("minimum"), node.get("maximum")
        if node.get("type") == "integer" and isinstance(lo, int) and isinstance(hi, int) and hi - lo <= 20:
            node["enum"] = list(range(lo, hi + 1))  # llama-cpp-python's grammar ignores minimum/maximum

    _each_node(js, bound)
    return js


def _fill(node: Any, values: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, str) and node in values:
        return values[node]
    return node


@dataclass(frozen=True)
class Dialect:
    """What was learnt about one endpoint (base URL, model): the structured-output mode it honours,
    whether its chat template keeps a system message, and how many requests it serves at once
    (None: several or unknown). ``seconds_per_token``: one short answer's latency per token, for
    timeouts that fit a slow local server. ``notes``: what the probe saw, in the server's words."""

    mode: str = "json_schema"
    system_role: bool = True
    slots: int | None = None
    seconds_per_token: float | None = None
    notes: tuple[str, ...] = ()

    def fold_system(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The messages as sent: where system messages are dropped (llama.cpp's gemma format, some
        templates), their text leads the first user message instead, so the instructions arrive."""
        if self.system_role or not any(m.get("role") == "system" for m in messages):
            return messages
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        out, folded = [], False
        for m in messages:
            if m.get("role") == "system":
                continue
            if not folded and m.get("role") == "user":
                m = {**m, "content": f"{system}\n\n{m['content']}"}
                folded = True
            out.append(m)
        return out if folded else [{"role": "user", "content": system}] + out

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "system_role": self.system_role, "slots": self.slots,
                "seconds_per_token": self.seconds_per_token, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Dialect":
        return cls(mode=d.get("mode") or "json_schema", system_role=bool(d.get("system_role", True)),
                   slots=d.get("slots"), seconds_per_token=d.get("seconds_per_token"),
                   notes=tuple(d.get("notes") or ()))


#: OpenAI itself (no base URL): known, so nothing is probed or paid for
OPENAI_DIALECT = Dialect(notes=("OpenAI: not probed",))

#: the probe's answer schema: a value the prompt does not reveal, so only a server that enforces
#: the schema produces it
_PROBE_KEY, _PROBE_VALUE = "zq_probe", "kiwi"
PROBE_MARK = "[prefdissect probe]"


class _ProbeAnswer(BaseModel):
    zq_probe: Literal["kiwi"]


def settle_dialect(settings: "LLMSettings", found: Dialect) -> Dialect:
    """The dialect to use: what was found, with the settings' forced mode and system role on top."""
    d = found
    if settings.response_mode:
        d = replace(d, mode=settings.response_mode)
    if settings.system_role:
        d = replace(d, system_role=settings.system_role == "keep")
    return d


class RateLimiter:
    """Token buckets for requests and tokens per minute (each optional), for one event loop."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.limits = [(r / 60.0, max(1.0, r / 6.0)) if r else None for r in (requests_per_minute, tokens_per_minute)]
        self.level = [lim[1] if lim else 0.0 for lim in self.limits]
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        need = (1.0, float(tokens))
        async with self.lock:
            while True:
                t = time.monotonic()
                wait = 0.0
                for i, lim in enumerate(self.limits):
                    if lim is None:
                        continue
                    rate, cap = lim
                    self.level[i] = min(cap, self.level[i] + (t - self.stamp) * rate)
                    want = min(need[i], cap)
                    if self.level[i] < want:
                        wait = max(wait, (want - self.level[i]) / rate)
                self.stamp = t
                if wait <= 0:
                    for i, lim in enumerate(self.limits):
                        if lim is not None:
                            self.level[i] -= min(need[i], lim[1])
                    return
                await asyncio.sleep(wait)


_JSON_BLOCK = re.compile(r"\{.*\}", re.S)


def parse_json_tolerant(text: str | None) -> Any:
    """JSON from an answer that may wrap it in prose or code fences, with raw control characters
    (newlines, tabs) inside strings as small local models write them."""
    if text is None:
        raise ValueError("empty answer")
    s = text.strip()
    if s.startswith("```"):
        s = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", s)
    try:
        return json.loads(s, strict=False)
    except json.JSONDecodeError:
        m = _JSON_BLOCK.search(s)
        if not m:
            raise
        return json.loads(m.group(0), strict=False)


_PLACEHOLDER = re.compile(r"^\s*(<[^<>\n]{1,60}>|\.\.\.|…|string|text|your answer here)\s*$", re.I)


def placeholder_in(value: Any) -> str | None:
    """A template placeholder left in an answer ("<your answer>", "..."), or None."""
    if isinstance(value, str):
        return value if _PLACEHOLDER.match(value) else None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            hit = placeholder_in(v)
            if hit is not None:
                return hit
    return None


def letter_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    """The top log-probabilities at the first answer position that has "A" or "B" among them
    (a model may open with "[", "**" or a space), else those of the first token; None without any."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    first = None
    for pos in content:
        tops = {t["token"]: t["logprob"] for t in (pos.get("top_logprobs") or [])}
        tops.setdefault(pos["token"], pos["logprob"])
        if first is None:
            first = tops
        if any(t.strip().upper() in ("A", "B") for t in tops):
            return tops
    return first


def tls_context():
    """The process's TLS context for LLM endpoints: the openai client's own default (certificates
    verified, host names checked, ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured), built once per
    value of those variables instead of once per client. Loading the CA bundle costs ~60 ms of CPU,
    and a job builds clients per shard; one context serves any number of connections and threads."""
    return _tls_context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@lru_cache(maxsize=4)
def _tls_context_for(cafile: str | None, capath: str | None):
    import httpx2  # the openai client's HTTP library; it reads the two variables itself

    return httpx2.create_ssl_context(verify=True)


def http_client(timeout_s: float, *, sync: bool = False):
    """The SDK's HTTP client for an LLM endpoint (aiohttp for the async client, its httpx default for the
    sync one, the Batch API's), with the process's verifying TLS context (``tls_context``), and a
    certificate that fails verification ends the request at once: the SDK retries what its transport
    reports as a connect timeout or error (a failed TLS handshake is reported so), up to ``max_retries``
    times with backoff (some 20 s at the default), and no retry can make an untrusted certificate trusted.
    An error of the SDK's own is passed on as it is, without retries."""
    return _http_client_classes()[not sync](timeout=timeout_s, verify=tls_context())


@lru_cache(maxsize=1)
def _http_client_classes():
    import openai

    def certificate_error(e: Exception, request):
        """The SDK's own error for an untrusted certificate behind ``e`` (passed on without retries), or None."""
        if _untrusted_certificate(e) is not None:
            return openai.APIConnectionError(message=f"untrusted certificate: {_short(e)}", request=request)
        return None

    class Client(openai.DefaultHttpxClient):
        def send(self, request, **kwargs):
            try:
                return super().send(request, **kwargs)
            except Exception as e:
                if (err := certificate_error(e, request)) is None:
                    raise
                raise err from e

    class AsyncClient(openai.DefaultAioHttpClient):
        async def send(self, request, **kwargs):
            try:
                return await super().send(request, **kwargs)
            except Exception as e:
                if (err := certificate_error(e, request)) is None:
                    raise
                raise err from e

    return Client, AsyncClient


class LLM:
    """An OpenAI-compatible chat endpoint. Use one per event loop (``async with`` or ``aclose``).

    ``dialect``: what is known about the endpoint (``probe`` finds it); the dialect's mode moves on
    when the server rejects it during a run, and its slots bound the requests in flight."""

    def __init__(self, settings: LLMSettings, dialect: Dialect | None = None):
        import openai  # here, not at the top: half a second that the dashboard's pages need not pay

        self.settings = settings
        # One client per CLIENT_SLOTS requests in flight: the HTTP pool scans all its connections
        # on every request, which costs more CPU than the request itself at 100+ in flight.
        n_clients = max(1, -(-settings.concurrency // CLIENT_SLOTS))
        self.clients = [
            openai.AsyncOpenAI(api_key=settings.api_key or "not-set", base_url=settings.base_url,
                               timeout=settings.timeout_s, max_retries=settings.max_retries,
                               # the SDK's aiohttp transport: half the CPU per request of the default;
                               # the process's one verifying TLS context, not a CA bundle loaded per client
                               http_client=http_client(settings.timeout_s))
            for _ in range(n_clients)
        ]
        self._next_client = 0
        self.dialect = settle_dialect(settings, dialect or Dialect())
        self.semaphore = asyncio.Semaphore(self.in_flight)
        self.limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
        self.timeouts = 0  # requests that timed out (each one shrinks a local server's share)

    @property
    def mode(self) -> str:
        return self.dialect.mode

    @property
    def in_flight(self) -> int:
        """Requests sent at once: the setting, but for a server with known slots one more than it
        serves: the next request waits on the server, so a slot never idles between two answers,
        and no more, or queued requests would wait out their timeouts while the slots compute."""
        n = max(1, self.settings.concurrency)
        return min(n, self.dialect.slots + 1) if self.dialect.slots else n

    def timeout_for(self, prompt_tokens: int, max_tokens: int) -> float:
        """The setting, or longer for a slow server whose pace is known: room for this answer at
        the measured pace (twice over) and, with known slots, for the longest answer ahead of it,
        so a long answer on a 10 token/s server is neither cut off nor sent twice."""
        spt = self.dialect.seconds_per_token
        if not spt:
            return self.settings.timeout_s
        ahead = self.settings.max_tokens if self.dialect.slots else 0
        return max(self.settings.timeout_s, 2.0 * spt * (max_tokens + prompt_tokens / 8 + ahead) + 10.0)

    async def __aenter__(self) -> "LLM":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()

    def messages_for(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The messages as this endpoint gets them (system text folded in where it is dropped)."""
        return self.dialect.fold_system(messages)

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        schema: type[BaseModel] | None = None,
        max_tokens: int | None = None,
        logprobs: int = 0,
        validate: Callable[..., Any] | None = None,
    ) -> Completion:
        """One answer, parsed against ``schema`` when given (else checked by ``validate(text,
        top_logprobs)``, which returns the parsed value or raises ValueError).

        An answer cut off at its token limit (``finish_reason: "length"``) is asked again with twice
        the room, up to the ``max_tokens`` setting; an answer that does not parse, is a refusal or
        leaves a template placeholder is asked again once with the problem; a second failure raises
        LLMError carrying the raw text. A request that timed out carries an estimated usage."""
        import openai

        attempts, usage, latency = 0, [0, 0], 0.0
        ceiling = max(1, self.settings.max_tokens)
        limit = min(max_tokens or ceiling, ceiling)
        sent = self.messages_for(messages)
        msgs = list(sent)
        last_raw: str | None = None
        reasked = False
        while True:
            attempts += 1
            try:
                resp, mode, dt = await self._send(msgs, schema, limit, logprobs)
            except openai.APIError as e:
                kind = _kind(e)
                estimated = kind in ("timeout", "connection")  # not "certificate": nothing was sent
                if estimated:  # the server never said: what was sent, and the answer's room
                    usage[0] += messages_tokens(msgs)
                    usage[1] += limit
                    latency += self.timeout_for(messages_tokens(msgs), limit)
                    if kind == "timeout":
                        self.timeouts += 1
                raise LLMError(_describe(e), raw=last_raw, usage=tuple(usage), attempts=attempts,
                               latency_s=latency, kind=kind, estimated=estimated) from e
            latency += dt
            tokens = resp.get("usage") or {}
            usage[0] += tokens.get("prompt_tokens") or 0
            usage[1] += tokens.get("completion_tokens") or 0
            choice = resp["choices"][0] if resp["choices"] else None
            msg = choice.get("message") if isinstance(choice, dict) else None
            last_raw = msg.get("content") if isinstance(msg, dict) else None
            finish = choice.get("finish_reason") if isinstance(choice, dict) else None
            top = letter_logprobs(choice) if logprobs and isinstance(choice, dict) else None
            problem, kind = None, "schema"
            parsed: Any = None
            if not isinstance(msg, dict):
                problem = "the answer had no message"
            elif msg.get("refusal"):
                problem, kind = f"the model refused: {msg['refusal']}", "refused"
            elif schema is not None:
                try:
                    parsed = schema.model_validate(parse_json_tolerant(last_raw))
                    hole = placeholder_in(parsed.model_dump())
                    if hole is not None:
                        problem, kind = f"the answer leaves a template placeholder ({hole[:40]!r})", "placeholder"
                except (ValueError, ValidationError) as e:
                    problem = f"the answer does not match the schema: {_short(e)}"
            elif validate is not None:
                try:
                    parsed = validate(last_raw, top)
                except ValueError as e:
                    problem = f"unusable answer: {_short(e)}"
            else:
                parsed = last_raw
            if problem is None:
                return Completion(
                    content=last_raw, parsed=parsed, prompt_tokens=usage[0], completion_tokens=usage[1],
                    cost=self.settings.cost(*usage), latency_s=latency, attempts=attempts, mode=mode,
                    top_logprobs=top, finish_reason=finish,
                )
            if finish == "length":
                if limit < ceiling and attempts < 6:  # cut off: the same question with more room
                    limit = min(ceiling, limit * 2 if limit >= 8 else 8)
                    msgs = list(sent)
                    continue
                raise LLMError(f"the answer was cut off at {limit} tokens (finish_reason \"length\"): {problem}; "
                               f"raise --max-tokens / PREFDISSECT_LLM_MAX_TOKENS (now {ceiling})", raw=last_raw,
                               usage=tuple(usage), attempts=attempts, latency_s=latency, kind="cut off")
            if reasked:
                raise LLMError(problem, raw=last_raw, usage=tuple(usage), attempts=attempts, latency_s=latency,
                               kind=kind)
            reasked = True
            msgs = list(sent) + [
                {"role": "assistant", "content": last_raw or ""},
                {"role": "user", "content": f"That answer could not be used ({problem}). "
                 "Reply again with only a JSON object that follows the requested format." if schema else
                 f"That answer could not be used ({problem}). Please answer the question."},
            ]

    async def _send(self, messages, schema, max_tokens, logprobs):
        import openai

        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": messages,
            "temperature": s.temperature,
            "max_tokens": max_tokens or s.max_tokens,
        }
        if logprobs:
            kwargs.update(logprobs=True, top_logprobs=logprobs)
        prompt_tokens = messages_tokens(messages)
        tokens = prompt_tokens + kwargs["max_tokens"]
        timeout = self.timeout_for(prompt_tokens, kwargs["max_tokens"])
        options = {"timeout": timeout} if timeout != s.timeout_s else {}
        async with self.semaphore:
            await self.limiter.acquire(tokens)
            unreadable = 0
            while True:
                mode = self.mode if schema is not None else "text"
                extra = dialect_body(mode, schema)
                t0 = time.perf_counter()
                client = self.clients[self._next_client]
                self._next_client = (self._next_client + 1) % len(self.clients)
                try:
                    # the client's documented route for raw requests: the same retries and errors,
                    # without re-walking plain-dict params through its type transforms, and the JSON
                    # as it came (cast_to=object): building the typed ChatCompletion for the three
                    # fields read here was a tenth of the client's CPU per request
                    data = await client.post("/chat/completions", body={**kwargs, **extra}, cast_to=object,
                                             options=options)
                    return _chat_completion(data), mode, time.perf_counter() - t0
                except openai.APIStatusError as e:
                    # a server that rejects this dialect (400, 422, or a 500 that names it): the next one
                    if schema is not None and self.mode != "text" and not s.response_mode and rejects_format(e):
                        self._downgrade(mode, e)
                        continue
                    raise
                except (ValueError, openai.APIResponseValidationError) as e:
                    # a truncated or garbled body: the client does not retry these, so we do
                    unreadable += 1
                    if unreadable > s.max_retries:
                        raise openai.APIError(f"unreadable response body: {_short(e)}", request=None,
                                              body=None) from e
                    await asyncio.sleep(min(8.0, 0.25 * 2 ** (unreadable - 1)) * (0.5 + random.random()))

    def _downgrade(self, mode: str, e: Exception) -> None:
        if self.mode != mode:  # another request moved on already
            return
        order = list(DIALECTS)
        nxt = order[min(len(order) - 1, order.index(mode) + 1)]
        self.dialect = settle_dialect(self.settings, replace(
            self.dialect, mode=nxt, system_role=False, notes=self.dialect.notes + (f"{mode}: {_describe(e)}",)))

    # ---------------------------------------------------------------- probing

    async def probe(self) -> Dialect:
        """Find the endpoint's dialect with a few tiny requests (no retries, so a rejected body is
        never sent twice): the first structured-output mode that it accepts and, for the modes that
        constrain, enforces; whether it serves requests one at a time; its pace per token.

        A forced mode (``response_mode``) is not probed. Errors that no mode can help (a wrong key,
        an unknown model, no server) raise LLMError with the server's words."""
        import openai

        notes: list[str] = []
        mode = self.settings.response_mode
        if mode is None:
            for candidate, spec in DIALECTS.items():
                if candidate == "text":
                    mode = candidate
                    break
                try:
                    data = await self._probe_post(candidate, max_tokens=24)
                except openai.APIStatusError as e:
                    if e.status_code in (401, 403, 404):
                        raise LLMError(_describe(e), kind=_kind(e)) from e
                    notes.append(f"{candidate}: rejected ({_describe(e)})")
                    continue
                except openai.APIError as e:
                    raise LLMError(f"the endpoint could not be probed: {_describe(e)}", kind=_kind(e)) from e
                content = ((data["choices"][0].get("message") or {}).get("content")) if data["choices"] else None
                if not spec["constrains"]:
                    mode = candidate
                    break
                try:
                    ok = str(parse_json_tolerant(content).get(_PROBE_KEY)).strip() == _PROBE_VALUE
                except (ValueError, AttributeError):
                    ok = False
                if ok:
                    mode = candidate
                    break
                notes.append(f"{candidate}: accepted but not enforced (answered {str(content)[:60]!r})")
        notes.append(f"mode {mode}")
        slots, spt = await self._probe_slots(notes)
        return Dialect(mode=mode, system_role=mode == "json_schema", slots=slots, seconds_per_token=spt,
                       notes=tuple(notes))

    async def _probe_post(self, mode: str | None, *, max_tokens: int, variant: int = 0) -> dict[str, Any]:
        """One probe request. A rejection that names the format comes back at once (the body is
        not sent again); what may pass (429, a 5xx or timeout that does not name it, a dropped
        line) is tried up to three times."""
        import openai

        body = {"model": self.settings.model, "temperature": 0, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"{PROBE_MARK} Reply with a JSON object."
                              + (f" Mention the number {variant * 7919 % 1000}." if variant else "")}],
                **(dialect_body(mode, _ProbeAnswer) if mode else {})}
        for attempt in range(3):
            try:
                data = await self.clients[0].post("/chat/completions", body=body, cast_to=object,
                                                  options={"max_retries": 0, "timeout": self.settings.timeout_s})
                return _chat_completion(data)
            except openai.APIStatusError as e:
                transient = e.status_code == 429 or (e.status_code >= 500 and not rejects_format(e))
                if not transient or attempt == 2:
                    raise
            except (openai.APIConnectionError, ValueError) as e:  # timeouts are connection errors
                if attempt == 2:
                    raise openai.APIConnectionError(message=f"probe failed: {_short(e)}", request=None) \
                        if isinstance(e, ValueError) else e
            await asyncio.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _probe_slots(self, notes: list[str]) -> tuple[int | None, float | None]:
        """One short answer alone (to warm up and time it), then three at once, each asking something
        different (a prompt cache cannot answer them for free). A server that works one request at a
        time finishes the three one after another, the last about three times later than the first;
        one with several slots finishes them together. A fast server (under 50 ms) is not tested."""
        import openai

        async def timed(variant: int) -> tuple[float, int]:
            t0 = time.perf_counter()
            data = await self._probe_post(None, max_tokens=SLOT_PROBE_TOKENS, variant=variant)
            return time.perf_counter() - t0, int((data.get("usage") or {}).get("completion_tokens") or 1)

        known = await self._known_slots()
        if known is not None:
            notes.append(known[1])
        try:
            single, n_tok = await timed(1)
            if known is not None or single < 0.05 or self.settings.concurrency <= 1:
                if known is None:
                    notes.append(f"one short answer in {single:.3f} s: not tested for slots")
                return (known[0] if known else None), (single / max(1, n_tok) if single >= 0.05 else None)
            three = sorted(await asyncio.gather(*(timed(2 + i) for i in range(3))))
        except openai.APIError as e:
            notes.append(f"slots not measured: {_describe(e)}")
            return (known[0] if known else None), None
        first, last = three[0][0], three[-1][0]
        serial = (last - first) / last > 0.4
        notes.append(f"three short answers at once took {', '.join(f'{t:.2f}' for t, _ in three)} s: "
                     + ("one request at a time" if serial else "several at a time"))
        return (1 if serial else None), first / max(1, three[0][1])

    async def _known_slots(self) -> tuple[int, str] | None:
        """Slots of a server that says who it is: llama-cpp-python's server (its /models entries are
        ``owned_by: "me"``) computes one request at a time per model; llama.cpp's own server reports
        ``total_slots`` at /props. Timing three answers is the fallback, and on a loaded machine a
        noisy one."""
        try:
            models = await self.clients[0].get("/models", cast_to=object, options={"max_retries": 0, "timeout": 10})
            owners = {m.get("owned_by") for m in (models or {}).get("data") or [] if isinstance(m, dict)}
            if "me" in owners:
                return 1, "llama-cpp-python's server (models owned_by 'me'): one request at a time"
            if "llamacpp" in owners:
                props = await self.clients[0].get("/props", cast_to=object, options={"max_retries": 0, "timeout": 10})
                n = int((props or {}).get("total_slots") or 0)
                if n:
                    return n, f"llama.cpp's server: {n} slots (/props total_slots)"
        except Exception:  # noqa: BLE001 - a server without these routes: time it instead
            return None
        return None


#: answer tokens of each slot probe: enough that computing dominates a request's time
SLOT_PROBE_TOKENS = 24


def rejects_format(e: Exception) -> bool:
    """A 400, 422 or 500 whose words name the structured-output parameter."""
    status = getattr(e, "status_code", None)
    text = f"{e} {_body_text(e)}".lower()
    return status in (400, 422, 500) and any(w in text for w in _FORMAT_WORDS)


def _body_text(e: Exception) -> str:
    """The error body as text: FastAPI's 422 ``{"detail": [...]}`` is not in the client's message."""
    body = getattr(e, "body", None)
    try:
        return json.dumps(body) if body is not None else ""
    except (TypeError, ValueError):
        return str(body)


@lru_cache(maxsize=256)
def strict_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form strict structured outputs accept: every property
    required and no additional properties, at every level."""
    js = schema.model_json_schema()

    def close(node: dict) -> None:
        if node.get("type") == "object" and "properties" in node:
            node["required"] = list(node["properties"])
            node["additionalProperties"] = False

    _each_node(js, close)
    return js


def _each_node(node: Any, visit: Callable[[dict], None]) -> None:
    """``visit`` every object of a JSON schema, at every depth (parents before their children)."""
    if isinstance(node, dict):
        visit(node)
        for v in node.values():
            _each_node(v, visit)
    elif isinstance(node, list):
        for v in node:
            _each_node(v, visit)


def _chat_completion(data: Any) -> dict[str, Any]:
    """A chat completion body as JSON; anything else (a garbled or foreign body) raises ValueError."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError(f"not a chat completion: {str(data)[:200]}")
    return data


def _first_top_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    return letter_logprobs(choice)


def _short(e: Exception, n: int = 300) -> str:
    return " ".join(str(e).split())[:n]


def _untrusted_certificate(e: BaseException):
    """The certificate failure behind a failed request, if that is what it is (the aiohttp
    transport reports a failed TLS handshake as a connect timeout)."""
    import ssl

    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, ssl.SSLCertVerificationError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _kind(e: Exception) -> str:
    import openai

    if _untrusted_certificate(e) is not None:
        return "certificate"
    if isinstance(e, openai.APITimeoutError):
        return "timeout"
    if isinstance(e, openai.APIConnectionError):
        return "connection"
    status = getattr(e, "status_code", None)
    return f"status {status}" if status else "other"


def _describe(e: openai.APIError) -> str:
    """The error in the server's words: the client's message, and the body where the message lacks it."""
    cert = _untrusted_certificate(e)
    if cert is not None:
        return (f"the server's TLS certificate is not trusted ({getattr(cert, 'verify_message', None) or cert}); "
                "if it is yours, point SSL_CERT_FILE at the CA bundle that signed it")
    status = getattr(e, "status_code", None)
    kind = type(e).__name__
    text = str(e)
    body = _body_text(e)
    if body and body not in text and len(text) < 40:
        text = f"{text} {body}"
    return f"{kind}{f' {status}' if status else ''}: {_short(Exception(text))}"
