"""Concurrent use of one store: two sessions browsing the real server while an annotation job
(a worker process, against the loopback LLM server) and a fit (another process) write. Nothing
fails with "database is locked" and no write is lost; the same job started twice is one job."""

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
from tests.stsession import Session

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["", "samples", "profiles", "similarity", "judges", "annotate", "simulate"]

pytestmark = pytest.mark.slow


@pytest.fixture
def store_file(demo_copy):
    return demo_copy


def browse(url: str, stop: threading.Event, runs: list, errors: list) -> None:
    try:
        with Session(url, timeout=120) as session:
            i = 0
            while not stop.is_set() or i < len(PAGES):  # at least one full round
                page = PAGES[i % len(PAGES)]
                run = session.run(page)
                runs.append(run)
                if run.status != "ok" or run.exceptions:
                    errors.append((page, run.status, run.exceptions))
                i += 1
    except Exception as e:  # a dropped connection is a failure too
        errors.append(("session", type(e).__name__, str(e)))


def test_two_sessions_a_worker_and_a_fit_at_once(store_file, tmp_path):
    proc, url = browserkit.start_streamlit(store_file)
    stop = threading.Event()
    runs: list = [[], []]
    errors: list = []
    threads = [threading.Thread(target=browse, args=(url, stop, runs[k], errors)) for k in range(2)]
    try:
        with LoopbackServer(latency=0.02, seed=1) as llm:
            with Store(store_file) as store:
                samples = store.samples_for(demo.DEMO_DATASET, limit=40)
                params = {"dataset": demo.DEMO_DATASET, "scenario": None, "limit": 40, "both_orders": False,
                          "llm": {"model": "loopback-1", "base_url": llm.url, "concurrency": 8}}
                job = jobs.submit(store, "annotate", params, total=len(samples))
                again = jobs.submit(store, "annotate", params, total=len(samples))
                assert again.id == job.id and len(jobs.list_jobs(store)) == 1
            env = {"PREFDISSECT_LLM_API_KEY": "sk-concurrency-test"}
            for t in threads:
                t.start()
            deadline = time.time() + 120  # the sessions are browsing (a page each served) before the writers start
            while not all(runs) and not errors and time.time() < deadline:
                time.sleep(0.05)
            assert all(runs), (errors, [len(r) for r in runs])
            workers = [jobs.start_worker(store_file, job.id, env=env) for _ in range(2)]  # a double click
            fit = subprocess.Popen([sys.executable, "-m", "core", "--store", str(store_file), "fit", "--dataset",
                                    demo.DEMO_DATASET, "--features", demo.FEATURE_SOURCE, "--force"], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            fit_out, _ = fit.communicate(timeout=600)
            deadline = time.time() + 300
            with Store(store_file) as store:
                while time.time() < deadline and jobs.get(store, job.id).status in ("queued", "running"):
                    time.sleep(0.05)  # the sessions browse (a core's worth of reruns) until this ends
                final = jobs.get(store, job.id)
                stored = store.scalar("SELECT COUNT(*) FROM annotations WHERE status = 'ok' AND reused = 0"
                                      " AND annotator = 'loopback-1'")
                featured = store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                                        [annotate.feature_source("loopback-1", False)])
                fitted = store.scalar("SELECT COUNT(*) FROM profiles WHERE method = 'fast' AND dataset = ?",
                                      [demo.DEMO_DATASET])
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
        for t in threads:
            if t.is_alive():
                t.join(180)
        browserkit.stop(proc)
        server_log = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    assert fit.returncode == 0, fit_out
    assert "68 profiles fitted" in fit_out
    assert final.status == "done" and final.done == 40 and final.failed == 0, final
    assert featured == 40
    assert stored == served, "every answer the server gave is stored exactly once"
    assert fitted == 68
    assert not errors, errors[:5]
    assert all(len(r) >= len(PAGES) for r in runs), [len(r) for r in runs]
    logs = "".join(p.read_text(errors="replace") for p in jobs.log_dir(store_file).glob("*.log"))
    for text in (server_log, logs, fit_out):
        assert "database is locked" not in text
        assert "sk-concurrency-test" not in text
