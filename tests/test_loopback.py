"""The loopback OpenAI-compatible server, exercised through the real ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal, Optional, Union
from uuid import UUID

import openai
import pytest
from pydantic import BaseModel, Field, ValidationError

from core.llm import http_client
from core.loopback import FAULTS, LoopbackServer, SchemaError, generate_instance, tokenize
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]


def sync_client(url: str, **kw) -> openai.OpenAI:
    """The real openai client for a loopback server, on the product's sync HTTP client (``core.llm.http_client``),
    which shares the process's TLS context: the SDK's default loads the CA bundle per client, most of a client's
    cost, for servers that speak plain HTTP."""
    return openai.OpenAI(base_url=url, http_client=http_client(kw.get("timeout", openai.DEFAULT_TIMEOUT), sync=True),
                         **kw)


# ---- models the generator must satisfy ----------------------------------------------------


class Verdict(BaseModel):
    winner: Literal["A", "B"]
    confidence: float = Field(ge=0, le=1)
    reasons: list[str] = Field(min_length=1, max_length=3)


class Ratings(BaseModel):
    harmless: int = Field(ge=0, le=3)
    clear: int = Field(ge=0, le=3)
    comment: Optional[str] = None


class QueryAnalysis(BaseModel):
    clear_intent: bool
    constraints: list[str]
    ratings_a: Ratings
    ratings_b: Ratings


class Color(str, Enum):
    red = "red"
    green = "green"


class Leaf(BaseModel):
    kind: Literal["leaf"]
    value: int = Field(ge=-5, le=5)


class Branch(BaseModel):
    kind: Literal["branch"]
    children: list["Node"] = Field(max_length=3)


Node = Annotated[Union[Leaf, Branch], Field(discriminator="kind")]
Branch.model_rebuild()


class Everything(BaseModel):
    name: str = Field(min_length=2, max_length=12)
    ratio: float = Field(gt=0, lt=1)
    even: int = Field(multiple_of=2, ge=0, le=10)
    color: Color
    tags: list[str] = Field(min_length=1, max_length=3)
    pair: tuple[int, str]
    mapping: dict[str, float]
    maybe: Optional[int] = None
    fixed: Literal["x"]
    score: Literal[0, 1, 2, 3]
    when: datetime
    ident: UUID
    tree: Node
    flag: bool
    nothing: None
    nested: Optional[QueryAnalysis] = None


MODELS = [Verdict, Ratings, QueryAnalysis, Leaf, Branch, Everything]


def strict_schema(model: type[BaseModel]) -> dict:
    """What callers send for strict structured outputs (the openai client's own conversion)."""
    from openai.lib._pydantic import to_strict_json_schema

    return to_strict_json_schema(model)


def schema_format(model: type[BaseModel], strict: bool = True) -> dict:
    schema = strict_schema(model) if strict else model.model_json_schema()
    return {"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema, "strict": strict}}


def msgs(text: str) -> list[dict]:
    return [{"role": "system", "content": "You are a careful annotator."}, {"role": "user", "content": text}]


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def server():
    with LoopbackServer(seed=7) as srv:
        yield srv


@pytest.fixture
def make_client(server):
    clients: list[openai.OpenAI] = []

    def make(**kw) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 10.0)
        c = sync_client(server.url, api_key="test-key", **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client):
    return make_client()


def chat(client: openai.OpenAI, text: str = "Which response is better?", **kw):
    return client.chat.completions.create(model="loopback-1", messages=msgs(text), **kw)


# ---- the schema generator on its own --------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "plain"])
def test_generated_instances_validate(model, strict):
    schema = strict_schema(model) if strict else model.model_json_schema()
    jsonschema = pytest.importorskip("jsonschema")
    for seed in range(25):
        value = generate_instance(schema, seed)
        model.model_validate_json(json.dumps(value))
        jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)


def test_generator_is_deterministic_and_varied():
    schema = strict_schema(Everything)
    assert generate_instance(schema, 3) == generate_instance(schema, 3)
    assert len({json.dumps(generate_instance(schema, s)) for s in range(20)}) == 20


@pytest.mark.parametrize(
    "schema",
    [
        False,
        {"type": "integer", "minimum": 5, "maximum": 2},
        {"type": "string", "minLength": 4, "maxLength": 1},
        {"enum": []},
        {"$ref": "#/$defs/missing"},
    ],
)
def test_unsatisfiable_schemas_raise(schema):
    with pytest.raises(SchemaError):
        generate_instance(schema, 0)


def test_tokenize_round_trips():
    for text in ["A", '{"winner": "B", "n": [1, 2]}', "Hello,  world!\n\nBye. ", ""]:
        assert "".join(tokenize(text)) == text
    assert tokenize("A") == ["A"]


# ---- structured outputs through the client --------------------------------------------------


def test_json_schema_answer_validates_and_is_deterministic(client, server):
    fmt = schema_format(QueryAnalysis)
    r1 = chat(client, "Sample 1: compare these answers.", response_format=fmt)
    r2 = chat(client, "Sample 1: compare these answers.", response_format=fmt)
    r3 = chat(client, "Sample 2: something else entirely.", response_format=fmt)
    a1 = QueryAnalysis.model_validate_json(r1.choices[0].message.content)
    assert r1.choices[0].message.content == r2.choices[0].message.content
    assert QueryAnalysis.model_validate_json(r3.choices[0].message.content) != a1
    assert r1.choices[0].finish_reason == "stop"
    assert r1.object == "chat.completion" and r1.model == "loopback-1" and r1.id.startswith("chatcmpl-")
    assert r1.choices[0].message.role == "assistant"
    assert server.stats.completions == 3


def test_same_messages_same_answer_across_servers_with_same_seed():
    with LoopbackServer(seed=1) as a, LoopbackServer(seed=1) as b, LoopbackServer(seed=2) as c:
        answers = []
        for srv in (a, b, c):
            cl = sync_client(srv.url, api_key="k", max_retries=0)
            answers.append(chat(cl, "same", response_format=schema_format(Verdict)).choices[0].message.content)
            cl.close()
    assert answers[0] == answers[1] != answers[2]


def test_non_strict_schema_and_parse_helper(client):
    r = chat(client, "plain schema", response_format=schema_format(Everything, strict=False))
    Everything.model_validate_json(r.choices[0].message.content)
    parsed = client.chat.completions.parse(model="loopback-1", messages=msgs("parse me"), response_format=Verdict)
    assert isinstance(parsed.choices[0].message.parsed, Verdict)


def test_json_object_and_plain_text(client):
    r = chat(client, "json please", response_format={"type": "json_object"})
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    r = chat(client, "talk to me")
    text = r.choices[0].message.content
    assert text and not text.lstrip().startswith("{")
    assert text == chat(client, "talk to me").choices[0].message.content


def test_usage_is_reported(client):
    text = "one two three four five six seven eight nine ten"
    r = chat(client, text)
    words = len(text.split()) + len(msgs("")[0]["content"].split())
    assert r.usage.prompt_tokens == math.ceil(words * 1.3)
    assert r.usage.completion_tokens == len(tokenize(r.choices[0].message.content))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_max_tokens_truncates_with_length_finish(client):
    r = chat(client, "long answer", max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert len(tokenize(r.choices[0].message.content)) == 3


# ---- log-probabilities ----------------------------------------------------------------------


def test_one_token_judge_answer_has_both_letters_in_top_logprobs(client):
    seen = set()
    for i in range(12):
        r = chat(client, f"Sample {i}: is A or B better? Answer with one letter.", max_tokens=1,
                 logprobs=True, top_logprobs=5)
        content = r.choices[0].message.content
        assert content in ("A", "B")
        seen.add(content)
        lp = r.choices[0].logprobs.content
        assert len(lp) == 1 and lp[0].token == content
        tops = lp[0].top_logprobs
        assert len(tops) == 5
        tokens = [t.token for t in tops]
        assert tokens[0] == content and {"A", "B"} <= set(tokens)
        assert tops[0].logprob == pytest.approx(lp[0].logprob)
        assert all(t.bytes == list(t.token.encode()) for t in tops)
        assert sum(math.exp(t.logprob) for t in tops) <= 1.0
        assert all(t.logprob <= 0 for t in tops)
    assert seen == {"A", "B"}  # both verdicts occur across samples


def test_logprobs_cover_every_content_token(client):
    r = chat(client, "explain", logprobs=True, top_logprobs=2, response_format=schema_format(Verdict))
    content = r.choices[0].message.content
    lp = r.choices[0].logprobs.content
    assert "".join(t.token for t in lp) == content
    assert all(len(t.top_logprobs) == 2 for t in lp)
    r = chat(client, "explain", logprobs=True)
    assert all(t.top_logprobs == [] for t in r.choices[0].logprobs.content)
    assert chat(client, "no logprobs").choices[0].logprobs is None


def test_top_logprobs_without_logprobs_is_rejected(client):
    with pytest.raises(openai.BadRequestError):
        chat(client, "x", top_logprobs=3)


# ---- script hook ----------------------------------------------------------------------------


def test_script_forces_answers(server, client):
    calls = []

    def script(body):
        calls.append(body)
        text = body["messages"][-1]["content"]
        if "verdict" in text:
            return "B"
        if "structured" in text:
            return {"winner": "A", "confidence": 0.9, "reasons": ["scripted"]}
        return None

    server.set_script(script)
    r = chat(client, "give a verdict", max_tokens=1, logprobs=True, top_logprobs=2)
    assert r.choices[0].message.content == "B"
    assert [t.token for t in r.choices[0].logprobs.content[0].top_logprobs] == ["B", "A"]
    r = chat(client, "structured please", response_format=schema_format(Verdict))
    assert Verdict.model_validate_json(r.choices[0].message.content).reasons == ["scripted"]
    r = chat(client, "anything else", response_format=schema_format(Verdict))
    Verdict.model_validate_json(r.choices[0].message.content)  # falls back to the generator
    assert len(calls) == 3 and calls[0]["max_tokens"] == 1


def test_failing_script_is_a_500(client, server):
    server.set_script(lambda body: 1 / 0)
    with pytest.raises(openai.InternalServerError, match="ZeroDivisionError"):
        chat(client, "boom")


# ---- faults ---------------------------------------------------------------------------------


def test_429_is_retried_by_the_client_until_success(server, make_client):
    server.set_faults({"429": 0.5})
    client = make_client(max_retries=10)
    for i in range(6):
        r = chat(client, f"rate limited {i}", response_format=schema_format(Verdict))
        Verdict.model_validate_json(r.choices[0].message.content)
    s = server.stats
    assert s.faults["429"] >= 1 and s.by_status[429] == s.faults["429"]
    assert s.completions == 6 and s.chat_requests == 6 + s.faults["429"]


def test_500_is_retried_by_the_client_until_success(make_client):
    # retry_after_500 only shortens the client's own backoff (0.5 s, 1 s, ...) to keep this fast
    with LoopbackServer(seed=7, faults={"500": 0.4}, retry_after_500=0.02) as srv:
        client = sync_client(srv.url, api_key="k", max_retries=10)
        for i in range(6):
            assert chat(client, f"flaky {i}").choices[0].message.content
        client.close()
        s = srv.stats
    assert s.faults["500"] >= 1 and s.by_status[500] == s.faults["500"] and s.completions == 6


def test_500_without_retry_after_uses_client_backoff(server, make_client):
    server.set_faults({"500": 1.0})
    client = make_client(max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(openai.InternalServerError):
        chat(client)
    assert time.perf_counter() - t0 >= 0.3  # the client's first backoff is 0.375-0.5 s
    assert server.stats.faults["500"] == 2


def test_429_without_retries_surfaces_rate_limit_error(server, client):
    server.set_faults({"429": 1.0})
    with pytest.raises(openai.RateLimitError) as info:
        chat(client)
    assert float(info.value.response.headers["retry-after"]) > 0
    assert info.value.body["code"] == "rate_limit_exceeded"


def test_timeout_fault_raises_timeout_error(make_client):
    # the hold is far longer than the client's timeout and than any stall of a loaded machine: the bar below
    # tells "gave up at its own 0.3 s timeout" from "waited for the server" with room to spare
    with LoopbackServer(faults={"timeout": 1.0}, timeout_hold=30.0) as srv:
        client = sync_client(srv.url, api_key="k", max_retries=0, timeout=0.3)
        t0 = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            chat(client)
        assert time.perf_counter() - t0 < 15.0
        assert srv.stats.faults["timeout"] == 1
        client.close()


def test_truncated_body_is_a_parse_error(server, client):
    server.set_faults({"truncated": 1.0})
    with pytest.raises((json.JSONDecodeError, openai.APIError)):
        chat(client, response_format=schema_format(Verdict))
    assert server.stats.faults["truncated"] == 1 and server.stats.by_status[200] == 1


def test_malformed_content_does_not_validate(server, client):
    server.set_faults({"malformed": 1.0})
    for i in range(4):
        r = chat(client, f"malformed {i}", response_format=schema_format(Verdict))
        with pytest.raises(ValidationError):
            Verdict.model_validate_json(r.choices[0].message.content)
    assert server.stats.faults["malformed"] == 4 and server.stats.completions == 0


def test_refusal_sets_message_refusal(server, client):
    server.set_faults({"refusal": 1.0})
    r = chat(client, response_format=schema_format(Verdict))
    assert r.choices[0].message.refusal == "I can't help with that."
    assert r.choices[0].message.content is None
    parsed = client.chat.completions.parse(model="loopback-1", messages=msgs("x"), response_format=Verdict)
    assert parsed.choices[0].message.parsed is None and parsed.choices[0].message.refusal


def test_disconnect_raises_connection_error(server, client):
    server.set_faults({"disconnect": 1.0})
    with pytest.raises(openai.APIConnectionError) as info:
        chat(client)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert server.stats.faults["disconnect"] == 1
    server.set_faults({})
    assert chat(client).choices[0].message.content  # the client recovers on a new connection


def test_fault_draws_are_reproducible():
    def run(seed):
        with LoopbackServer(seed=seed, faults={"429": 0.3, "500": 0.3}) as srv:
            cl = sync_client(srv.url, api_key="k", max_retries=0)
            out = []
            for i in range(12):
                try:
                    chat(cl, f"q{i}")
                    out.append("ok")
                except openai.APIStatusError as e:
                    out.append(e.status_code)
            cl.close()
            return out

    first = run(3)
    assert first == run(3)
    assert {"ok", 429, 500} <= set(first)


@pytest.mark.parametrize("faults", [{"nope": 0.1}, {"429": 0.7, "500": 0.5}, {"500": -0.1}, {"500": 1.5}])
def test_bad_fault_settings_are_rejected(faults):
    with pytest.raises(ValueError):
        LoopbackServer(faults=faults)


def test_all_fault_names_are_accepted():
    """Regression: this test once only checked that the constructor did not raise; every name must be kept
    at its rate and drawn."""
    rates = {name: 1 / len(FAULTS) for name in FAULTS}
    srv = LoopbackServer(faults=rates, seed=0)
    assert srv.faults == pytest.approx(rates)
    assert {srv._draw_fault() for _ in range(500)} == set(FAULTS)


# ---- protocol details -----------------------------------------------------------------------


def test_stream_and_unsupported_formats_are_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, stream=True)
    assert info.value.body["param"] == "stream"
    with LoopbackServer(response_formats=("text", "json_object")) as srv:
        cl = sync_client(srv.url, api_key="k", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="response_format"):
            chat(cl, response_format=schema_format(Verdict))
        cl.close()


def test_models_health_and_unknown_path(server, client):
    assert [m.id for m in client.models.list()] == ["loopback-1"]
    with urllib.request.urlopen(server.base_url + "/health") as resp:
        assert json.load(resp) == {"status": "ok"}
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="x", input="y")


def test_api_key_is_checked_when_set():
    with LoopbackServer(api_key="secret") as srv:
        bad = sync_client(srv.url, api_key="wrong", max_retries=0)
        good = sync_client(srv.url, api_key="secret", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            chat(bad)
        assert chat(good).choices
        bad.close()
        good.close()


def test_keep_alive_reuses_one_connection(server, client):
    for i in range(5):
        chat(client, f"keep alive {i}")
    assert server.stats.connections == 1


def test_stats_requests_and_reset(server, client):
    chat(client, "first")
    chat(client, "second")
    assert [b["messages"][-1]["content"] for b in server.requests] == ["first", "second"]
    s = server.stats
    assert s.requests == s.chat_requests == s.completions == 2 and s.by_status == {200: 2}
    assert s.as_dict()["faults"] == {name: 0 for name in FAULTS}
    server.reset_stats()
    assert server.stats.requests == 0 and server.requests == []


def test_request_recording_is_bounded():
    with LoopbackServer(record=2) as srv:
        cl = sync_client(srv.url, api_key="k", max_retries=0)
        for i in range(4):
            chat(cl, f"r{i}")
        cl.close()
        assert [b["messages"][-1]["content"] for b in srv.requests] == ["r2", "r3"]


def test_latency_setter_and_restart():
    srv = LoopbackServer(latency=0.0)
    srv.start()
    try:
        cl = sync_client(srv.url, api_key="k", max_retries=0)
        srv.set_latency(0.3)
        t0 = time.perf_counter()
        chat(cl)
        assert time.perf_counter() - t0 >= 0.3
        srv.stop()
        assert not srv.running
        with pytest.raises(openai.APIConnectionError):
            chat(cl)
        srv.set_latency(0)
        srv.start()  # same port again
        assert chat(cl).choices
        cl.close()
    finally:
        srv.stop()
    with pytest.raises(ValueError):
        srv.set_latency(-1)


# ---- concurrency ----------------------------------------------------------------------------


def test_hold_stalls_requests_past_an_allowance_until_release(server, make_client):
    """``hold(after)``: that many more requests are answered, the others wait (``held``) until another
    hold's allowance or ``release()``; probes are answered while holding."""
    from core.llm import PROBE_MARK

    client = make_client(timeout=30)
    server.hold(after=2)
    with ThreadPoolExecutor(5) as pool:
        pending = [pool.submit(chat, client, f"held {i}") for i in range(5)]
        wait_until(lambda: server.held == 3 and sum(f.done() for f in pending) == 2, "3 held, 2 answered", 30)
        assert chat(client, f"{PROBE_MARK} Reply with a JSON object.").choices[0].message.content
        assert server.stats.completions == 2 and server.held == 3
        server.hold(after=1)  # one more through, the other two still wait
        wait_until(lambda: sum(f.done() for f in pending) == 3, "a third answered", 30)
        assert server.held == 2 and server.stats.completions == 3
        server.release()
        assert all(f.result(timeout=30).choices[0].message.content for f in pending)
    assert server.held == 0 and server.stats.completions == 5


def test_64_concurrent_requests_overlap(server, make_client):
    """64 requests from 64 threads are all open at the server at once: held there until every one has
    arrived (a client that sent them one after another never gets there; no clock to tune), then answered
    together, many in flight at a time."""
    server.set_latency(0.2)
    client = make_client(timeout=30)
    server.hold()
    with ThreadPoolExecutor(64) as pool:
        pending = [pool.submit(chat, client, f"parallel {i}") for i in range(64)]
        wait_until(lambda: server.held == 64, "64 requests held at once", 30)
        server.release()
        results = [f.result(timeout=30) for f in pending]
    assert len(results) == 64 and server.stats.completions == 64
    assert server.stats.max_in_flight >= 16


@pytest.mark.slow
def test_throughput_128_in_flight(capsys):
    """Prints throughput at 128 in flight with 250 ms latency (measured, not asserted: the
    machine is shared; see the module's benchmark notes)."""
    latency, in_flight, duration = 0.25, 128, 2.5

    async def drive(url: str) -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0, timeout=30)
        done = 0

        async def worker(w: int, stop: float, count: bool) -> None:
            nonlocal done
            k = 0
            while time.perf_counter() < stop:
                k += 1
                await client.chat.completions.create(
                    model="loopback-1", messages=[{"role": "user", "content": f"bench {w} {k} {count}"}])
                done += count

        await asyncio.gather(*(worker(w, time.perf_counter() + 0.5, False) for w in range(in_flight)))  # warm
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w, t0 + duration, True) for w in range(in_flight)))
        rate = done / (time.perf_counter() - t0)
        await client.close()
        return rate

    with LoopbackServer(latency=latency) as srv:
        rate = asyncio.run(drive(srv.url))
        assert srv.stats.max_in_flight >= in_flight // 2
    ideal = in_flight / latency
    with capsys.disabled():
        print(f"\n[loopback] AsyncOpenAI, {in_flight} in flight, {latency * 1000:.0f} ms latency: "
              f"{rate:.0f} req/s = {100 * rate / ideal:.0f}% of ideal {ideal:.0f} req/s")
    assert rate > 0


@pytest.mark.slow
def test_server_capacity_128_in_flight(capsys):
    """The server's own capacity, driven by a lean HTTP/1.1 keep-alive client (the openai client
    costs ~2-3 ms of CPU per request and cannot load it fully from one process). Printed, not
    asserted."""
    latency, in_flight, duration = 0.25, 128, 2.5

    async def drive(port: int) -> float:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(in_flight)]
        done = 0

        async def worker(w: int, stop: float, count: bool) -> None:
            nonlocal done
            reader, writer = conns[w]
            k = 0
            while time.perf_counter() < stop:
                k += 1
                body = json.dumps({"model": "m", "messages": [{"role": "user", "content": f"{w} {k} {count}"}]})
                writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: loopback\r\n"
                             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body.encode()))
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                json.loads(await reader.readexactly(length))
                done += count

        await asyncio.gather(*(worker(w, time.perf_counter() + 0.3, False) for w in range(in_flight)))
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w, t0 + duration, True) for w in range(in_flight)))
        rate = done / (time.perf_counter() - t0)
        for _, writer in conns:
            writer.close()
        return rate

    with LoopbackServer(latency=latency) as srv:
        rate = asyncio.run(drive(srv.port))
        assert srv.stats.connections == in_flight  # keep-alive: one connection per worker
    ideal = in_flight / latency
    with capsys.disabled():
        print(f"\n[loopback] raw keep-alive client, {in_flight} in flight, {latency * 1000:.0f} ms latency: "
              f"{rate:.0f} req/s = {100 * rate / ideal:.0f}% of ideal {ideal:.0f} req/s")
    assert rate > 0


# ---- command line ---------------------------------------------------------------------------


def test_cli_serves_until_interrupted():
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.loopback", "--port", "0", "--latency", "0", "--fault", "429=0.5",
         "--seed", "3"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        cl = sync_client(url, api_key="k", max_retries=10)
        assert chat(cl).choices[0].message.content
        cl.close()
    finally:
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "served" in err


@pytest.mark.parametrize(
    "argv", [["--fault", "nope=0.1"], ["--fault", "429"], ["--fault", "429=0.8", "--fault", "500=0.8"]]
)
def test_cli_rejects_bad_faults(argv, capsys):
    from core.loopback import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
