"""Long work as jobs: records in the store, run by a worker process.

A job is identified by its kind and parameters: submitting the same job twice gives one job.
The dashboard starts a worker process (``python -m core worker JOB``) and pages poll the job's
row; the CLI runs the same worker in the foreground. A worker heartbeats while it runs; a job
whose worker died (a crash, SIGKILL, a redeploy) can be resumed, and resuming sends only the
requests that have not succeeded yet, because every answer is already in the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from .store import Store, now

KINDS = ("annotate", "judge", "heuristic")
STALE_AFTER_S = 30.0  # a running job without a heartbeat for this long has lost its worker
HEARTBEAT_S = 1.0


@dataclass
class JobStatus:
    id: int
    key: str
    kind: str
    status: str
    params: dict[str, Any]
    total: int
    done: int
    failed: int
    cost: float
    budget: float | None
    message: str | None
    error: str | None
    worker_pid: int | None
    heartbeat_at: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def stale(self) -> bool:
        """Marked running, but its worker stopped heartbeating or is gone."""
        if self.status != "running":
            return False
        if self.worker_pid and not _alive(self.worker_pid):
            return True
        if not self.heartbeat_at:
            return True
        age = datetime.now(timezone.utc) - datetime.fromisoformat(self.heartbeat_at)
        return age > timedelta(seconds=STALE_AFTER_S)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def job_key(kind: str, params: dict[str, Any]) -> str:
    return kind + ":" + hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:24]


def _row(r: dict[str, Any]) -> JobStatus:
    r = dict(r)
    r["params"] = json.loads(r["params"] or "{}")
    return JobStatus(**r)


def get(store: Store, job_id: int) -> JobStatus:
    rows = store.rows("SELECT * FROM jobs WHERE id = ?", [job_id])
    if not rows:
        raise ValueError(f"no job {job_id}")
    return _row(rows[0])


def list_jobs(store: Store, limit: int = 50) -> list[JobStatus]:
    return [_row(r) for r in store.rows("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", [limit])]


def submit(store: Store, kind: str, params: dict[str, Any], *, total: int = 0, budget: float | None = None) -> JobStatus:
    """The job for (kind, params): created queued, or the existing one (never a duplicate)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; one of {KINDS}")
    key = job_key(kind, params)
    with store.writing():
        store.conn.execute(
            "INSERT INTO jobs (key, kind, status, params, total, budget, created_at) VALUES (?, ?, 'queued', ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET budget = COALESCE(excluded.budget, jobs.budget)",
            (key, kind, json.dumps(params, sort_keys=True), total, budget, now()),
        )
    return _row(store.rows("SELECT * FROM jobs WHERE key = ?", [key])[0])


def cancel(store: Store, job_id: int) -> JobStatus:
    """Ask a job to stop: a running worker finishes its requests in flight, stores them, and stops."""
    with store.writing():
        store.conn.execute(
            "UPDATE jobs SET status = 'cancelled', message = 'cancelled by user', finished_at = ?"
            " WHERE id = ? AND status IN ('queued', 'running', 'paused')", (now(), job_id))
    return get(store, job_id)


def resume(store: Store, job_id: int) -> JobStatus:
    """Queue a stopped, failed, paused or orphaned job again (finished work is not redone)."""
    job = get(store, job_id)
    if job.status in ("cancelled", "paused", "failed", "done") or job.stale:
        with store.writing():
            store.conn.execute(
                "UPDATE jobs SET status = 'queued', error = NULL, finished_at = NULL, worker_pid = NULL WHERE id = ?",
                (job_id,))
    return get(store, job_id)


def claim(store: Store, job_id: int, pid: int | None = None) -> bool:
    """Take a queued (or orphaned) job for this process; False when someone else runs it."""
    job = get(store, job_id)
    if job.status not in ("queued", "running") or (job.status == "running" and not job.stale):
        return False
    with store.writing():
        cur = store.conn.execute(
            "UPDATE jobs SET status = 'running', worker_pid = ?, heartbeat_at = ?, started_at = COALESCE(started_at, ?),"
            " error = NULL WHERE id = ? AND status = ? AND COALESCE(heartbeat_at, '') = COALESCE(?, '')",
            (pid or os.getpid(), now(), now(), job_id, job.status, job.heartbeat_at),
        )
    return cur.rowcount == 1


def _update(store: Store, job_id: int, **cols: Any) -> None:
    sets = ", ".join(f"{k} = ?" for k in cols)
    with store.writing():
        store.conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*cols.values(), job_id])


def run(store: Store, job_id: int, *, on_progress: Callable[[Any], None] | None = None) -> JobStatus:
    """Run a claimed job to its end in this process: the worker and the CLI both come here."""
    from . import annotate, judges
    from .llm import LLMSettings

    job = get(store, job_id)
    p = job.params
    samples = store.samples_for(p["dataset"], scenario=p.get("scenario"), limit=p.get("limit"))
    _update(store, job_id, total=len(samples), heartbeat_at=now())
    last = [0.0, 0.0]  # last progress write, last cancellation check

    def progress(pr) -> None:
        t = time.monotonic()
        if on_progress:
            on_progress(pr)
        if t - last[0] >= HEARTBEAT_S or pr.done == pr.total:
            last[0] = t
            msg = f"{pr.requests} requests sent, {pr.cached} answered from the store"
            if pr.request_failures:
                msg += f", {pr.request_failures} failed (last: {pr.errors[-1]})"
            _update(store, job_id, done=pr.done, failed=pr.failed, cost=round(pr.cost, 8), message=msg[:1000],
                    heartbeat_at=now())

    def should_stop() -> bool:
        t = time.monotonic()
        if t - last[1] < HEARTBEAT_S:
            return False
        last[1] = t
        return store.scalar("SELECT status FROM jobs WHERE id = ?", [job_id]) == "cancelled"

    try:
        if job.kind == "heuristic":
            n = annotate.run_heuristics(store, samples)
            pr = annotate.Progress(total=len(samples), done=n)
        else:
            settings = LLMSettings.from_env(**p.get("llm", {}))
            common = dict(budget=job.budget, job_id=job_id, on_progress=progress, should_stop=should_stop)
            if job.kind == "annotate":
                pr = annotate.run_annotation(store, samples, settings, both_orders=p.get("both_orders", False), **common)
            else:
                pr = judges.collect_labels(store, samples, settings, judge=p["judge"],
                                           both_orders=p.get("both_orders", True), **common)
    except Exception as e:  # recorded on the job; the worker's log has the traceback
        _update(store, job_id, status="failed", error=f"{type(e).__name__}: {e}"[:2000], finished_at=now())
        raise
    if pr.stopped == "cancelled":
        status, msg = "cancelled", "cancelled by user; resume to continue"
    elif pr.stopped:
        status, msg = "paused", f"stopped: {pr.stopped}; resume with a larger budget to continue"
    elif pr.failed:
        status, msg = "done", f"finished with {pr.failed} samples failed; resume to retry them"
    else:
        status, msg = "done", "finished"
    _update(store, job_id, status=status, done=pr.done, failed=pr.failed, cost=round(pr.cost, 8),
            message=msg, finished_at=now(), heartbeat_at=now())
    return get(store, job_id)


def start_worker(store_path: str | Path, job_id: int, *, env: dict[str, str] | None = None) -> int:
    """Start a detached worker process for a job; its output goes to ``jobs/job-N.log`` beside the store."""
    logs = Path(store_path).resolve().parent / "jobs"
    logs.mkdir(exist_ok=True)
    log = open(logs / f"job-{job_id}.log", "ab")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "--store", str(store_path), "worker", str(job_id)],
        cwd=root, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    return proc.pid
