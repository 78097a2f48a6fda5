"""Jobs against a real store: the fit kind, several scenario groups, one job per request, runs again
with history, cancel / resume, one worker per job, and the budget over a job's runs (loopback LLM)."""

import json
import shutil
import re
import subprocess
import sys
import time

import pytest

from core import annotate, demo, jobs
from core.loopback import LoopbackServer
from core.store import Store
from tests.conftest import demo_samples


@pytest.fixture
def store(unfitted_demo_file, tmp_path):
    path = tmp_path / "store.db"
    shutil.copy(unfitted_demo_file, path)
    s = Store(path)
    yield s
    s.close()


SMALL_PER_GROUP = 3


@pytest.fixture
def small_store(tmp_path):
    """The demo at SMALL_PER_GROUP pairs per scenario group, unfitted: for a job over a whole dataset whose
    size is not what the test is about (the offline heuristics over the full demo took 6 CPU s a run)."""
    s = Store(tmp_path / "small.db")
    demo.build_demo(s, n_per_group=SMALL_PER_GROUP, fit=False)
    yield s
    s.close()


def run_here(store, job):
    assert jobs.claim(store, job.id)
    return jobs.run(store, job.id)


def wait_finished(store, job_id, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = jobs.get(store, job_id)
        if job.status in jobs.FINISHED:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {jobs.get(store, job_id).status} after {timeout} s")


FIT = {"dataset": "demo-synthetic", "features": "demo", "scopes": ["Code", "all"],
       "judges": ["demo-gpt-4-turbo", "demo-crowd"]}


def test_a_fit_job_on_the_demo_writes_profiles_and_a_second_run_keeps_the_first_in_history(store):
    assert store.scalar("SELECT COUNT(*) FROM profiles WHERE method = 'fast'") == 0  # only the true ones
    job = jobs.submit(store, "fit", FIT)
    final = run_here(store, job)
    assert final.status == "done", final.error
    rows = store.profiles(dataset="demo-synthetic", feature_source="demo", method="fast")
    assert sorted((p["scope"], p["judge"]) for p in rows) == [
        ("Code", "demo-crowd"), ("Code", "demo-gpt-4-turbo"), ("all", "demo-crowd"), ("all", "demo-gpt-4-turbo")]
    # the position term leads; both demo judges tie, so Davidson's tie parameter ends each profile
    assert all(p["n"] >= 20 and len(p["mean"]) == 31 and p["attributes"][0] == "(shown first)"
               and p["attributes"][-1] == "(tie)" for p in rows)
    assert "4 profiles fitted" in final.message
    assert final.done == final.total == 3  # two scopes checked, one batch fitted
    first_started = final.started_at

    again = jobs.submit(store, "fit", dict(FIT, judges=["demo-crowd", "demo-gpt-4-turbo"]))  # same job, any order
    assert again.id == job.id and again.status == "queued" and again.done == 0
    second = run_here(store, again)
    assert second.status == "done" and "0 profiles fitted, 4 unchanged" in second.message
    (run1,) = jobs.runs(store, job.id)
    assert (run1["run"], run1["status"], run1["started_at"]) == (1, "done", first_started)
    assert "4 profiles fitted" in run1["message"]
    assert jobs.run_counts(store)[job.id] == 2
    assert len(jobs.list_jobs(store)) == 1


def test_the_same_request_is_one_job_however_it_is_spelled(store):
    a = jobs.submit(store, "annotate", {"dataset": "d", "scenarios": ["Code", "Advice"], "limit": None,
                                        "llm": {"model": "m"}})
    b = jobs.submit(store, "annotate", {"llm": {"model": "m"}, "dataset": "d", "scenarios": ["Advice", "Code"]})
    c = jobs.submit(store, "annotate", {"dataset": "d", "scenario": "Code", "llm": {"model": "m"}})
    d = jobs.submit(store, "annotate", {"dataset": "d", "scenarios": ["Code"], "llm": {"model": "m"}})
    assert a.id == b.id and c.id == d.id and a.id != c.id
    assert a.params == {"dataset": "d", "scenarios": ["Advice", "Code"], "llm": {"model": "m"}}
    # a fit's settings at their defaults are the same job as leaving them out
    f1 = jobs.submit(store, "fit", {**FIT, "method": "fast", "prior_scale": 0.1, "folds": 5, "seed": 0,
                                    "force": False, "include_excluded": False})
    f2 = jobs.submit(store, "fit", FIT)
    f3 = jobs.submit(store, "fit", {**FIT, "method": "exact"})
    assert f1.id == f2.id != f3.id
    assert len(jobs.list_jobs(store)) == 4
    with pytest.raises(ValueError, match="unknown job kind"):
        jobs.submit(store, "train", {"dataset": "d"})


def test_a_job_stored_under_the_older_key_is_still_found(small_store):
    store = small_store
    old = {"dataset": "demo-synthetic", "scenario": None, "limit": None}  # what the CLI submitted before
    with store.writing():
        store.conn.execute("INSERT INTO jobs (key, kind, status, params, created_at) VALUES (?, 'heuristic', 'done',"
                           " ?, '2025-01-01T00:00:00+00:00')", (jobs.job_key("heuristic", old), json.dumps(old)))
    job = jobs.submit(store, "heuristic", old)
    assert len(jobs.list_jobs(store)) == 1 and job.status == "queued"  # found, and queued to run again
    final = run_here(store, job)
    every = len(store.sample_ids("demo-synthetic"))
    assert every == SMALL_PER_GROUP * len(store.scenario_counts("demo-synthetic"))
    assert final.status == "done" and final.done == final.total == every  # the whole dataset


def test_several_scenario_groups_and_the_older_single_scenario(store):
    groups = {r["scenario_group"]: r["samples"] for r in store.scenario_counts("demo-synthetic")}
    two = jobs.select_samples(store, {"dataset": "demo-synthetic", "scenarios": ["Code", "Advice"]})
    assert len(two) == groups["Code"] + groups["Advice"]
    assert {s["scenario_group"] for s in two} == {"Code", "Advice"}
    ids = store.sample_ids("demo-synthetic")
    assert [s["id"] for s in two] == [i for i in ids if i in {s["id"] for s in two}]  # dataset order
    assert len(jobs.select_samples(store, {"dataset": "demo-synthetic", "scenarios": ["Code", "Advice"],
                                           "limit": 7})) == 7
    one = jobs.select_samples(store, {"dataset": "demo-synthetic", "scenario": "Code"})
    assert [s["id"] for s in one] == [s["id"] for s in two if s["scenario_group"] == "Code"]

    job = jobs.submit(store, "heuristic", {"dataset": "demo-synthetic", "scenarios": ["Code", "Advice"]})
    final = run_here(store, job)
    assert final.done == final.total == len(two)
    n = store.scalar("SELECT COUNT(DISTINCT f.sample_id) FROM features f JOIN samples s ON s.id = f.sample_id"
                     " WHERE f.source = 'heuristic:v1' AND s.scenario_group IN ('Code', 'Advice')")
    assert n == len(two)
    assert store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = 'heuristic:v1'") == len(two)


@pytest.mark.parametrize("kind, params, stored", [
    ("heuristic", {"dataset": "demo-synthetic"}, "small_store"),  # the whole dataset, of the small demo
    ("fit", FIT, "store"),
])
def test_cancel_stops_the_worker_and_resume_runs_again(request, kind, params, stored):
    store = request.getfixturevalue(stored)
    job = jobs.submit(store, kind, params)
    assert jobs.claim(store, job.id)
    jobs.cancel(store, job.id)  # asked while running: the worker stops at its next check
    stopped = jobs.run(store, job.id)
    assert stopped.status == "cancelled" and "cancelled by user" in stopped.message
    if kind == "heuristic":
        assert store.scalar("SELECT COUNT(*) FROM features WHERE source = 'heuristic:v1'") == 0
    else:
        assert store.scalar("SELECT COUNT(*) FROM profiles WHERE method = 'fast'") == 0
    assert not jobs.claim(store, job.id)  # a cancelled job is not taken until resumed
    resumed = jobs.resume(store, job.id)
    assert resumed.status == "queued" and resumed.done == 0
    final = run_here(store, resumed)
    assert final.status == "done"
    (run1,) = jobs.runs(store, job.id)
    assert run1["status"] == "cancelled"


def test_one_worker_per_job_and_a_lost_worker_is_replaced(store):
    per_group = demo.N_PER_GROUP  # the demo's pairs in one scenario group
    job, pid = jobs.launch(store, "heuristic", {"dataset": "demo-synthetic", "scenarios": ["Code"]}, total=per_group)
    assert pid
    # a second click, a second browser: the job is queued with its worker starting, or running
    assert jobs.ensure_worker(store, job.id) is None
    assert jobs.launch(store, "heuristic", {"dataset": "demo-synthetic", "scenarios": ["Code"]})[1] is None
    final = wait_finished(store, job.id)
    assert final.status == "done" and final.done == per_group and final.worker_pid == pid
    # the worker's log says what was done (issue 17: it used to say only "job N done"): what started, the
    # state, the times and duration, the counts, and the job's own account of its work
    log = jobs.log_tail(store.path, job.id, lines=50)
    assert f"job {job.id} started by worker pid {pid}: heuristic" in log
    assert f"job {job.id} done: heuristic · demo-synthetic · Code" in log
    assert f"{per_group:,} of {per_group:,} samples done, 0 failed" in log
    assert re.search(r"started \S+, ended \S+ \(\d+(\.\d)? s\)", log), log
    assert f"finished: {per_group:,} of {per_group:,} samples rated by the offline heuristics in " in log
    assert jobs.ensure_worker(store, job.id) is None  # finished: nothing to start

    # a worker that died while running: the job is stale, and a new worker takes it over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job2 = jobs.submit(store, "heuristic", {"dataset": "demo-synthetic", "scenarios": ["Advice"]})
    assert jobs.claim(store, job2.id, pid=dead.pid)
    assert jobs.get(store, job2.id).stale and not jobs.get(store, job2.id).active
    pid2 = jobs.ensure_worker(store, job2.id)
    assert pid2 and pid2 != dead.pid
    final2 = wait_finished(store, job2.id)
    assert final2.status == "done" and final2.done == per_group
    (lost,) = jobs.runs(store, job2.id)
    assert lost["status"] == "lost" and lost["worker_pid"] == dead.pid


def test_budget_covers_all_runs_of_a_job(store, monkeypatch):
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", "sk-test-budget")
    with LoopbackServer() as server:
        llm = {"model": "loopback-1", "base_url": server.url, "price_input": 2.5, "price_output": 10.0,
               "concurrency": 2}
        params = {"dataset": "demo-synthetic", "scenarios": ["Code"], "limit": 12, "llm": llm}
        job = jobs.submit(store, "annotate", params, budget=0.01)
        first = run_here(store, job)
        assert first.status == "paused" and "budget" in first.message
        spent = store.scalar("SELECT SUM(cost) FROM annotations WHERE job_id = ?", [job.id])
        assert 0 < spent <= 0.01 and first.cost == pytest.approx(spent)
        sent = server.stats.chat_requests
        # the same budget again: the first run used it up, so nothing is sent
        again = run_here(store, jobs.resume(store, job.id))
        assert again.status == "paused" and server.stats.chat_requests == sent
        # a larger budget: the job continues and finishes, and its cost is the sum over its runs
        done = run_here(store, jobs.resume(store, job.id, budget=1.0))
        assert done.status == "done" and done.done == 12
        total = store.scalar("SELECT SUM(cost) FROM annotations WHERE job_id = ?", [job.id])
        assert done.cost == pytest.approx(total) and total <= 1.0
        assert server.stats.completions == store.scalar(  # nothing paid twice
            "SELECT COUNT(*) FROM annotations WHERE job_id = ? AND status = 'ok' AND reused = 0", [job.id])
    assert [r["status"] for r in jobs.runs(store, job.id)] == ["paused", "paused"]
    src = annotate.feature_source("loopback-1", False)
    assert store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?", [src]) == 12
    assert "sk-test-budget" not in json.dumps(store.rows("SELECT * FROM jobs")) + json.dumps(
        store.rows("SELECT * FROM job_runs"))


def test_a_cancelled_job_whose_worker_still_winds_down_is_not_run_again_yet(store):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # stands in for a worker
    try:
        job = jobs.submit(store, "heuristic", {"dataset": "demo-synthetic", "scenarios": ["Code"]})
        assert jobs.claim(store, job.id, pid=worker.pid)
        cancelled = jobs.cancel(store, job.id)
        assert cancelled.status == "cancelled" and cancelled.stopping and not cancelled.active
        assert cancelled.state == "cancelled (worker stopping)"
        # neither resume, nor submitting it again, nor a start queues it while its worker still runs
        assert jobs.resume(store, job.id).status == "cancelled"
        assert jobs.submit(store, "heuristic", {"dataset": "demo-synthetic", "scenarios": ["Code"]}).status == "cancelled"
        assert jobs.ensure_worker(store, job.id) is None
    finally:
        worker.kill()
        worker.wait()
    assert not jobs.get(store, job.id).stopping
    resumed = jobs.resume(store, job.id)
    assert resumed.status == "queued" and resumed.worker_pid is None
    assert [r["status"] for r in jobs.runs(store, job.id)] == ["cancelled"]


def test_a_large_selection_is_estimated_on_a_spread_of_samples_and_scaled(store):
    from core.llm import LLMSettings

    settings = LLMSettings(price_input=2.5, price_output=10.0)
    params = {"dataset": "demo-synthetic", "both_orders": True}
    exact, sampled = jobs.estimate(store, "annotate", params, settings, max_samples=None)
    assert sampled is None and exact.samples == demo_samples() and exact.cost > 0
    scaled, sampled = jobs.estimate(store, "annotate", params, settings, max_samples=100)
    assert sampled == 100 and scaled.samples == demo_samples()
    assert scaled.cost == pytest.approx(exact.cost, rel=0.05)
    assert scaled.requests == pytest.approx(exact.requests, rel=0.05)
    assert set(scaled.by_step) == set(exact.by_step)
    judge, _ = jobs.estimate(store, "judge", {"dataset": "demo-synthetic"}, settings)  # both orders by default
    assert judge.requests == 2 * demo_samples()


def test_a_scaled_estimate_keeps_an_unknown_price_unknown(store):
    """Regression (issue 15, found when the demo grew past jobs.ESTIMATE_SAMPLES): a scaled estimate was a
    new Estimate that dropped ``price_known``, so a model with no known price showed "$0.0000" instead of
    "unknown" and its loud warning was not shown, for selections above 1,000 samples only."""
    from core.llm import LLMSettings

    settings = LLMSettings(model="acme-unlisted-model-7", base_url="https://llm.acme.example/v1")
    assert not settings.price_known
    params = {"dataset": "demo-synthetic"}
    exact, _ = jobs.estimate(store, "annotate", params, settings, max_samples=None)
    scaled, sampled = jobs.estimate(store, "annotate", params, settings, max_samples=100)
    assert sampled == 100 and not exact.price_known
    assert (scaled.price_known, scaled.price_source) == (exact.price_known, exact.price_source)


def test_a_worker_starts_at_a_lower_cpu_priority_before_its_imports(tmp_path):
    """Issue 17 point 6: a worker lowered its own priority only after importing the store layer (0.7 s of
    CPU at full priority, beside the first Overview of a first start); the process that starts it now
    lowers it at once, by config.WORKER_NICE below its own."""
    import os

    from core import config

    if not hasattr(os, "getpriority"):
        pytest.skip("no Unix process priorities here")
    path = tmp_path / "store.db"
    Store(path).close()
    pid = jobs.start_worker(path, 424242)  # no such job: the worker exits after its imports
    try:
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + config.WORKER_NICE)
    except ProcessLookupError:  # pragma: no cover - it ended and was reaped within the call
        pytest.skip("the worker ended before its priority could be read")
