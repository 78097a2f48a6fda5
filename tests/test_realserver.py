"""Annotation and judge collection against a real OpenAI-compatible server that nobody here wrote:
llama-cpp-python's server with the Gemma 3 270M GGUF (tests/realserverkit.py). A 270M base model
rates badly; these tests are of our protocol handling (dialect, folded system message, lenient
JSON, cut-off answers, log-probabilities, one slot), not of its judgement. They are few and short:
a 270M model writes about 10 tokens a second on two cores. Select them with ``-m realserver``."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import jobs
from core.importers import import_file
from core.llm import LLMSettings
from core.store import Store
from tests import realserverkit

pytestmark = realserverkit.MARKS

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PREFDISSECT_LLM_API_KEY": "no-key-needed"}


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    proc, url = realserverkit.start(tmp_path_factory.mktemp("llama"))
    yield url
    realserverkit.stop(proc)


@pytest.fixture(scope="module")
def real_store(tmp_path_factory, shared_data) -> Path:
    path = tmp_path_factory.mktemp("real") / "store.db"
    with Store(path) as s:
        import_file(s, "pandalm", shared_data / "pandalm" / "testset-v1.json")
    return path


@pytest.mark.timeout(2400)
def test_the_cli_annotates_a_few_real_pairs_in_both_orders(llama_server, real_store):
    res = subprocess.run([sys.executable, "-m", "core", "--store", str(real_store), "annotate",
                          "--dataset", "pandalm-test", "--limit", "3", "--both-orders", "--base-url", llama_server,
                          "--model", realserverkit.ANNOTATOR], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=2300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "job 1 done: 3/3 samples done, 0 failed" in res.stdout
    with Store(real_store) as s:
        dialect = s.llm_dialect(llama_server, realserverkit.ANNOTATOR)
        # llama-cpp-python: json_schema is a 500, the grammar form is enforced, one request at a time
        assert dialect["mode"] == "json_object_schema" and dialect["system_role"] is False
        assert dialect["slots"] == 1, dialect["notes"]
        assert any("json_schema: rejected" in n for n in dialect["notes"])
        source = f"llm:{realserverkit.ANNOTATOR}:pd-v1:both"
        assert s.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?", [source]) == 3
        assert s.scalar("SELECT COUNT(*) FROM features WHERE source = ?", [source]) == 3 * 29
        steps = {r["step"] for r in s.rows("SELECT step FROM annotations WHERE status = 'ok'")}
        assert {"query", "ratings", "errors"} <= steps
        orders = {r["orientation"] for r in s.rows("SELECT orientation FROM annotations WHERE step = 'ratings'"
                                                   " AND status = 'ok'")}
        assert orders == {"AB", "BA"}
        sample = s.rows("SELECT cases FROM samples WHERE dataset = 'pandalm-test' ORDER BY position LIMIT 1")[0]
        assert sample["cases"] and json.loads(sample["cases"])  # the query analysis reached the sample


@pytest.mark.timeout(1200)
def test_a_worker_collects_a_judges_labels_and_probabilities_in_both_orders(llama_server, real_store):
    settings = LLMSettings(model=realserverkit.JUDGE, base_url=llama_server)
    with Store(real_store) as s:
        job, pid = jobs.launch(s, "judge", {"dataset": "pandalm-test", "limit": 3, "judge": "gemma-270m",
                                            "both_orders": True, "llm": settings.public()},
                               env={"PREFDISSECT_LLM_API_KEY": "no-key-needed"})
        assert pid
        deadline = time.time() + 1100
        while time.time() < deadline and jobs.get(s, job.id).status in ("queued", "running"):
            time.sleep(1)
        final = jobs.get(s, job.id)
        assert final.status == "done", (final.message, final.error, jobs.log_tail(real_store, job.id))
        labels = s.labels("pandalm-test", ["gemma-270m"])
        assert len(labels) == 3
        assert all(lab["prob_a"] is not None and 0 <= lab["prob_a"] <= 1 for lab in labels)
        assert all(lab["verdict_ab"] and lab["verdict_ba"] for lab in labels)
        assert "3 labels stored (3 with both orders, position consistency" in final.message
        # the probabilities came from the answer tokens' log-probabilities, not from a parsed letter
        parsed = [json.loads(r["parsed"]) for r in s.rows("SELECT parsed FROM annotations WHERE step = 'judge'"
                                                           " AND status = 'ok'")]
        assert parsed and all(p["top_logprobs"] for p in parsed)


@pytest.mark.timeout(2400)
def test_the_manipulation_experiment_runs_end_to_end_against_the_real_server(llama_server, tmp_path):
    """The experiment's whole path on a real server: generation with a system prompt (folded: the server
    drops system messages), judging in both orders with log-probabilities, heuristic annotation, the
    result with measured and predicted shifts. Two queries, short answers: a smoke test, not a measurement."""
    from core import catalogue, experiment

    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"query": q, "baseline": b}) + "\n" for q, b in (
        ("What is the capital of France?", "Paris is the capital of France."),
        ("Name a primary colour.", "Red is a primary colour."))), encoding="utf-8")
    keys = catalogue.attribute_keys()
    weights = {"well_formatted": 0.8, "lengthy": 0.5, "informal": -0.6, "admits_limits": -0.8}
    with Store(tmp_path / "store.db") as s:
        s.save_profile({"dataset": "known", "scope": "all", "judge": "known-judge", "feature_source": "heuristic:v1",
                        "method": "truth", "attributes": keys, "mean": [weights.get(k, 0.0) for k in keys],
                        "imported": 0, "provenance": {"synthetic": True}})
        spec = experiment.Spec(
            name="real smoke", model=LLMSettings(model=realserverkit.ANNOTATOR, base_url=llama_server,
                                                 max_tokens=40).public(),
            judge=LLMSettings(model=realserverkit.JUDGE, base_url=llama_server).public(), judge_name="gemma-270m-exp",
            profile={"dataset": "known", "scope": "all", "judge": "known-judge"}, arms=[],
            queries={"file": str(queries)}, max_tokens=40, top_k=2)
        exp_id = experiment.create(s, spec)
        est = experiment.estimate(s, exp_id)
        assert est.by_stage["generate"]["requests"] == 6 and est.by_stage["judge"]["requests"] == 12
        out = experiment.run(s, exp_id)
        assert out.status == "done", out.message
        rec = s.experiment(exp_id)
        arms = {a["arm"]: a for a in rec["result"]["arms"]}
        assert set(arms) == {"control", "liked", "disliked"}
        assert all(a["n"] == 2 and a["measured"]["rate"] is not None and a["predicted"] for a in arms.values())
        assert arms["liked"]["shift"] is not None and arms["liked"]["predicted_shift"] is not None
        gens = s.rows("SELECT raw FROM annotations WHERE step = 'generate' AND status = 'ok' AND reused = 0")
        assert len(gens) == 6 and all(g["raw"].strip() for g in gens)
        # a rerun sends nothing
        before = s.scalar("SELECT COUNT(*) FROM annotations")
        assert experiment.run(s, exp_id).status == "done"
        assert s.scalar("SELECT COUNT(*) FROM annotations") == before
