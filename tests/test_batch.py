"""Batch mode end to end: the real openai client's files and batches endpoints against the loopback
server, a real SQLite store, the demo's samples (no reference answers, so errors need a second
round after the reference, and conditional ratings one after the query analysis)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import annotate, batch, cli, jobs, judges, paidwork
from core.llm import LLMSettings
from core.loopback import LoopbackServer
from core.store import Store
from tests.conftest import loopback_settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-batch-secret-0123456789"


@pytest.fixture
def demo(unfitted_demo_file, tmp_path):
    path = tmp_path / "store.db"
    shutil.copy(unfitted_demo_file, path)
    s = Store(path)
    yield s
    s.close()


def samples_of(store, n=6):
    rows = store.samples_for(store.datasets()[0]["name"], limit=n)
    for r in rows:  # no reference: the reference step, then errors against it, in a later round
        r["reference"] = None
    return rows


def settings_for(server, **kw):
    return loopback_settings(server, **{**dict(api_key=KEY, price_input=2.0, price_output=8.0, batch=True), **kw})


def features_of(store, settings, samples):
    src = annotate.feature_source(settings.model, False)
    ids = [s["id"] for s in samples]
    return store.scalar(f"SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ? AND sample_id IN "
                        f"({','.join('?' * len(ids))})", [src, *ids])


def test_annotation_in_rounds_resolves_features_and_sends_each_request_once(demo, tmp_path):
    samples = samples_of(demo)
    with LoopbackServer() as server:
        s = settings_for(server)
        out = batch.run_batch(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, poll_s=0.05,
                              directory=tmp_path / "b", limits=batch.Limits(max_requests=7))
        assert out.rounds >= 2  # query / reference first, then conditional ratings and errors
        assert features_of(demo, s, samples) == len(samples)
        # split by the count limit: no file holds more than 7 requests
        rows = demo.llm_batches()
        assert rows and all(r["requests"] <= 7 for r in rows) and len(rows) >= 3
        assert all(r["status"] == "ingested" and r["remote_id"] for r in rows)
        # each request ran exactly once on the server, and every answer is in the request store
        assert server.batch_lines and max(server.batch_lines.values()) == 1
        ok = demo.scalar("SELECT COUNT(*) FROM annotations WHERE status = 'ok' AND reused = 0"
                         " AND json_extract(params, '$.batch')")
        assert ok == len(server.batch_lines)
        # priced at the user's prices, recorded per request
        assert demo.scalar("SELECT MIN(cost) FROM annotations WHERE status = 'ok' AND reused = 0"
                           " AND json_extract(params, '$.batch')") > 0
        # the same command again plans nothing: everything is answered
        again = batch.run_batch(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, poll_s=0.05,
                                directory=tmp_path / "b")
        assert again.rounds == 0 and again.progress.done == len(samples)
        assert max(server.batch_lines.values()) == 1
    # the key is in no batch file and nowhere in the store
    for f in (tmp_path / "b").iterdir():
        assert KEY not in f.read_text()
    assert KEY not in json.dumps(demo.rows("SELECT * FROM llm_batches")) + json.dumps(
        demo.rows("SELECT * FROM annotations"))


def test_failed_expired_and_malformed_lines_are_recorded_and_planned_again(demo, tmp_path):
    samples = samples_of(demo, 5)
    with LoopbackServer(seed=5) as server:
        server.set_batch(line_error=0.2, malformed=0.25, expire_after=12)
        s = settings_for(server)
        first = batch.run_batch(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, poll_s=0.05,
                                directory=tmp_path / "b", max_rounds=1)
        assert first.rounds == 1
        b = demo.llm_batches()[0]
        assert b["remote_status"] == "expired" and b["failed"] > 0 and b["malformed"] > 0
        failed = demo.rows("SELECT error FROM annotations WHERE status = 'failed'")
        kinds = {e["error"].split(":")[0].split(" ")[0] for e in failed}
        assert any("expired" in e["error"] for e in failed)  # expired before it ran
        assert any("malformed" in e["error"] for e in failed)  # a garbled output line
        assert any(e["error"].startswith("batch error") for e in failed), kinds  # an error line
        server.set_batch()  # the runner behaves from now on
        out = batch.run_batch(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, poll_s=0.05,
                              directory=tmp_path / "b")
        assert features_of(demo, s, samples) == len(samples)
        assert out.progress.failed == 0
        # a request that failed was sent again; one that succeeded never was
        ok_keys = {r["request_key"] for r in demo.rows(
            "SELECT request_key FROM annotations WHERE status = 'ok' AND reused = 0 AND json_extract(params, '$.batch')")}
        assert all(server.batch_lines[k] >= 1 for k in ok_keys)
        succeeded_first = {k for k, n in server.batch_lines.items() if n == 1}
        assert succeeded_first and ok_keys >= succeeded_first


def test_a_worker_killed_after_creating_a_batch_resumes_without_submitting_again(demo, tmp_path):
    samples = samples_of(demo, 4)
    with LoopbackServer() as server:
        server.set_batch(processing_s=30)  # stays in progress: the worker dies while it waits
        s = settings_for(server)
        # what a worker records before it uploads: the batch planned, then created on the server;
        # it dies before recording the server's id (the worst moment)
        r = batch.plan_round(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, directory=tmp_path / "b",
                             limits=batch.Limits(), round_=1, job_id=None, max_attempts=3,
                             progress=paidwork.Progress())
        f = r.files[0]
        demo.add_llm_batch({"id": f["id"], "job_id": None, "base_url": s.base_url, "model": s.model, "round": 1,
                            "mode": "api", "path": str(f["path"]), "requests": f["requests"], "bytes": f["bytes"],
                            "status": "planned"}, f["keys"])
        client = batch.client_for(s)
        with open(f["path"], "rb") as fh:
            up = client.files.create(file=(f["path"].name, fh), purpose="batch")
        client.batches.create(input_file_id=up.id, endpoint=batch.ENDPOINT, completion_window="24h",
                              metadata={"prefdissect_batch": f["id"]})
        # a second planning pass (another worker) plans none of those requests again
        r2 = batch.plan_round(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, directory=tmp_path / "b2",
                              limits=batch.Limits(), round_=1, job_id=None, max_attempts=3,
                              progress=paidwork.Progress())
        assert not r2.files and r2.waiting == f["requests"]
        server.set_batch()  # later rounds run at once
        server.release_open_batches()
        # a worker that sees the batch just recorded leaves it to its owner (which may be creating it)
        polls = []
        batch.run_batch(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, poll_s=0.02, directory=tmp_path / "b",
                        should_stop=lambda: polls.append(1) or len(polls) > 3, adopt_after_s=3600)
        assert demo.llm_batches()[0]["status"] == "planned" and len(server.batches) == 1
        # the resumed run finds the batch by its metadata and does not create another
        deadline = time.monotonic() + 60
        out = batch.run_batch(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, poll_s=0.1,
                              directory=tmp_path / "b", should_stop=lambda: time.monotonic() > deadline,
                              adopt_after_s=0)
        assert features_of(demo, s, samples) == len(samples), out.progress
        first_batch = [b for b in server.batches if (b["metadata"] or {}).get("prefdissect_batch") == f["id"]]
        assert len(first_batch) == 1
        assert max(server.batch_lines.values()) == 1


def test_judge_collection_in_batch_mode_writes_labels(demo, tmp_path):
    samples = samples_of(demo, 5)
    with LoopbackServer() as server:
        s = settings_for(server)
        out = batch.run_batch(demo, samples, s, judges.judge_sample, {"judge": "batch-judge", "both_orders": True},
                              poll_s=0.05, directory=tmp_path / "b")
        assert out.rounds == 1 and out.progress.done == len(samples)
        got = demo.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'batch-judge' AND verdict_ab IS NOT NULL"
                          " AND verdict_ba IS NOT NULL AND prob_a IS NOT NULL")
        assert got == len(samples)
        assert len(server.batch_lines) == 2 * len(samples)
        body = json.loads(Path(demo.llm_batches()[0]["path"]).read_text().splitlines()[0])["body"]
        assert body["logprobs"] is True and body["max_tokens"] == 1


def test_file_only_then_ingest_runs_rounds_outside_the_tool(demo, tmp_path, monkeypatch, capsys):
    """vLLM's run_batch reads and writes the same JSONL: the loopback's runner stands in for it."""
    ds = demo.datasets()[0]["name"]
    monkeypatch.setenv("PREFDISSECT_STORE", str(demo.path))
    monkeypatch.delenv("PREFDISSECT_LLM_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out_dir = tmp_path / "files"
    argv = ["annotate", "--dataset", ds, "--limit", "3", "--model", "my-vllm-model", "--batch-file-only", str(out_dir)]
    assert cli.main(argv) == 0
    with LoopbackServer() as server:
        client = __import__("openai").OpenAI(base_url=server.url, api_key="x")
        for round_ in range(6):
            files = sorted(p for p in out_dir.glob("b*.jsonl") if ".out" not in p.name and ".done" not in p.name)
            if not files:
                break
            for f in files:
                up = client.files.create(file=(f.name, f.open("rb")), purpose="batch")
                b = client.batches.create(input_file_id=up.id, endpoint=batch.ENDPOINT, completion_window="24h")
                while (b := client.batches.retrieve(b.id)).status != "completed":
                    time.sleep(0.02)
                results = tmp_path / f"{f.stem}.results.jsonl"
                results.write_bytes(client.files.content(b.output_file_id).content)
                f.rename(f.with_suffix(".done"))
                assert cli.main(["annotate", "--dataset", ds, "--limit", "3", "--model", "my-vllm-model",
                                 "--ingest", str(results), "--batch-file-only", str(out_dir)]) == 0
    text = capsys.readouterr().out
    assert "3 of 3 samples resolved" in text
    assert "price unknown" in text  # a self-hosted model has no price of its own: never $0
    s = LLMSettings(model="my-vllm-model")
    assert demo.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                       [annotate.feature_source(s.model, False)]) == 3
    # a line for a request this store never planned is counted, not written
    stray = tmp_path / "stray.jsonl"
    stray.write_text(json.dumps({"custom_id": "f" * 64, "response": {"status_code": 200, "body": {}}}) + "\n"
                     + "{not json\n")
    assert batch.ingest_file(demo, stray) == {"answered": 0, "errored": 0, "malformed": 1, "unknown": 1}


def test_batch_job_through_the_cli_records_its_batches(demo, monkeypatch, tmp_path, capsys):
    ds = demo.datasets()[0]["name"]
    monkeypatch.setenv("PREFDISSECT_STORE", str(demo.path))
    with LoopbackServer(api_key=KEY) as server:
        monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", KEY)
        monkeypatch.setenv("PREFDISSECT_LLM_BASE_URL", server.url)  # the operator's endpoint: the key goes
        code = cli.main(["judge", "--dataset", ds, "--limit", "4", "--judge", "cli-batch", "--model", "loopback-1",
                         "--batch", "--poll", "0.05", "--price-input", "1", "--price-output", "2"])
        assert code == 0, capsys.readouterr()
    job = jobs.list_jobs(demo)[0]
    assert job.status == "done" and job.params["llm"]["batch"] is True
    rows = demo.llm_batches(job_id=job.id)
    assert len(rows) == 1 and rows[0]["remote_id"].startswith("batch_")
    assert demo.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'cli-batch'") == 4
    capsys.readouterr()
    assert cli.main(["jobs", "--show", str(job.id)]) == 0
    shown = capsys.readouterr().out
    assert rows[0]["remote_id"] in shown and "8 answered" in shown


def test_estimate_says_unknown_not_zero(demo):
    samples = samples_of(demo, 2)
    est = annotate.estimate(demo, samples, LLMSettings(model="local", base_url="http://127.0.0.1:9/v1"))
    text = annotate.estimate_text(est)
    assert not est.price_known and "unknown" in text and "$0.0000" not in text
    paid = annotate.estimate(demo, samples, LLMSettings(model="gpt-4o-mini", batch=True))
    full = annotate.estimate(demo, samples, LLMSettings(model="gpt-4o-mini"))
    assert paid.price_known and paid.cost == pytest.approx(full.cost / 2) and paid.cost > 0


def test_sigkill_while_polling_then_the_same_command_resumes_without_submitting_again(demo, tmp_path):
    """A real worker process killed while it waits for its batch: the rerun adopts the open batch."""
    import os
    import signal

    ds = demo.datasets()[0]["name"]
    demo.close()
    env = {**os.environ, "PREFDISSECT_LLM_API_KEY": KEY}
    args = [sys.executable, "-m", "core", "--store", str(demo.path), "judge", "--dataset", ds, "--limit", "5",
            "--judge", "killed", "--model", "loopback-1", "--batch", "--poll", "0.1", "--price-input", "1",
            "--price-output", "2"]
    with LoopbackServer(api_key=KEY) as server:
        env["PREFDISSECT_LLM_BASE_URL"] = server.url
        server.set_batch(processing_s=60)
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        with Store(demo.path) as watch:
            while time.time() < deadline and not watch.llm_batches(statuses=("submitted",)):
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert watch.llm_batches(statuses=("submitted",)), "the worker never submitted its batch"
        server.set_batch()
        server.release_open_batches()
        out, err = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120).stdout, ""
        assert len(server.batches) == 1  # the open batch was adopted, not submitted again
        assert max(server.batch_lines.values()) == 1 and len(server.batch_lines) == 10
    with Store(demo.path) as store:
        assert store.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'killed'") == 5
    assert KEY not in out


def test_a_round_over_budget_is_not_submitted_and_cancel_stops_polling(demo, tmp_path):
    samples = samples_of(demo, 4)
    with LoopbackServer() as server:
        s = settings_for(server, price_input=1000.0, price_output=1000.0)
        out = batch.run_batch(demo, samples, s, annotate.annotate_sample, {"both_orders": False}, poll_s=0.05,
                              directory=tmp_path / "b", budget=0.01)
        assert out.progress.stopped and "budget" in out.progress.stopped
        assert server.batches == [] and demo.llm_batches() == []  # nothing uploaded, nothing recorded
        assert not list((tmp_path / "b").glob("b*.jsonl"))
        server.set_batch(processing_s=30)
        calls = []
        out = batch.run_batch(demo, samples, settings_for(server), annotate.annotate_sample, {"both_orders": False}, poll_s=0.05,
                              directory=tmp_path / "b", should_stop=lambda: calls.append(1) or len(calls) > 3)
        assert out.progress.stopped == "cancelled"
        (b,) = demo.llm_batches()
        assert b["status"] == "submitted"  # left running on the server: its answers are taken in on resume
        server.set_batch()
        server.release_open_batches()
        batch.run_batch(demo, samples, settings_for(server), annotate.annotate_sample, {"both_orders": False}, poll_s=0.05,
                        directory=tmp_path / "b")
        assert features_of(demo, settings_for(server), samples) == 4
        assert max(server.batch_lines.values()) == 1
