"""The LLM boundary against servers that are not OpenAI: dialects probed once and stored, answers
judged for what they are, local-server etiquette and honest endings. Every path runs against the
loopback server taught that server's habit (core/loopback.py), with the real openai client."""

import json
import re
import threading
import time

import pytest

from core import annotate, jobs, judges, llm, paidwork, prompts
from core.llm import Dialect, LLMSettings
from core.loopback import LoopbackServer
from core.store import Store
from tests.conftest import loopback_settings

#: llama-cpp-python 0.3's server as seen in issue 14: 500 on json_schema, a grammar from
#: json_object+schema, the gemma chat format dropping system messages, one request at a time,
#: raw newlines inside JSON strings
LLAMA_CPP = dict(response_formats=("text", "json_object"), reject_status=500, grammar=True, drop_system=True,
                 slots=1, raw_newlines=True, owned_by="me")


@pytest.fixture
def pandalm(pandalm_store):
    return pandalm_store


def settings_for(server, **kw):
    return loopback_settings(server, **{"concurrency": 4, **kw})


def features_of(store, model="loopback-1", both=False):
    return store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                        [annotate.feature_source(model, both)])


def sent_formats(server):
    out = []
    for b in server.requests:
        rf = b.get("response_format") or {}
        out.append("guided_json" if "guided_json" in b else "ollama_format" if "format" in b else
                   "json_object_schema" if rf.get("type") == "json_object" and "schema" in rf else
                   rf.get("type") or "text")
    return out


@pytest.mark.parametrize("server_kw, mode, system_role", [
    ({}, "json_schema", True),
    (dict(response_formats=("text", "json_object"), reject_status=500, grammar=True), "json_object_schema", False),
    (dict(response_formats=("text", "json_object"), reject_status=422, grammar=True), "json_object_schema", False),
    (dict(response_formats=("text", "json_object"), reject_status=400), "json_object", False),
    (dict(response_formats=("text",), reject_status=422), "text", False),
])
def test_the_probe_finds_the_dialect_once_and_never_resends_a_rejected_body(store, server_kw, mode, system_role):
    with LoopbackServer(**server_kw) as server:
        s = settings_for(server)
        d = paidwork.endpoint_dialect(store, s)
        assert (d.mode, d.system_role) == (mode, system_role)
        formats = sent_formats(server)
        # each mode tried at most once (a 500 that names the format is not retried), none after the found one
        tried = [f for f in formats if f != "text"]
        assert len(tried) == len(set(tried))
        order = list(llm.DIALECTS)
        assert all(order.index(f) <= order.index(mode) for f in tried)
        n = len(server.requests)
        assert paidwork.endpoint_dialect(store, s) == d  # stored: not probed again
        assert len(server.requests) == n
    assert store.llm_dialect(server.url, "loopback-1")["mode"] == mode


def test_a_server_that_says_it_is_llama_cpp_python_is_served_one_request_at_a_time(store):
    with LoopbackServer(**{**LLAMA_CPP, "slots": None}) as server:  # too fast to time
        d = paidwork.endpoint_dialect(store, settings_for(server))
    assert d.slots == 1 and any("owned_by 'me'" in n for n in d.notes)


def test_a_rejection_in_the_middle_of_a_run_moves_to_the_next_mode_and_is_remembered(pandalm):
    store = pandalm
    samples = pandalm.samples_for("pandalm-test", limit=2)
    with LoopbackServer(response_formats=("text", "json_object"), reject_status=422, grammar=True) as server:
        s = settings_for(server, concurrency=2)
        store.save_llm_dialect(s.base_url, s.model, Dialect().as_dict())  # an old probe: json_schema
        p = annotate.run_annotation(store, samples, s)
        formats = sent_formats(server)
    assert p.failed == 0 and features_of(store) == 2
    assert 1 <= formats.count("json_schema") <= 2  # each body in flight rejected once, none sent again
    assert store.llm_dialect(s.base_url, s.model)["mode"] == "json_object_schema"


def test_a_forced_mode_is_used_without_probing_it(store):
    with LoopbackServer() as server:
        s = settings_for(server, response_mode="json_object")
        d = paidwork.endpoint_dialect(store, s)
        assert d.mode == "json_object" and "json_schema" not in sent_formats(server)
    with pytest.raises(ValueError, match="PREFDISSECT_LLM_RESPONSE_MODE='grammar' is not a response mode"):
        LLMSettings(response_mode="grammar", base_url="http://127.0.0.1:9/v1").check()


def test_the_request_key_holds_the_mode_and_the_folded_system_message(pandalm):
    sample = pandalm.samples_for("pandalm-test", limit=1)[0]
    s = LLMSettings(model="m", base_url="http://127.0.0.1:1/v1")
    keys = {m: annotate.query_request(sample).finalize(s, "v", Dialect(mode=m, system_role=m == "json_schema")).key
            for m in ("json_schema", "json_object_schema", "json_object", "text")}
    assert len(set(keys.values())) == 4
    # OpenAI's dialect keeps the keys requests had before dialects existed (their stored answers stay valid)
    body = annotate.query_request(sample).finalize(s, "v").key
    assert keys["json_schema"] == body
    # a schema-less request (a judge's) does not depend on the structured-output mode
    j = [judges.judge_request(sample, "AB").finalize(s, "v", Dialect(mode=m)).key for m in ("json_schema", "text")]
    assert j[0] == j[1]


def test_a_llama_cpp_like_server_annotates_both_orders_one_request_at_a_time(pandalm):
    store = pandalm
    samples = pandalm.samples_for("pandalm-test", limit=3)
    system = json.loads((prompts.PROMPTS_FILE).read_text())["system"]
    seen_system = []

    def script(body):  # the instructions must reach the model although system messages are dropped
        seen_system.append(system in body["messages"][0]["content"])
        return None

    with LoopbackServer(latency=0.15, script=script, **LLAMA_CPP) as server:
        s = settings_for(server, concurrency=8)
        d = paidwork.endpoint_dialect(store, s)
        assert (d.mode, d.system_role, d.slots) == ("json_object_schema", False, 1), d.notes
        server.reset_stats()
        seen_system.clear()
        t0 = time.perf_counter()
        p = annotate.run_annotation(store, samples, s, both_orders=True)
        wall = time.perf_counter() - t0
        stats = server.stats
    assert p.done == 3 and p.failed == 0 and p.request_failures == 0
    assert features_of(store, both=True) == 3
    assert seen_system and all(seen_system)
    assert stats.max_in_flight == 2 and stats.probes == 0  # one answering, one waiting; not probed again
    assert stats.busy_s / stats.busy_span_s > 0.95  # the slot kept fed: no gap between answers
    assert stats.busy_s / wall > 0.5  # (the rest: starting and ending the run, on a loaded machine)
    assert set(sent_formats(server)) == {"json_object_schema"}
    raws = [r["raw"] or "" for r in store.rows("SELECT raw FROM annotations WHERE status = 'ok'")]
    assert any("\n" in r for r in raws)  # raw newlines inside strings were read, not rejected
    modes = {json.loads(r["params"]).get("mode") for r in store.rows("SELECT params FROM annotations")}
    assert modes == {"json_object_schema"}


def test_a_cut_off_answer_is_asked_again_with_more_room_within_max_tokens(pandalm):
    store = pandalm
    samples = pandalm.samples_for("pandalm-test", limit=1)
    long_query = {"clear_intent": True, "expresses_feelings": False, "constraints": ["be brief"] * 150,
                  "stances": [], "mistakes": []}

    def script(body):
        if "Analyse the user query" in body["messages"][-1]["content"]:
            return long_query  # ~600 tokens: more than the step's 500
        return None

    with LoopbackServer(script=script) as server:
        p = annotate.run_annotation(store, samples, settings_for(server))
        limits = [b["max_tokens"] for b in server.requests if "Analyse the user query" in b["messages"][-1]["content"]]
    assert p.failed == 0 and limits == [500, 1000]
    # with the ceiling at the step's own room, the cut-off is reported as such, and the sample fails
    with Store(store.path) as fresh, LoopbackServer(script=script, seed=5) as server:
        fresh.conn.execute("DELETE FROM annotations")
        fresh.conn.execute("DELETE FROM features")
        fresh.conn.commit()
        p = annotate.run_annotation(fresh, samples, settings_for(server, max_tokens=500))
        err = fresh.scalar("SELECT error FROM annotations WHERE step = 'query'")
        assert all(b["max_tokens"] <= 500 for b in server.requests)  # the setting caps every step
    assert p.failed == 1 and "cut off at 500 tokens" in err and "--max-tokens" in err


def test_a_placeholder_answer_fails_its_sample_and_writes_nothing(pandalm):
    store = pandalm
    sample = next(s for s in pandalm.samples_for("pandalm-test", limit=20) if not s["scenario_group"])

    def script(body):  # the re-ask gets the same answer
        if "Analyse the user query" in json.dumps(body["messages"]):
            return {"clear_intent": True, "expresses_feelings": False, "constraints": ["<constraint>"],
                    "stances": [], "mistakes": []}
        return None

    with LoopbackServer(script=script) as server:
        p = annotate.run_annotation(store, [sample], settings_for(server))
    assert p.failed == 1
    row = store.rows("SELECT scenario_group, cases FROM samples WHERE id = ?", [sample["id"]])[0]
    assert row["scenario_group"] is None and row["cases"] in (None, "{}")  # nothing from a failed sample
    assert features_of(store) == 0
    err = store.scalar("SELECT error FROM annotations WHERE step = 'query'")
    assert "placeholder ('<constraint>')" in err
    assert store.scalar("SELECT COUNT(*) FROM annotations WHERE step = 'query' AND status = 'ok'") == 0


def test_lenient_json_and_folded_system_messages():
    assert llm.parse_json_tolerant('{"a": "two\nlines\tand a tab"}') == {"a": "two\nlines\tand a tab"}
    assert llm.placeholder_in({"x": ["fine", "<one of the group names above>"]}) == "<one of the group names above>"
    assert llm.placeholder_in({"answer": "Paris is the capital <of France>."}) is None
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert Dialect(system_role=False).fold_system(msgs) == [{"role": "user", "content": "S\n\nU"}]
    assert Dialect(system_role=True).fold_system(msgs) == msgs


@pytest.mark.parametrize("server_kw, script, one_token_only", [
    (dict(judge_preamble=True), None, True),  # "Which" sampled, A/B among the top log-probabilities
    ({}, lambda body: "Which response is better? B" if body.get("max_tokens", 9) <= 8 else None, False),
])
def test_judge_labels_from_log_probabilities_whatever_token_was_sampled(pandalm, server_kw, script, one_token_only):
    store = pandalm
    samples = pandalm.samples_for("pandalm-test", limit=4)
    with LoopbackServer(script=script, **server_kw) as server:
        p = judges.collect_labels(store, samples, settings_for(server), judge="j")
        limits = {b["max_tokens"] for b in server.requests if "Which response answers" in b["messages"][-1]["content"]}
    assert p.failed == 0
    labels = store.labels("pandalm-test", ["j"])
    assert len(labels) == 4 and all(0 <= lab["prob_a"] <= 1 for lab in labels)
    assert all(lab["verdict_ab"] and lab["verdict_ba"] for lab in labels)
    assert limits == ({1} if one_token_only else {1, 8})  # a few tokens more only where one was not enough


def _run_job_in_thread(path, job_id):
    out = {}

    def go():
        with Store(path) as s:
            assert jobs.claim(s, job_id)
            try:
                out["job"] = jobs.run(s, job_id)
            except Exception as e:  # noqa: BLE001 - the test reads it
                out["error"] = e

    t = threading.Thread(target=go)
    t.start()
    return t, out


def test_cancel_stops_requests_in_flight_within_seconds(pandalm):
    store = pandalm
    with LoopbackServer(latency=20.0, slots=1) as server:
        s = settings_for(server, timeout_s=60.0)
        store.save_llm_dialect(s.base_url, s.model, Dialect(slots=1).as_dict())  # known: no probe
        job = jobs.submit(store, "annotate", {"dataset": "pandalm-test", "limit": 3, "llm": s.public()})
        # the key stays in the environment, as for a worker
        import os
        os.environ["PREFDISSECT_LLM_API_KEY"] = "test-key"
        try:
            t, out = _run_job_in_thread(store.path, job.id)
            deadline = time.time() + 10
            while server.stats.in_flight == 0 and time.time() < deadline:
                time.sleep(0.05)
            assert server.stats.in_flight >= 1
            t0 = time.perf_counter()
            jobs.cancel(store, job.id)
            t.join(15)
            took = time.perf_counter() - t0
        finally:
            del os.environ["PREFDISSECT_LLM_API_KEY"]
    assert not t.is_alive() and took < 5, f"cancel took {took:.1f} s"
    assert out["job"].status == "cancelled"
    assert store.scalar("SELECT COUNT(*) FROM annotations WHERE status = 'ok'") == 0


def test_a_job_whose_requests_all_fail_one_way_stops_early_and_says_why(pandalm, monkeypatch):
    store = pandalm
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "test-key")
    with LoopbackServer(script=lambda body: "I am a base model and I do not write JSON.") as server:
        s = settings_for(server)
        store.save_llm_dialect(s.base_url, s.model, Dialect().as_dict())
        job = jobs.submit(store, "annotate", {"dataset": "pandalm-test", "limit": 12, "llm": s.public()})
        t, out = _run_job_in_thread(store.path, job.id)
        t.join(60)
        sent = server.stats.chat_requests
    final = out["job"]
    assert final.status == "failed"
    assert final.message.startswith("stopped early: every request failed the same way")
    assert "does not match the schema" in final.message and "PREFDISSECT_LLM_RESPONSE_MODE" in final.message
    assert "resume to retry" not in final.message
    # stopped after 8 failed requests and those already in flight: 12 samples x 6 steps x 2 asks would be 144
    assert sent < 60


def test_timed_out_requests_carry_estimated_spend_and_the_run_says_so(pandalm, monkeypatch):
    store = pandalm
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "test-key")
    # the job's own timeout and retries, from its parameters: the worker's environment says nothing of them
    # (its defaults waited out seven 3 s holds per request with backoff between them, ~40 s, instead of one
    # 0.3 s timeout each)
    monkeypatch.delenv("PREFDISSECT_LLM_TIMEOUT", raising=False)
    monkeypatch.delenv("PREFDISSECT_LLM_MAX_RETRIES", raising=False)
    with LoopbackServer(faults={"timeout": 1.0}, timeout_hold=3.0) as server:
        s = settings_for(server, timeout_s=0.3, max_retries=0, price_input=1.0, price_output=2.0)
        store.save_llm_dialect(s.base_url, s.model, Dialect().as_dict())
        job = jobs.submit(store, "annotate", {"dataset": "pandalm-test", "limit": 1, "llm": s.public()})
        assert job.params["llm"]["timeout_s"] == 0.3 and job.params["llm"]["max_retries"] == 0
        t, out = _run_job_in_thread(store.path, job.id)
        t.join(60)
        sent = server.stats.chat_requests
    final = out["job"]
    rows = store.rows("SELECT prompt_tokens, completion_tokens, cost, usage_estimated FROM annotations")
    assert rows and all(r["usage_estimated"] == 1 and r["prompt_tokens"] > 0 and r["cost"] > 0 for r in rows)
    assert final.status == "done" and final.cost > 0  # timeouts may pass: a resume is offered
    assert "resume to retry" in final.message and "spend estimated" in final.message
    assert sent == len(rows)  # each sent once, as the job's max_retries 0 says, and given up after its 0.3 s
    # what failed, why and where (issue 17: the log and the message say it)
    (sample_id,) = {r["sample_id"] for r in store.job_failures(job.id, 100)}
    assert final.message.startswith("finished: 0 of 1 samples annotated in ")
    assert re.search(rf"1 sample failed: [^;]*time[^;]* on sample {re.escape(str(sample_id))}", final.message, re.I), \
        final.message
    assert "spent $" in final.message


def test_a_judge_job_says_how_many_labels_it_stored_and_their_consistency(pandalm, monkeypatch):
    store = pandalm
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "test-key")
    with LoopbackServer(script=lambda body: "A" if body.get("max_tokens") == 1 else None) as server:
        s = settings_for(server)
        job = jobs.submit(store, "judge", {"dataset": "pandalm-test", "limit": 5, "judge": "first-lover",
                                           "both_orders": True, "llm": s.public()})
        t, out = _run_job_in_thread(store.path, job.id)
        t.join(60)
    assert out["job"].status == "done"
    assert "5 labels stored (5 with both orders, position consistency 0.0%)" in out["job"].message


def test_the_cli_probes_an_endpoint_and_says_a_wrong_key_in_one_line(pandalm, monkeypatch, capsys):
    from core import cli

    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "wrong-key")
    with LoopbackServer(api_key="right-key") as server:
        code = cli.main(["--store", str(pandalm.path), "annotate", "--dataset", "pandalm-test", "--limit", "2",
                         "--base-url", server.url, "--model", "loopback-1", "--timeout", "45", "--max-retries", "1"])
        err = capsys.readouterr().err
        assert code == 2 and "401" in err and "Incorrect API key" in err and "wrong-key" not in err
        (job,) = jobs.list_jobs(pandalm)
        assert job.status == "failed" and "401" in job.error
        assert job.params["llm"]["timeout_s"] == 45 and job.params["llm"]["max_retries"] == 1  # the job's own
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "any")
    with LoopbackServer(**LLAMA_CPP) as server:
        args = ["--store", str(pandalm.path), "probe", "--base-url", server.url, "--model", "loopback-1"]
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "response mode json_object_schema" in out and "folded into the user message" in out
        assert "one request at a time" in out and "json_schema: rejected" in out
        assert cli.main(args + ["--again"]) == 0 and "response mode json_object_schema" in capsys.readouterr().out


def _self_signed(tmp_path):
    """A certificate and key for 127.0.0.1 that no CA signed (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert_pem, key_pem


def test_https_endpoints_keep_verified_tls_with_one_context_per_process(tmp_path, monkeypatch):
    """LLM objects and the Batch API's client share one TLS context (a CA bundle loaded per client cost ~60 ms
    of CPU each), and it still verifies: a server whose certificate nobody trusts never gets the request,
    nor the key, and the error says so (not "timed out") after one handshake (the SDK retried it as a
    connect timeout, with backoff, though no retry can help); trusting its certificate through
    SSL_CERT_FILE (read when set, not cached past it) lets it through."""
    import asyncio
    import http.server
    import ssl

    import openai

    from core import batch

    cert_pem, key_pem = _self_signed(tmp_path)
    seen, handshakes = [], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": "hello"}}],
                               "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def get_request(self):  # accepting is the TLS handshake (the socket is wrapped)
            handshakes.append(1)
            return super().get_request()

    server = Server(("127.0.0.1", 0), Handler)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_pem, key_pem)
    server.socket = server_ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = LLMSettings(model="m", base_url=f"https://127.0.0.1:{server.server_address[1]}/v1",
                           api_key="sk-only-for-trusted", timeout_s=5.0, max_retries=2, response_mode="text")

    async def ask():
        async with llm.LLM(settings) as client:
            return await client.complete([{"role": "user", "content": "hi"}])

    try:
        a, b = llm.LLM(settings), llm.LLM(settings)
        ctx = llm.tls_context()
        for c in (*a.clients, *b.clients):
            assert c._client._transport.ssl_context is ctx
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        with pytest.raises(llm.LLMError) as e:
            asyncio.run(ask())
        # said as what it is (the transport calls it a connect timeout), not retried, nothing charged
        assert e.value.kind == "certificate" and e.value.deterministic and not e.value.estimated, e.value
        assert "certificate is not trusted" in str(e.value) and "SSL_CERT_FILE" in str(e.value)
        assert seen == [] and len(handshakes) == 1
        # the Batch API's (sync) client: the same context, the same single handshake
        with pytest.raises(openai.APIConnectionError) as e:
            batch.client_for(settings).post("/chat/completions", body={}, cast_to=object)
        assert llm._untrusted_certificate(e.value) is not None
        assert seen == [] and len(handshakes) == 2

        monkeypatch.setenv("SSL_CERT_FILE", str(cert_pem))
        assert llm.tls_context() is not ctx and llm.tls_context().verify_mode == ssl.CERT_REQUIRED
        assert asyncio.run(ask()).content == "hello"
        assert batch.client_for(settings).post("/chat/completions", body={}, cast_to=object)["choices"]
        assert seen == ["Bearer sk-only-for-trusted"] * 2
    finally:
        server.shutdown()
        server.server_close()
