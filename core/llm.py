"""The LLM boundary: one object with a fixed contract.

Messages and an optional response schema go in; the parsed result, the raw text, usage, cost and
latency come out. Everything above this module (annotation, judge collection) talks to any
OpenAI-compatible server (OpenAI, vLLM, Ollama, a gateway) through the official ``openai`` client,
whose own retries (exponential backoff with jitter, honouring Retry-After) handle 429, 5xx,
timeouts and dropped connections. Here we add: bounded concurrency, request- and token-per-minute
limits, structured outputs with fallbacks for servers that lack them, one re-ask when an answer does
not parse, and prices.

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
from typing import TYPE_CHECKING, Any, Callable

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
            "batch": self.batch,
        }

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
    """A request that failed for good; ``raw`` holds the last answer text, if any."""

    def __init__(self, message: str, *, raw: str | None = None, usage: tuple[int, int] = (0, 0),
                 attempts: int = 1, latency_s: float = 0.0):
        super().__init__(message)
        self.raw = raw
        self.usage = usage
        self.attempts = attempts
        self.latency_s = latency_s


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
    top_logprobs: dict[str, float] | None = None  # first answer token: token -> log-probability


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
    """JSON from an answer that may wrap it in prose or code fences."""
    if text is None:
        raise ValueError("empty answer")
    s = text.strip()
    if s.startswith("```"):
        s = re.sub(r"^```[a-zA-Z]*\s*|\s*```$", "", s)
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        m = _JSON_BLOCK.search(s)
        if not m:
            raise
        return json.loads(m.group(0))


class LLM:
    """An OpenAI-compatible chat endpoint. Use one per event loop (``async with`` or ``aclose``)."""

    def __init__(self, settings: LLMSettings):
        import openai  # here, not at the top: half a second that the dashboard's pages need not pay

        self.settings = settings
        # One client per CLIENT_SLOTS requests in flight: the HTTP pool scans all its connections
        # on every request, which costs more CPU than the request itself at 100+ in flight.
        n_clients = max(1, -(-settings.concurrency // CLIENT_SLOTS))
        self.clients = [
            openai.AsyncOpenAI(api_key=settings.api_key or "not-set", base_url=settings.base_url,
                               timeout=settings.timeout_s, max_retries=settings.max_retries,
                               # the SDK's aiohttp transport: half the CPU per request of the default
                               http_client=openai.DefaultAioHttpClient(timeout=settings.timeout_s))
            for _ in range(n_clients)
        ]
        self._next_client = 0
        self.semaphore = asyncio.Semaphore(max(1, settings.concurrency))
        self.limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
        self.mode = "json_schema"  # downgraded once when the server rejects structured outputs

    async def __aenter__(self) -> "LLM":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for c in self.clients:
            await c.close()

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        schema: type[BaseModel] | None = None,
        max_tokens: int | None = None,
        logprobs: int = 0,
        validate: Callable[[str | None], Any] | None = None,
    ) -> Completion:
        """One answer, parsed against ``schema`` when given (else checked by ``validate``, which
        returns the parsed value or raises ValueError).

        An answer that does not parse (or is a refusal) is asked for again once with the
        validation error; a second failure raises LLMError carrying the raw text.
        """
        import openai

        attempts, usage, latency = 0, [0, 0], 0.0
        msgs = list(messages)
        last_raw: str | None = None
        while True:
            attempts += 1
            try:
                resp, mode, dt = await self._send(msgs, schema, max_tokens, logprobs)
            except openai.APIError as e:
                raise LLMError(_describe(e), raw=last_raw, usage=tuple(usage), attempts=attempts,
                               latency_s=latency) from e
            latency += dt
            tokens = resp.get("usage") or {}
            usage[0] += tokens.get("prompt_tokens") or 0
            usage[1] += tokens.get("completion_tokens") or 0
            choice = resp["choices"][0] if resp["choices"] else None
            msg = choice.get("message") if isinstance(choice, dict) else None
            last_raw = msg.get("content") if isinstance(msg, dict) else None
            problem = None
            parsed: Any = None
            if not isinstance(msg, dict):
                problem = "the answer had no message"
            elif msg.get("refusal"):
                problem = f"the model refused: {msg['refusal']}"
            elif schema is not None:
                try:
                    parsed = schema.model_validate(parse_json_tolerant(last_raw))
                except (ValueError, ValidationError) as e:
                    problem = f"the answer does not match the schema: {_short(e)}"
            elif validate is not None:
                try:
                    parsed = validate(last_raw)
                except ValueError as e:
                    problem = f"unusable answer: {_short(e)}"
            else:
                parsed = last_raw
            if problem is None:
                return Completion(
                    content=last_raw, parsed=parsed, prompt_tokens=usage[0], completion_tokens=usage[1],
                    cost=self.settings.cost(*usage), latency_s=latency, attempts=attempts, mode=mode,
                    top_logprobs=_first_top_logprobs(choice) if logprobs else None,
                )
            if attempts >= 2:
                raise LLMError(problem, raw=last_raw, usage=tuple(usage), attempts=attempts, latency_s=latency)
            msgs = list(messages) + [
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
        tokens = messages_tokens(messages) + kwargs["max_tokens"]
        async with self.semaphore:
            await self.limiter.acquire(tokens)
            unreadable = 0
            while True:
                mode = self.mode if schema is not None else "text"
                extra = _response_format(schema, mode, messages)
                t0 = time.perf_counter()
                client = self.clients[self._next_client]
                self._next_client = (self._next_client + 1) % len(self.clients)
                try:
                    # the client's documented route for raw requests: the same retries and errors,
                    # without re-walking plain-dict params through its type transforms, and the JSON
                    # as it came (cast_to=object): building the typed ChatCompletion for the three
                    # fields read here was a tenth of the client's CPU per request
                    data = await client.post("/chat/completions", body={**kwargs, **extra}, cast_to=object)
                    return _chat_completion(data), mode, time.perf_counter() - t0
                except openai.BadRequestError as e:
                    # servers without structured outputs: fall back to JSON mode, then to plain text
                    if schema is not None and self.mode != "text" and "response_format" in str(e).lower():
                        self.mode = "json_object" if self.mode == "json_schema" else "text"
                        continue
                    raise
                except (ValueError, openai.APIResponseValidationError) as e:
                    # a truncated or garbled body: the client does not retry these, so we do
                    unreadable += 1
                    if unreadable > s.max_retries:
                        raise openai.APIError(f"unreadable response body: {_short(e)}", request=None,
                                              body=None) from e
                    await asyncio.sleep(min(8.0, 0.25 * 2 ** (unreadable - 1)) * (0.5 + random.random()))


def _response_format(schema: type[BaseModel] | None, mode: str, messages) -> dict[str, Any]:
    if schema is None or mode == "text":
        return {}
    if mode == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema.__name__, "schema": strict_schema(schema), "strict": True},
        }
    }


@lru_cache(maxsize=256)
def strict_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in the form strict structured outputs accept: every property
    required and no additional properties, at every level."""
    js = schema.model_json_schema()

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            for v in node.values():
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(js)
    return js


def _chat_completion(data: Any) -> dict[str, Any]:
    """A chat completion body as JSON; anything else (a garbled or foreign body) raises ValueError."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError(f"not a chat completion: {str(data)[:200]}")
    return data


def _first_top_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    first = content[0]
    out = {t["token"]: t["logprob"] for t in (first.get("top_logprobs") or [])}
    out.setdefault(first["token"], first["logprob"])
    return out


def _short(e: Exception, n: int = 300) -> str:
    return " ".join(str(e).split())[:n]


def _describe(e: openai.APIError) -> str:
    status = getattr(e, "status_code", None)
    kind = type(e).__name__
    return f"{kind}{f' {status}' if status else ''}: {_short(e)}"
