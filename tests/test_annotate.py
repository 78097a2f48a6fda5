"""Annotation and judge collection end to end: the real openai client against the loopback server."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import annotate, catalogue, jobs, judges
from core.llm import strict_schema
from core.loopback import LoopbackServer
from core.store import Store
from tests.conftest import copy_store, loopback_settings

ROOT = Path(__file__).resolve().parents[1]

FAULTS_30 = {"429": 0.08, "500": 0.06, "timeout": 0.03, "truncated": 0.04, "malformed": 0.04,
             "refusal": 0.03, "disconnect": 0.02}


def sha(messages):
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def settings_for(server, **kw):
    return loopback_settings(server, **{**dict(timeout_s=1.0, max_retries=8, concurrency=8, price_input=2.5,
                                               price_output=10.0), **kw})


def ok_rows(store):
    """Answers paid for: successful requests (an answer reused for another sample is not a request)."""
    return store.scalar("SELECT COUNT(*) FROM annotations WHERE status = 'ok' AND reused = 0")


def test_a_slice_of_real_data_with_30_percent_faults_loses_nothing_and_repeats_nothing(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=12)
    with LoopbackServer(faults=FAULTS_30, timeout_hold=1.5, seed=3) as server:
        s = settings_for(server)
        p1 = annotate.run_annotation(store, samples, s)
        rounds = 1
        while store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                           [annotate.feature_source(s.model, False)]) < len(samples) and rounds < 5:
            annotate.run_annotation(store, samples, s)  # resume: only what has not succeeded
            rounds += 1
        stats = server.stats
    assert sum(stats.faults.values()) > 0.2 * stats.chat_requests  # the faults really happened
    assert p1.requests > 0
    src = annotate.feature_source(s.model, False)
    n_feat = store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?", [src])
    assert n_feat == len(samples), f"features for {n_feat}/{len(samples)} after {rounds} rounds"
    # every success the server served is one stored answer: nothing paid twice, nothing dropped
    assert stats.completions == ok_rows(store)
    # each sample has every feature of the catalogue
    assert store.scalar("SELECT COUNT(*) FROM features WHERE source = ?", [src]) == len(samples) * 29
    # usage and cost are recorded per request
    row = store.rows("SELECT * FROM annotations WHERE status = 'ok' AND step = 'ratings' LIMIT 1")[0]
    assert row["prompt_tokens"] > 0 and row["cost"] > 0 and row["latency_s"] >= 0
    assert "test-key" not in json.dumps(store.rows("SELECT * FROM annotations"))


def test_rerun_sends_nothing_and_estimate_counts_only_what_is_left(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=4)
    with LoopbackServer() as server:
        s = settings_for(server)
        before = annotate.estimate(store, samples, s)
        assert before.requests > 0 and before.cost > 0 and set(before.by_step) >= {"query", "ratings", "errors"}
        annotate.run_annotation(store, samples, s)
        served = server.stats.completions
        p = annotate.run_annotation(store, samples, s)
        assert server.stats.completions == served  # not one request sent again
        assert p.requests == 0 and p.cached > 0
        after = annotate.estimate(store, samples, s)
        assert after.cached >= ok_rows(store) - 8  # stage-2 stand-ins differ from real requests
        assert after.requests < before.requests


def test_budget_stops_cleanly_before_the_projected_spend_passes_it(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=20)
    with LoopbackServer(latency=0.02) as server:
        s = settings_for(server, concurrency=4)
        budget = 0.02
        p = annotate.run_annotation(store, samples, s, budget=budget)
    assert p.stopped and "budget" in p.stopped
    assert p.done < len(samples)
    spent = store.scalar("SELECT SUM(cost) FROM annotations")
    assert 0 < spent <= budget
    assert abs(spent - p.cost) < 1e-9


def test_both_orders_reconcile_and_report_order_consistency(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=6)
    with LoopbackServer() as server:
        s = settings_for(server)
        p = annotate.run_annotation(store, samples, s, both_orders=True)
    assert p.failed == 0
    assert store.scalar("SELECT COUNT(*) FROM annotations WHERE orientation = 'BA' AND step = 'ratings'") == 6
    cons = annotate.order_consistency(store, annotate.feature_source("loopback-1", True))
    assert set(cons) == set(catalogue.attribute_keys())
    assert all(v is None or 0 <= v <= 1 for v in cons.values())
    # the scripted server answers each order independently, so some attributes disagree
    assert any(v is not None and v < 1 for v in cons.values())


def test_structured_outputs_fall_back_for_servers_without_them(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=2)
    with LoopbackServer(response_formats=("text", "json_object")) as server:
        p = annotate.run_annotation(store, samples, settings_for(server))
    assert p.done == 2
    formats = {(b.get("response_format") or {}).get("type") for b in server.requests}
    assert "json_object" in formats


def test_judge_collection_uses_logprobs_in_both_orders(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=10)

    def script(body):  # this judge always prefers the response shown first
        return "A" if body.get("max_tokens") == 1 else None

    # PandaLM repeats some pairs: identical requests are asked once, in each order
    distinct = len({(s["query"], s["response_a"], s["response_b"]) for s in samples})
    assert distinct < 10
    with LoopbackServer(script=script) as server:
        p = judges.collect_labels(store, samples, settings_for(server), judge="loop-judge")
        assert p.done == 10 and server.stats.completions == 2 * distinct
        again = judges.collect_labels(store, samples, settings_for(server), judge="loop-judge")
        assert again.requests == 0 and server.stats.completions == 2 * distinct
    labels = store.labels("pandalm-test", ["loop-judge"])
    assert len(labels) == 10
    for lab in labels:
        assert lab["verdict_ab"] == "A" and lab["verdict_ba"] == "B"  # position bias, mapped back
        assert 0 <= lab["prob_a"] <= 1
    c = judges.position_consistency(store, "loop-judge")
    assert (c.both_orders, c.consistent, c.rate) == (10, 0, 0.0)


def test_first_preferred_reads_logprobs_then_text():
    import math

    assert judges.first_preferred({"top_logprobs": {"A": math.log(0.6), "B": math.log(0.2)}}) == pytest.approx(0.75)
    assert judges.first_preferred({"top_logprobs": {}, "text": "B"}) == 0.0
    assert judges.first_preferred({"text": "neither"}) is None
    assert judges.first_preferred(None) is None


def test_a_body_that_is_not_a_chat_completion_is_unreadable_and_logprobs_are_read_from_json():
    from core import llm

    for body in ({}, {"choices": None}, "<html>busy</html>", None):
        with pytest.raises(ValueError, match="not a chat completion"):
            llm._chat_completion(body)  # retried as an unreadable body, like truncated JSON
    choice = {"logprobs": {"content": [{"token": "A", "logprob": -0.1,
                                        "top_logprobs": [{"token": "B", "logprob": -2.0}]}]}}
    assert llm._first_top_logprobs(choice) == {"B": -2.0, "A": -0.1}
    assert llm._first_top_logprobs({"logprobs": None}) is None


def test_strict_schema_requires_every_property():
    js = strict_schema(annotate.ErrorCheck)
    assert js["required"] == ["checkable", "errors_1", "errors_2"] and js["additionalProperties"] is False
    item = js["$defs"]["ErrorItem"]
    assert item["additionalProperties"] is False and set(item["required"]) == {"type", "severity", "description"}


def test_jobs_are_unique_per_parameters_and_resumable(tmp_path):
    store = Store(tmp_path / "s.db")
    a = jobs.submit(store, "annotate", {"dataset": "d", "llm": {"model": "m"}})
    b = jobs.submit(store, "annotate", {"llm": {"model": "m"}, "dataset": "d"})
    assert a.id == b.id and len(jobs.list_jobs(store)) == 1
    assert jobs.claim(store, a.id)
    assert not jobs.claim(store, a.id)  # a live worker holds it
    jobs.cancel(store, a.id)
    assert jobs.get(store, a.id).status == "cancelled"
    assert jobs.resume(store, a.id).status == "queued"


def _run_cli(args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_and_resume_loses_nothing_and_repeats_no_stored_success(tmp_path, pandalm_file):
    path = copy_store(pandalm_file, tmp_path / "store.db")
    env = {**os.environ, "PREFDISSECT_LLM_API_KEY": "sk-loopback-secret-123"}
    args = ["--store", str(path), "annotate", "--dataset", "pandalm-test", "--limit", "16", "--concurrency", "4",
            "--model", "loopback-1", "--price-input", "1", "--price-output", "2"]
    with LoopbackServer() as server:
        server.hold(after=16)  # sixteen answers, then the run waits on the server: the kill finds it mid-way
        proc = _run_cli(args + ["--base-url", server.url], env)
        deadline = time.time() + 60
        with Store(path) as watch:
            while time.time() < deadline and (ok_rows(watch) < 12 or not server.held):
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            server.release()
            stored_before = {json.loads(r["params"])["messages_sha"] for r in
                             watch.rows("SELECT params FROM annotations WHERE status = 'ok'")}
        assert 12 <= len(stored_before)
        n_seen = len(server.requests)
        proc = _run_cli(args + ["--base-url", server.url], env)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        resent = {sha(b["messages"]) for b in server.requests[n_seen:]}
    assert not (stored_before & resent), "a request that had succeeded and was stored was sent again"
    with Store(path) as store:
        src = annotate.feature_source("loopback-1", False)
        assert store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?", [src]) == 16
        (job,) = jobs.list_jobs(store)
        assert job.status == "done" and job.done == 16
    assert "job 1 done" in out
    assert "sk-loopback-secret-123" not in out + err


def test_annotate_without_an_llm_falls_back_to_heuristics(tmp_path, pandalm_file):
    path = copy_store(pandalm_file, tmp_path / "store.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFDISSECT_LLM", "OPENAI"))}
    proc = _run_cli(["--store", str(path), "annotate", "--dataset", "pandalm-test"], env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "heuristic" in err
    with Store(path) as store:
        n = store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = 'heuristic:v1'")
    assert n == 999


def test_heuristic_and_llm_features_side_by_side_with_agreement(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=5)
    annotate.run_heuristics(store, samples)
    with LoopbackServer() as server:
        annotate.run_annotation(store, samples, settings_for(server))
    agree = annotate.feature_agreement(store, "heuristic:v1", annotate.feature_source("loopback-1", False))
    assert set(agree) == set(catalogue.attribute_keys())
    assert all(a["n"] == 5 for a in agree.values())
    assert agree["lengthy"]["equal"] == 1.0  # both use the word-count rule


def test_rate_limiter_spaces_requests():
    import asyncio

    from core.llm import RateLimiter

    async def go():
        lim = RateLimiter(requests_per_minute=600, tokens_per_minute=None)  # 10/s, bursts of 100
        t = time.monotonic()
        for _ in range(120):
            await lim.acquire(10)
        return time.monotonic() - t

    elapsed = asyncio.run(go())
    assert elapsed >= 1.5  # the burst of 100 is free, the next 20 come at 10 per second


def test_work_split_over_processes_keeps_the_guarantees(pandalm_store):
    store = pandalm_store
    samples = store.samples_for("pandalm-test", limit=40)
    seen = []
    with LoopbackServer(latency=0.01) as server:
        p = annotate.run_annotation(store, samples, settings_for(server, concurrency=16), processes=2,
                                    on_progress=lambda pr: seen.append(pr.done))
        stats = server.stats
    assert p.done == 40 and p.failed == 0 and p.total == 40
    assert seen and seen[-1] == 40
    src = annotate.feature_source("loopback-1", False)
    assert store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?", [src]) == 40
    # samples sharing a query went to the same process: identical requests were still sent once
    assert stats.completions == ok_rows(store)
