"""The Annotate & fit page (AppTest): the cost estimate and the key's status before starting, a
real annotation job against the loopback server watched to the end, one worker per job, a fit job."""

import json
import re
import time

import pytest

from core import annotate, demo, jobs
from core.llm import LLMSettings
from core.loopback import LoopbackServer
from core.store import Store
from tests.conftest import demo_samples
from tests.stsession import open_page, sent

PAGE = "annotate"  # pages/annotate.py
FAKE_KEY = "sk-FAKE-must-never-show-8c1e5d"


@pytest.fixture
def store_path(unfitted_store_path, monkeypatch):
    path = unfitted_store_path
    for name in ("PREFDISSECT_LLM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFDISSECT_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", FAKE_KEY)
    monkeypatch.setenv("PREFDISSECT_LLM_PRICE_INPUT", "2.5")
    monkeypatch.setenv("PREFDISSECT_LLM_PRICE_OUTPUT", "10")
    return path


def plain(markdown: str) -> str:
    """Markdown the page escaped (data-derived text is rendered inert) back to its text."""
    return markdown.replace("\\", "")


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_estimate_and_key_status_before_starting_and_never_the_key(store_path):
    at = open_page(PAGE)
    assert at.radio(key="ann_mode").value == "llm"  # a key is set, so the LLM is offered first
    assert any("API key: set (from the environment)" in c.value for c in at.caption)
    with Store(store_path) as s:
        samples = s.samples_for("demo-synthetic")
        # the page's estimate is core's: above jobs.ESTIMATE_SAMPLES samples (the whole demo) it is computed on
        # that many evenly spaced samples and scaled, and the page says so
        est, sampled = jobs.estimate(s, "annotate", {"dataset": "demo-synthetic", "scenarios": [], "limit": None,
                                                     "both_orders": False}, LLMSettings.from_env())
    assert sampled == (jobs.ESTIMATE_SAMPLES if len(samples) > jobs.ESTIMATE_SAMPLES else None)
    if sampled:
        assert any(f"of {sampled:,} evenly spaced samples" in plain(c.value) for c in [*at.caption, *at.markdown])
    m = metrics(at)
    assert m["Samples"] == f"{len(samples):,}" == f"{demo_samples():,}"
    assert m["Requests to send"] == f"{est.requests:,}"
    assert m["Estimated cost"] == f"${est.cost:.4f}" and est.cost > 0
    steps = next(df.value for df in at.dataframe if "step" in df.value.columns)
    assert dict(zip(steps["step"], steps["requests"])) == {k: v["requests"] for k, v in est.by_step.items()}

    # two scenario groups, both orders: the estimate follows, still from core
    at.multiselect(key="ann_groups").set_value(["Code", "Advice"])
    at.checkbox(key="ann_both").check()
    at.run()
    assert not at.exception
    with Store(store_path) as s:
        chosen = jobs.select_samples(s, {"dataset": "demo-synthetic", "scenarios": ["Code", "Advice"]})
        est2 = annotate.estimate(s, chosen, LLMSettings.from_env(), both_orders=True)
    m = metrics(at)
    assert m["Samples"] == f"{len(chosen):,}" and m["Estimated cost"] == f"${est2.cost:.4f}"
    assert m["Requests to send"] == f"{est2.requests:,}"

    everything = sent(at) + repr(at.session_state)
    assert FAKE_KEY not in everything
    assert "sk-FAKE" not in everything


def test_without_an_llm_the_offline_heuristics_are_offered_and_run(store_path, monkeypatch):
    monkeypatch.delenv("PREFDISSECT_LLM_API_KEY")
    at = open_page(PAGE)
    assert at.radio(key="ann_mode").value == "heuristic"
    assert any("No LLM is configured" in i.value for i in at.info)
    at.multiselect(key="ann_groups").set_value(["Code"])
    at.run()
    at.button(key="ann_start").click().run()
    with Store(store_path) as s:
        (job,) = jobs.list_jobs(s)
        assert job.kind == "heuristic" and job.params == {"dataset": "demo-synthetic", "scenarios": ["Code"]}
        final = wait_done(s, job.id)
        code = len(jobs.select_samples(s, {"dataset": "demo-synthetic", "scenarios": ["Code"]}))
        assert code == demo.N_PER_GROUP and final.done == code
        assert s.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = 'heuristic:v1'") == code


def wait_done(store, job_id, at=None, timeout=180):
    """The job once finished, its row polled every 0.05 s; ``at``'s page is run again every 0.3 s meanwhile
    (the page polls the job row on every run) and must raise nothing."""
    deadline = time.time() + timeout
    rerun_at = time.time()
    while time.time() < deadline:
        job = jobs.get(store, job_id)
        if job.status in jobs.FINISHED:
            return job
        if at is not None and time.time() >= rerun_at:
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            rerun_at = time.time() + 0.3
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {jobs.get(store, job_id).status} after {timeout} s")


def test_start_an_annotation_job_against_the_loopback_server_and_watch_it_finish(store_path, monkeypatch):
    with LoopbackServer(latency=0.3) as server:
        monkeypatch.setenv("PREFDISSECT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "loopback-1")
        monkeypatch.setenv("PREFDISSECT_LLM_TIMEOUT", "7200")
        at = open_page(PAGE)
        assert at.text_input(key="ann_base_url").value == server.url
        assert at.text_input(key="ann_model").value == "loopback-1"
        at.multiselect(key="ann_groups").set_value(["Code"])
        at.number_input(key="ann_limit").set_value(6)
        at.number_input(key="ann_concurrency").set_value(4)
        assert at.number_input(key="ann_timeout").value == 7200  # the deployment's own, shown as it is
        at.number_input(key="ann_timeout").set_value(300)
        at.run()
        assert metrics(at)["Samples"] == "6"
        at.button(key="ann_start").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("started (worker pid" in plain(s.value) for s in at.success)
        with Store(store_path) as s:
            (job,) = jobs.list_jobs(s)
        assert job.kind == "annotate" and job.total == 6
        assert job.params["llm"]["base_url"] == server.url and "api_key" not in job.params["llm"]
        assert job.params["llm"]["timeout_s"] == 300  # the job's own, read by its worker over its environment
        assert at.selectbox(key="annotate_watch_pick").value == job.id

        # a second click while it is live starts no second worker
        at.button(key="ann_start").click().run()
        assert any("no second worker" in plain(i.value) for i in at.info), [i.value for i in at.info]

        # a reload or a second browser (a new session) follows the same job from the store
        other = open_page(PAGE)
        assert other.selectbox(key="annotate_watch_pick").value == job.id
        server.set_latency(0.02)  # slow answers only while the checks above need the job live

        with Store(store_path) as s:
            final = wait_done(s, job.id, at)
            paid = s.scalar("SELECT COUNT(*) FROM annotations WHERE job_id = ? AND status = 'ok' AND reused = 0",
                            [job.id])
            spent = s.scalar("SELECT SUM(cost) FROM annotations WHERE job_id = ?", [job.id])
            n_feat = s.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                              [annotate.feature_source("loopback-1", False)])
            assert jobs.runs(s, job.id) == []  # one run: the second click did not start one
        assert final.status == "done" and final.done == 6 and final.failed == 0
        assert server.stats.completions == paid  # every answer served was stored once
        assert n_feat == 6
    at.run()
    assert not at.exception
    m = metrics(at)
    assert (m["Done"], m["Failed"], m["Total"]) == ("6", "0", "6")
    assert m["Spend / budget"] == f"${round(spent, 8):.4f}"  # the job records its spend to 8 places
    # the job's message says what was done (issue 17): counts, time, requests, spend, not a bare "finished"
    assert any(t.value.startswith("finished: 6 of 6 samples annotated in ") and "requests sent" in t.value
               and "spent $" in t.value for t in at.text), [t.value for t in at.text]
    history = next(df.value for df in at.dataframe if "runs" in df.value.columns)
    row = history.set_index("id").loc[job.id]
    assert (row["status"], row["done"], row["runs"]) == ("done", 6, 1)
    everything = sent(at) + jobs.log_tail(store_path, job.id, lines=1000)
    assert FAKE_KEY not in everything
    with Store(store_path) as s:
        assert FAKE_KEY not in json.dumps(s.rows("SELECT * FROM jobs")) + json.dumps(
            s.rows("SELECT params, raw, error FROM annotations"))


def test_fit_tab_starts_a_fit_job_that_writes_profiles(store_path):
    at = open_page(PAGE)
    assert at.selectbox(key="fit_source").value == "demo"
    at.multiselect(key="fit_judges").set_value(["demo-crowd"])
    at.multiselect(key="fit_scopes").set_value(["Code", "Advice"])
    at.run()
    at.button(key="fit_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with Store(store_path) as s:
        (job,) = jobs.list_jobs(s)
        assert job.kind == "fit" and job.params == {"dataset": "demo-synthetic", "features": "demo",
                                                     "judges": ["demo-crowd"], "scopes": ["Advice", "Code"]}
        final = wait_done(s, job.id, at)
        rows = s.profiles(dataset="demo-synthetic", judges=["demo-crowd"], method="fast")
    assert final.status == "done", final.error
    assert sorted(r["scope"] for r in rows) == ["Advice", "Code"]
    at.run()
    assert any("2 profiles fitted" in t.value for t in at.text)


def test_cancel_and_resume_from_the_job_panel(store_path, monkeypatch):
    with LoopbackServer() as server:
        server.hold(after=2)  # two answers, then the job waits on the server: it is running when cancelled
        monkeypatch.setenv("PREFDISSECT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "loopback-1")
        at = open_page(PAGE)
        at.multiselect(key="ann_groups").set_value(["Advice"])
        at.number_input(key="ann_limit").set_value(10)
        at.number_input(key="ann_concurrency").set_value(1)
        at.run()
        at.button(key="ann_start").click().run()
        with Store(store_path) as s:
            (job,) = jobs.list_jobs(s)
            deadline = time.time() + 60
            while jobs.get(s, job.id).status != "running" or not server.stats.completions:
                assert time.time() < deadline, "the worker never started"
                time.sleep(0.1)
            at.run()
            at.button(key=f"annotate_watch_cancel_{job.id}").click().run()
            assert not at.exception, [e.value for e in at.exception]
            assert jobs.get(s, job.id).status == "cancelled"
            stopped = wait_done(s, job.id)
            deadline = time.time() + 60
            while jobs.get(s, job.id).stopping:  # requests in flight are closed within a second or two
                assert time.time() < deadline
                time.sleep(0.1)
            stopped = jobs.get(s, job.id)
            # the message now also says what was done and spent (issue 17): "cancelled by user; 3 of 10 samples ..."
            assert stopped.message.startswith("cancelled by user; ") and stopped.done < 10
            assert stopped.message.endswith("resume to continue") and " samples annotated in " in stopped.message
            paid_before = {r["request_key"] for r in s.rows(
                "SELECT request_key FROM annotations WHERE job_id = ? AND status = 'ok' AND reused = 0", [job.id])}
            # the server's hold kept the job running until the cancel (it was 0.4 s answers, ~8 s of this test)
            server.release()
            at.run()
            assert at.button(key=f"annotate_watch_resume_{job.id}").disabled is False
            at.button(key=f"annotate_watch_resume_{job.id}").click().run()
            assert not at.exception, [e.value for e in at.exception]
            assert any("resumed" in plain(m.value) for m in at.success)
            final = wait_done(s, job.id, at)
            assert final.status == "done" and final.done == 10
            assert [r["status"] for r in jobs.runs(s, job.id)] == ["cancelled"]
            paid = s.scalar("SELECT COUNT(*) FROM annotations WHERE job_id = ? AND status = 'ok' AND reused = 0",
                            [job.id])
        # nothing paid twice; an answer the server computed for a request closed by the cancel is not stored
        assert server.stats.completions - server.stats.abandoned == paid and len(paid_before) < paid
    at.run()
    earlier = next(df.value for df in at.dataframe if "run" in df.value.columns and "status" in df.value.columns)
    assert list(earlier["status"]) == ["cancelled"]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False  # reaped and gone


def test_a_finished_job_reads_right_and_points_to_the_next_step(store_path, monkeypatch):
    """Issue 17: a finished offline job offers "Run again" (not "Resume"), shows its duration rather than a
    $0 spend, has start, end and duration in History, a next step (fit on its features) that opens the Fit
    tab, and its worker is reaped rather than left a zombie."""
    monkeypatch.delenv("PREFDISSECT_LLM_API_KEY")
    at = open_page(PAGE)
    at.multiselect(key="ann_groups").set_value(["Code"])
    at.run()
    at.button(key="ann_start").click().run()
    with Store(store_path) as s:
        (job,) = jobs.list_jobs(s)
        final = wait_done(s, job.id)
    assert final.status == "done"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    m = metrics(at)
    assert "Spend / budget" not in m and m["Duration"].endswith(" s")
    again = at.button(key=f"annotate_watch_resume_{job.id}")
    assert again.label == "Run again"
    history = next(df.value for df in at.dataframe if "duration" in df.value.columns)
    row = history.set_index("id").loc[job.id]
    assert row["started"] and row["finished"] and row["duration"].endswith(" s")
    assert row["cost"] is None or row["cost"] != row["cost"]  # an offline job spends nothing: no cost shown
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", row["started"])  # a time people read
    # the job's message and its worker log say what was done: counts and time (issue 17: "job 2 done")
    n = demo.N_PER_GROUP
    assert any(t.value.startswith(f"finished: {n:,} of {n:,} samples rated by the offline heuristics in ")
               for t in at.text), [t.value for t in at.text]
    log = jobs.log_tail(store_path, job.id, lines=50)
    assert f"{n:,} of {n:,} samples done, 0 failed" in log and re.search(r"ended \S+ \(\d+ s\)", log), log
    assert log.splitlines()[-1] in sent(at)  # the panel's "Worker log" shows it
    deadline = time.time() + 10
    while _zombie(final.worker_pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _zombie(final.worker_pid), f"worker {final.worker_pid} left a zombie"
    at.button(key=f"annotate_watch_next_{job.id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["annotate_tab"] == "Fit profiles"
    assert at.selectbox(key="fit_dataset").value == "demo-synthetic"


def test_a_remote_model_with_no_known_price_is_a_loud_warning(store_path, monkeypatch):
    monkeypatch.delenv("PREFDISSECT_LLM_PRICE_INPUT")
    monkeypatch.delenv("PREFDISSECT_LLM_PRICE_OUTPUT")
    monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "acme-unlisted-model-7")  # in no price table
    at = open_page(PAGE)
    assert metrics(at)["Estimated cost"] == "unknown"
    loud = [e.value for e in at.error if "No price is known" in e.value]
    assert loud and "acme" in loud[0]
    # a model the price table knows: a figure, no warning
    monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "gpt-4o-mini")
    known = open_page(PAGE)
    assert metrics(known)["Estimated cost"].startswith("$") and not [e for e in known.error if "No price" in e.value]
    # a local server (no bill) is not warned about
    monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "acme-unlisted-model-7")
    monkeypatch.setenv("PREFDISSECT_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    local = open_page(PAGE)
    assert not [e.value for e in local.error if "No price is known" in e.value]


def test_batch_mode_from_the_page_runs_a_batch_job_and_an_unknown_price_is_shown_as_unknown(store_path, monkeypatch):
    monkeypatch.delenv("PREFDISSECT_LLM_PRICE_INPUT")
    monkeypatch.delenv("PREFDISSECT_LLM_PRICE_OUTPUT")
    with LoopbackServer() as server:
        monkeypatch.setenv("PREFDISSECT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("PREFDISSECT_LLM_MODEL", "loopback-1")
        at = open_page(PAGE)
        # a self-hosted model with no price given: unknown, never $0
        assert metrics(at)["Estimated cost"] == "unknown"
        assert any("price unknown" in c.value for c in at.caption)
        at.multiselect(key="ann_groups").set_value(["Code"])
        at.number_input(key="ann_limit").set_value(3)
        at.toggle(key="ann_batch").set_value(True)
        at.run()
        at.button(key="ann_start").click().run()
        assert not at.exception, [e.value for e in at.exception]
        with Store(store_path) as s:
            (job,) = jobs.list_jobs(s)
            assert job.params["llm"]["batch"] is True
            final = wait_done(s, job.id)
            batches = s.llm_batches(job_id=job.id)
            n_feat = s.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                              [annotate.feature_source("loopback-1", False)])
        assert final.status == "done" and final.done == 3, final.message
        assert len(batches) >= 1 and all(b["status"] == "ingested" for b in batches)
        assert n_feat == 3 and server.stats.chat_requests == 0  # every answer came through batches
    at.run()
    assert not at.exception
    assert metrics(at)["Spend / budget"] == "unknown"  # recorded as 0 for want of a price: not a figure
