"""Concurrent use of one store: two sessions browsing the real server while an annotation job
(a worker process, against the loopback LLM server) and a fit (another process) write, their overlap
made certain by the loopback server's hold and shown by timestamps. Nothing fails with "database is
locked" and no write is lost; the same job started twice is one job."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core import annotate, demo, jobs
from core.loopback import LoopbackServer
from core.store import Store
from tests import browserkit
from tests.conftest import wait_until
from tests.stsession import Session

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["", "samples", "profiles", "similarity", "judges", "annotate", "simulate"]

pytestmark = pytest.mark.slow


@pytest.fixture
def store_file(demo_copy):
    return demo_copy


#: seconds a session waits between its page runs: two sessions browse throughout the writers' work without
#: keeping a core busy with reruns (which slowed the writers they were meant to overlap)
PACE_S = 0.25


def browse(url: str, stop: threading.Event, runs: list, spans: list, errors: list) -> None:
    """Run the pages in turn, PACE_S apart, until ``stop`` (at least one full round); ``spans``: each
    run's (start, end) on the test's clock, so the test can show the runs overlapped the writers."""
    try:
        with Session(url, timeout=120) as session:
            i = 0
            while not stop.is_set() or i < len(PAGES):  # at least one full round
                page = PAGES[i % len(PAGES)]
                t0 = time.time()
                run = session.run(page)
                spans.append((t0, time.time()))
                runs.append(run)
                if run.status != "ok" or run.exceptions:
                    errors.append((page, run.status, run.exceptions))
                i += 1
                stop.wait(PACE_S)
    except Exception as e:  # a dropped connection is a failure too
        errors.append(("session", type(e).__name__, str(e)))


#: the fit runs on one scenario group (4 judges): a writer beside the annotation worker, whose size
#: is not what the test is about (all 17 scopes, 68 profiles, took 17 CPU-s; one scope 3.5, mostly imports)
FIT_SCOPES = ["Code"]


def test_two_sessions_a_worker_and_a_fit_at_once(store_file, tmp_path):
    """The writers overlap by construction, not by luck of timing: the fit starts once the annotation
    worker has stored answers, and the loopback server holds the worker's later requests until the fit
    has ended, so the whole fit (its reads and its write) falls inside the annotation job's run; both
    sessions browse throughout, and each is shown to have run pages while the fit ran."""
    proc, url = browserkit.start_streamlit(store_file)
    stop = threading.Event()
    runs: list = [[], []]
    spans: list = [[], []]
    errors: list = []
    threads = [threading.Thread(target=browse, args=(url, stop, runs[k], spans[k], errors)) for k in range(2)]
    fit = None
    try:
        with LoopbackServer(latency=0.02, seed=1) as llm:
            with Store(store_file) as store:
                samples = store.samples_for(demo.DEMO_DATASET, limit=40)
                params = {"dataset": demo.DEMO_DATASET, "scenario": None, "limit": 40, "both_orders": False,
                          "llm": {"model": "loopback-1", "base_url": llm.url, "concurrency": 8}}
                job = jobs.submit(store, "annotate", params, total=len(samples))
                again = jobs.submit(store, "annotate", params, total=len(samples))
                assert again.id == job.id and len(jobs.list_jobs(store)) == 1
                before_fit = {(p["scope"], p["judge"]): p["created_at"]
                              for p in store.profiles(dataset=demo.DEMO_DATASET, method="fast")}
            env = {"PREFDISSECT_LLM_API_KEY": "sk-concurrency-test"}
            for t in threads:
                t.start()
            # the sessions are browsing (a page each served) before the writers start
            wait_until(lambda: all(runs) or errors, "a page served to each session", 120)
            assert all(runs), (errors, [len(r) for r in runs])
            llm.hold(after=16)  # the worker stores some answers, then waits on the server
            workers = [jobs.start_worker(store_file, job.id, env=env) for _ in range(2)]  # a double click
            with Store(store_file) as store:
                wait_until(lambda: llm.held and store.scalar("SELECT COUNT(*) FROM annotations WHERE "
                                                             "annotator = 'loopback-1'"), "the worker storing answers")
                assert jobs.get(store, job.id).status == "running"
            fit_started = time.time()
            fit = subprocess.Popen([sys.executable, "-m", "core", "--store", str(store_file), "fit", "--dataset",
                                    demo.DEMO_DATASET, "--features", demo.FEATURE_SOURCE, "--force",
                                    "--scopes", ",".join(FIT_SCOPES)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            llm.hold(after=24)  # answers again while the fit starts and reads, then the worker waits again
            fit_out, _ = fit.communicate(timeout=600)
            fit_ended = time.time()
            held_at_fit_end = llm.held
            with Store(store_file) as store:
                status_at_fit_end = jobs.get(store, job.id).status
                llm.release()
                final = wait_until(lambda: (j := jobs.get(store, job.id)).status not in ("queued", "running") and j,
                                   "the annotation job's end")
                stop.set()  # the writers are done: each session ends its round
                stored = store.scalar("SELECT COUNT(*) FROM annotations WHERE status = 'ok' AND reused = 0"
                                      " AND annotator = 'loopback-1'")
                featured = store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                                        [annotate.feature_source("loopback-1", False)])
                after_fit = {(p["scope"], p["judge"]): p["created_at"]
                             for p in store.profiles(dataset=demo.DEMO_DATASET, method="fast")}
            served = llm.stats.completions
            for pid in workers:
                for _ in range(100):
                    try:
                        os.waitpid(pid, os.WNOHANG)
                        os.kill(pid, 0)
                    except (ChildProcessError, ProcessLookupError):
                        break
                    time.sleep(0.1)
    finally:
        stop.set()
        if fit is not None and fit.poll() is None:
            fit.kill()
        for t in threads:
            if t.is_alive():
                t.join(180)
        browserkit.stop(proc)
        server_log = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert fit.returncode == 0, fit_out
    n_fit = 4 * len(FIT_SCOPES)  # the demo's four judges
    assert f"{n_fit} profiles fitted" in fit_out
    # the fit ran inside the annotation job's run: the worker had stored answers before the fit started
    # and was still waiting on the server, its job running, when the fit had ended
    assert held_at_fit_end > 0 and status_at_fit_end == "running"
    assert final.status == "done" and final.done == 40 and final.failed == 0, final
    assert featured == 40
    assert stored == served, "every answer the server gave is stored exactly once"
    refitted = {key for key in after_fit if after_fit[key] != before_fit.get(key)}
    assert len(after_fit) == len(before_fit) == 68 and len(refitted) == n_fit
    assert {scope for scope, _ in refitted} == set(FIT_SCOPES)
    assert not errors, errors[:5]
    assert all(len(r) >= len(PAGES) for r in runs), [len(r) for r in runs]
    # each session ran pages while the fit ran (and so while the annotation job ran around it)
    assert all(any(t0 < fit_ended and t1 > fit_started for t0, t1 in s) for s in spans), (fit_started, fit_ended)
    logs = "".join(p.read_text(errors="replace") for p in jobs.log_dir(store_file).glob("*.log"))
    for text in (server_log, logs, fit_out):
        assert "database is locked" not in text
        assert "sk-concurrency-test" not in text
