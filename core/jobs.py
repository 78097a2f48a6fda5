"""Long work as jobs: records in the store, run by a worker process.

Kinds: ``annotate`` (an LLM rates the attributes), ``judge`` (an LLM's labels, in both orders),
``heuristic`` (the offline annotator) and ``fit`` (``core.fit.dissect``: profiles per scope and judge).

Semantics (the dashboard and the CLI share them):

- A job is identified by its kind and its parameters, normalised (``normalize_params``: unset
  values dropped, scenario groups, scopes and judges as sorted lists, fit settings at their
  defaults dropped), so the same request from the page or the command line is one job; submitting
  it twice gives that one job.
- Submitting a job that is queued or running returns it untouched. Submitting a finished one
  (done, failed, cancelled, paused) runs it again: the finished run is archived in ``job_runs``
  (its counts, cost, message, error, times) and the job is queued. ``resume`` does the same by id.
  A rerun sends only the requests that have not succeeded (every answer is already in the store),
  so rerunning after new data pays only for the new samples; a fit refits only changed inputs.
- ``budget`` is per job, across its runs: a run may spend what the earlier runs of the job left.
  ``cost`` on the job row is the job's total spend (from the stored requests); ``done``,
  ``failed`` and ``total`` count the current run.
- A worker heartbeats while it runs; a running job whose worker died (a crash, SIGKILL, a
  redeploy) is stale and can be resumed. ``ensure_worker`` starts a worker only when none is on
  the job (queued: none starting; running: stale), so a second click or a second browser never
  starts a second worker, and ``claim`` lets only one process run a job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from . import config, featureset
from .store import Store, now

KINDS = ("annotate", "judge", "heuristic", "fit", "import", "experiment")
FINISHED = ("done", "failed", "cancelled", "paused")
STALE_AFTER_S = 30.0  # a running job without a heartbeat for this long has lost its worker
HEARTBEAT_S = 1.0
BEAT_EVERY_S = 5.0  # the worker's heartbeat thread, independent of progress
HEURISTIC_CHUNK = 500
ESTIMATE_SAMPLES = 1000  # larger selections: the estimate is computed on this many samples and scaled
#: fit settings at these values are left out of a fit job's parameters (and so of its key)
FIT_DEFAULTS = {"method": "fast", "prior_scale": 0.1, "folds": 5, "seed": 0, "force": False,
                "include_excluded": False, "position": True, "ties": "davidson", "labels": "soft"}


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

    @property
    def active(self) -> bool:
        """Queued, or running with a live worker."""
        return self.status == "queued" or (self.status == "running" and not self.stale)

    @property
    def stopping(self) -> bool:
        """Cancelled while running, and its worker (another process) has not finished winding down:
        the requests in flight finish and are stored first, then the worker writes ``finished_at``.
        Not to be run again until it has."""
        if self.status not in FINISHED or self.finished_at or not self.worker_pid or self.worker_pid == os.getpid():
            return False
        if not self.heartbeat_at or not _alive(self.worker_pid):
            return False
        age = datetime.now(timezone.utc) - datetime.fromisoformat(self.heartbeat_at)
        return age <= timedelta(seconds=STALE_AFTER_S)

    @property
    def state(self) -> str:
        if self.stale:
            return "running (worker lost)"
        return f"{self.status} (worker stopping)" if self.stopping else self.status

    @property
    def spends(self) -> bool:
        """Sends paid requests (annotation, collecting an LLM judge's labels): its cost is worth showing."""
        return self.kind in ("annotate", "judge", "experiment") or bool(self.cost)

    @property
    def duration_s(self) -> float | None:
        """Seconds from its (last) start to its end, or to now while it runs; None before it started."""
        if not self.started_at:
            return None
        start = datetime.fromisoformat(self.started_at)
        end = datetime.fromisoformat(self.finished_at) if self.finished_at else datetime.now(start.tzinfo)
        return max(0.0, (end - start).total_seconds())

    @property
    def spend_text(self) -> str:
        """The job's spend for people: ``$1.2345``, or ``unknown`` when its model has no price
        (a self-hosted model with no price given: its recorded cost of 0 is not a figure)."""
        from .prices import fmt_cost

        known = True
        if self.kind in ("annotate", "judge") and self.params.get("llm"):
            from .llm import LLMSettings

            known = LLMSettings.from_env(**self.params["llm"]).price_known
        return fmt_cost(self.cost, known=known)

    @property
    def unit(self) -> str:
        return "steps" if self.kind == "fit" else "rows" if self.kind == "import" else "samples"

    @property
    def summary(self) -> str:
        """One line: what the job does (no secrets: parameters never hold the key)."""
        p = self.params
        parts = [self.kind, p.get("dataset", "")]
        groups = scenario_groups(p)
        if self.kind == "import":
            return " · ".join(str(x) for x in (self.kind, p.get("dataset", ""), p.get("format"),
                                               Path(str(p.get("path", ""))).name.partition("-")[2]) if x)
        if self.kind == "experiment":
            return f"experiment {p.get('experiment')}"
        if self.kind == "fit":
            parts.append(f"features {p.get('features', '(default)')}")
            parts.append(", ".join(p["judges"]) if p.get("judges") else "every judge")
            parts.append(f"{len(p['scopes'])} scopes" if p.get("scopes") else "every scope")
            parts.append(p.get("method", "fast"))
        else:
            parts.append(", ".join(groups) if groups else "every group")
            if p.get("limit"):
                parts.append(f"first {p['limit']}")
            if self.kind == "judge":
                parts.append(f"as judge {p.get('judge')}")
            if p.get("llm"):
                parts.append(str(p["llm"].get("model")))
            if p.get("both_orders"):
                parts.append("both orders")
        return " · ".join(str(x) for x in parts if x)


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


def normalize_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The canonical parameters of a job: what the same request looks like from any caller.

    Unset values (None, empty lists) are dropped; ``scenario`` (one group, the older form) and
    ``scenarios`` become one sorted ``scenarios`` list; ``scopes`` and ``judges`` are sorted; a
    fit's settings at their defaults are dropped."""
    p = {k: v for k, v in params.items() if v is not None and v != [] and v != ()}
    groups = scenario_groups(p)
    p.pop("scenario", None)
    p.pop("scenarios", None)
    if groups:
        p["scenarios"] = groups
    for k in ("scopes", "judges"):
        if k in p:
            p[k] = sorted(set([p[k]] if isinstance(p[k], str) else p[k]))
    if kind == "fit":
        p = {k: v for k, v in p.items() if not (k in FIT_DEFAULTS and v == FIT_DEFAULTS[k])}
    return p


def scenario_groups(params: dict[str, Any]) -> list[str]:
    """The scenario groups a job covers (empty: all), from ``scenarios`` and/or the older ``scenario``."""
    groups = params.get("scenarios") or []
    if isinstance(groups, str):
        groups = [groups]
    if params.get("scenario"):
        groups = [params["scenario"], *groups]
    return sorted(set(groups))


def select_samples(store: Store, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The samples an annotate, judge or heuristic job covers, in dataset order."""
    groups = scenario_groups(params)
    limit = params.get("limit")
    if len(groups) <= 1:
        return store.samples_for(params["dataset"], scenario=groups[0] if groups else None, limit=limit)
    wanted = set(groups)
    rows = [s for s in store.samples_for(params["dataset"]) if s["scenario_group"] in wanted]
    return rows[: int(limit)] if limit else rows


def estimate(store: Store, kind: str, params: dict[str, Any], settings, *,
             max_samples: int | None = ESTIMATE_SAMPLES) -> tuple[Any, int | None]:
    """The cost estimate of an annotate or judge job before it starts (``core.annotate.estimate``:
    the tokens of the actual prompts x the prices, per step, for requests not answered yet).

    Above ``max_samples`` samples it is computed on that many evenly spaced samples and scaled to
    the whole selection (prompt building dominates, about 0.2 ms a request); returns the
    estimate and the number of samples it was computed on when it was scaled (else None)."""
    from . import annotate, judges

    samples = select_samples(store, params)
    planner = judges.plan_judge_requests if kind == "judge" else annotate.plan_requests
    both = bool(params.get("both_orders", kind == "judge"))
    if not max_samples or len(samples) <= max_samples:
        return annotate.estimate(store, samples, settings, both_orders=both, planner=planner), None
    step = len(samples) / max_samples
    part = [samples[int(i * step)] for i in range(max_samples)]
    est = annotate.estimate(store, part, settings, both_orders=both, planner=planner)
    f = len(samples) / len(part)
    by_step = {k: {kk: (vv * f if kk == "cost" else round(vv * f)) for kk, vv in v.items()} for k, v in est.by_step.items()}
    # scaled, the estimate keeps whether its price is known (an unknown price is shown as unknown, never $0)
    return dataclasses.replace(est, samples=len(samples), requests=round(est.requests * f),
                               cached=round(est.cached * f), input_tokens=round(est.input_tokens * f),
                               output_tokens=round(est.output_tokens * f), cost=est.cost * f, by_step=by_step), len(part)


def _row(r: dict[str, Any]) -> JobStatus:
    r = dict(r)
    r["params"] = json.loads(r["params"] or "{}")
    return JobStatus(**r)


def get(store: Store, job_id: int) -> JobStatus:
    row = store.job_row(job_id)
    if row is None:
        raise ValueError(f"no job {job_id}")
    return _row(row)


def list_jobs(store: Store, limit: int = 50) -> list[JobStatus]:
    return [_row(r) for r in store.job_rows(limit)]


def runs(store: Store, job_id: int) -> list[dict[str, Any]]:
    """The job's earlier runs (archived when it was queued again), oldest first."""
    return store.job_runs(job_id)


def run_counts(store: Store) -> dict[int, int]:
    """Runs per job, the current one included (a job never started counts 0)."""
    return store.job_run_counts()


def activity(store: Store) -> tuple:
    """A cheap fingerprint of job activity (requests stored, job rows), for caches that depend on it.
    Features written by a job move ``Store.version``, which callers combine with this."""
    return store.job_activity()


def failures(store: Store, job_id: int, limit: int = 5) -> list[dict[str, Any]]:
    """The job's latest requests that failed for good (a retried success replaces its failure)."""
    return store.job_failures(job_id, limit)


def spent(store: Store, job_id: int) -> float:
    """What the job's requests cost, over all its runs (each request's cost is stored as it returns)."""
    return store.job_spent(job_id)


def submit(store: Store, kind: str, params: dict[str, Any], *, total: int = 0, budget: float | None = None) -> JobStatus:
    """The job for (kind, params): created queued, or the existing one (never a duplicate).

    An existing job that is queued or running is returned as is (a new budget, if given, is
    kept); a finished one is queued again for a new run, its last run archived (``runs``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; one of {KINDS}")
    norm = normalize_params(kind, params)
    key, legacy = job_key(kind, norm), job_key(kind, params)
    with store.writing():
        row = store.job_by_key(key, legacy)
        if row is None:
            return _row(store.insert_job(key, kind, json.dumps(norm, sort_keys=True), total=total, budget=budget))
        job = _row(row)
        if budget is not None:
            store.update_job(job.id, budget=budget)
        if job.status in FINISHED and not job.stopping:
            _requeue(store, job, total=total or None)
    return get(store, job.id)


def _requeue(store: Store, job: JobStatus, *, total: int | None = None, message: str = "queued again") -> None:
    """Archive the job's last run (if it ran) and queue it (inside a write transaction)."""
    if job.started_at:
        store.archive_job_run(
            job.id, status="lost" if job.stale else job.status, total=job.total, done=job.done, failed=job.failed,
            cost=job.cost, budget=job.budget, message=job.message, error=job.error, worker_pid=job.worker_pid,
            started_at=job.started_at, finished_at=job.finished_at or (job.heartbeat_at if job.stale else None))
    store.requeue_job(job.id, total=total, message=message)


def cancel(store: Store, job_id: int) -> JobStatus:
    """Ask a job to stop: a running worker closes its requests in flight within a second or two
    (an answer not yet received is not stored; a rerun asks it again) and stops (it then writes
    ``finished_at``; until it has, the job is ``stopping``)."""
    store.cancel_job(job_id)
    return get(store, job_id)


def resume(store: Store, job_id: int, *, budget: float | None = None) -> JobStatus:
    """Queue a stopped, failed, paused, finished or orphaned job again for a new run (finished
    work is not redone); ``budget`` replaces the job's budget. A live job, or one whose worker is
    still stopping, is left as it is."""
    with store.writing():
        job = get(store, job_id)
        if budget is not None:
            store.update_job(job_id, budget=budget)
        if (job.status in FINISHED and not job.stopping) or job.stale:
            _requeue(store, job, message="resumed")
    return get(store, job_id)


def claim(store: Store, job_id: int, pid: int | None = None) -> bool:
    """Take a queued (or orphaned) job for this process; False when someone else runs it."""
    job = get(store, job_id)
    if job.status not in ("queued", "running") or (job.status == "running" and not job.stale):
        return False
    return store.claim_job(job_id, pid or os.getpid(), status=job.status, heartbeat_at=job.heartbeat_at)


def _update(store: Store, job_id: int, *, owner: int | None = None, **cols: Any) -> None:
    """Write job columns; with ``owner``, only while that worker still holds the job (a job queued
    again meanwhile belongs to the next run, and a late write of the old one must not land)."""
    store.update_job(job_id, owner=owner, **cols)


class _Cancelled(Exception):
    pass


class _Heartbeat(threading.Thread):
    """Keeps a running job's heartbeat fresh while its work runs, whatever the work reports
    (a long fit batch, stalled requests), on a connection of its own."""

    def __init__(self, path: Path, job_id: int, owner: int | None):
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.path, self.job_id, self.owner = path, job_id, owner
        self.halt = threading.Event()

    def run(self) -> None:
        store = Store(self.path)
        try:
            while not self.halt.wait(BEAT_EVERY_S):
                store.beat_job(self.job_id, self.owner)  # False when busy beyond the timeout: next beat
        finally:
            store.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def run(store: Store, job_id: int, *, on_progress: Callable[[Any], None] | None = None) -> JobStatus:
    """Run a claimed job to its end in this process: the worker and the CLI both come here."""
    job = get(store, job_id)
    owner = job.worker_pid  # set by claim: every write below lands only while this run holds the job

    def update(**cols: Any) -> None:
        _update(store, job_id, owner=owner, **cols)

    beat = _Heartbeat(store.path, job_id, owner)
    beat.start()
    last = [0.0, 0.0]  # last progress write, last cancellation check

    def cancelled() -> bool:
        t = time.monotonic()
        if t - last[1] < HEARTBEAT_S:
            return False
        last[1] = t
        status, pid = store.job_state(job_id)
        return status == "cancelled" or pid != owner  # cancelled, or handed to another worker

    def due(final: bool) -> bool:
        t = time.monotonic()
        if final or t - last[0] >= HEARTBEAT_S:
            last[0] = t
            return True
        return False

    try:
        if job.kind == "fit":
            status, msg, cols = _run_fit(store, job, update, on_progress, due, cancelled)
        elif job.kind == "heuristic":
            status, msg, cols = _run_heuristic(store, job, update, on_progress, due, cancelled)
        elif job.kind == "import":
            status, msg, cols = _run_import(store, job, update, on_progress, due, cancelled)
        elif job.kind == "experiment":
            status, msg, cols = _run_experiment(store, job, update, on_progress, due, cancelled)
        else:
            status, msg, cols = _run_llm(store, job, update, on_progress, due, cancelled)
    except Exception as e:  # recorded on the job; the worker's log has the traceback
        update(status="failed", error=f"{type(e).__name__}: {e}"[:2000], finished_at=now(), heartbeat_at=now(),
               **({"cost": round(spent(store, job_id), 8)} if job.kind in ("annotate", "judge", "experiment") else {}))
        raise
    finally:
        beat.stop()
    update(status=status, message=msg[:2000], finished_at=now(), heartbeat_at=now(), **cols)
    return get(store, job_id)


def _run_llm(store: Store, job: JobStatus, update, on_progress, due, cancelled):
    from . import annotate, judges
    from .llm import LLMSettings

    p = job.params
    t0 = time.monotonic()
    samples = select_samples(store, p)
    before = spent(store, job.id)  # what earlier runs of this job paid: the budget covers them too
    update(total=len(samples), cost=round(before, 8), heartbeat_at=now())

    def progress(pr) -> None:
        if on_progress:
            on_progress(pr)
        if due(pr.done == pr.total):
            msg = f"{pr.requests} requests sent, {pr.cached} answered from the store"
            if pr.request_failures:
                msg += f", {pr.request_failures} failed (last: {pr.errors[-1]})"
            update(done=pr.done, failed=pr.failed, cost=round(before + pr.cost, 8), message=msg[:1000],
                   heartbeat_at=now())

    settings = LLMSettings.from_env(**p.get("llm", {}))
    budget = None if job.budget is None else max(0.0, job.budget - before)
    common = dict(budget=budget, job_id=job.id, on_progress=progress, should_stop=cancelled)
    if settings.batch:  # through a batch runner, in rounds (core/batch.py)
        from . import batch

        work, kw = ((annotate.annotate_sample, {"both_orders": p.get("both_orders", False)}) if job.kind == "annotate"
                    else (judges.judge_sample, {"judge": p["judge"], "both_orders": p.get("both_orders", True)}))
        pr = batch.run_batch(store, samples, settings, work, kw, poll_s=p.get("poll_s", 30.0),
                             on_event=lambda m: update(message=m[:1000], heartbeat_at=now()), **common).progress
    elif job.kind == "annotate":
        pr = annotate.run_annotation(store, samples, settings, both_orders=p.get("both_orders", False), **common)
    else:
        pr = judges.collect_labels(store, samples, settings, judge=p["judge"], both_orders=p.get("both_orders", True),
                                   **common)
    return (*llm_ending(store, job, pr, samples, seconds=time.monotonic() - t0, price_known=settings.price_known),
            dict(done=pr.done, failed=pr.failed, cost=round(spent(store, job.id), 8)))


def llm_ending(store: Store, job: JobStatus, pr, samples: list[dict[str, Any]], *, seconds: float | None = None,
               price_known: bool = True) -> tuple[str, str]:
    """(status, message) that say honestly how an annotate or judge run ended: what was done (samples,
    requests sent and answered from the store), how long it took, what failed and why (on which
    samples), and what it spent.

    A run stopped because its requests all failed for one deterministic reason is "failed", with
    the server's words and what to change (resuming as it is would fail the same way); only
    failures that may pass (timeouts, rate limits, dropped lines) are offered a resume. A judge
    run says how many labels it stored and the position consistency of those labels."""
    from .prices import fmt_cost

    verb = "labelled" if job.kind == "judge" else "annotated"
    took = f" in {duration_text(seconds)}" if seconds is not None else ""
    work = (f"{pr.done - pr.failed:,} of {pr.total or len(samples):,} samples {verb}{took} "
            f"({pr.requests:,} requests sent, {pr.cached:,} answered from the store)")
    spend = f"spent {fmt_cost(spent(store, job.id), known=price_known)}"
    if pr.fatal:
        return "failed", f"stopped early: {pr.fatal}; {work}; {spend}"
    if pr.stopped == "cancelled":
        return "cancelled", f"cancelled by user; {work}; {spend}; resume to continue"
    if pr.stopped:
        return "paused", f"stopped: {pr.stopped}; {work}; {spend}; resume with a larger budget to continue"
    parts = [f"finished: {work}"]
    if job.kind == "judge":
        from . import judges

        c = judges.position_consistency(store, job.params["judge"], [s["id"] for s in samples])
        parts.append(f"{c.labels} labels stored ({c.both_orders} with both orders"
                     + (f", position consistency {c.rate:.1%}" if c.rate is not None else "") + ")")
    if pr.failed:
        why = failure_summary(store, job.id) or (f"last error: {pr.errors[-1][:300]}" if pr.errors else "")
        parts.append(f"{pr.failed:,} sample{'s' if pr.failed != 1 else ''} failed" + (f": {why}" if why else "")
                     + "; resume to retry them")
    if pr.estimated:
        parts.append(f"{pr.estimated} timed-out requests' spend estimated")
    parts.append(spend)
    return "done", "; ".join(parts)


def failure_summary(store: Store, job_id: int, *, reasons: int = 3, samples: int = 5) -> str:
    """The job's requests that failed for good, by reason: ``timeout (3 attempts) on samples s17, s92``;
    "" when none did."""
    rows = store.job_failures(job_id, 10_000)
    if not rows:
        return ""
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        why = " ".join(str(r.get("error") or "no reason given").split())[:200]
        g = by.setdefault(why, {"samples": [], "attempts": 0})
        if r["sample_id"] not in g["samples"]:
            g["samples"].append(r["sample_id"])
        g["attempts"] = max(g["attempts"], int(r.get("attempts") or 0))
    out = []
    for why, g in sorted(by.items(), key=lambda kv: -len(kv[1]["samples"]))[:reasons]:
        ids = sorted(g["samples"], key=str)
        more = f" and {len(ids) - samples:,} more" if len(ids) > samples else ""
        tries = f" ({g['attempts']} attempts)" if g["attempts"] > 1 else ""
        out.append(f"{why}{tries} on sample{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids[:samples]))}{more}")
    if len(by) > reasons:
        out.append(f"{len(by) - reasons} other reasons")
    return "; ".join(out)


def duration_text(seconds: float | None) -> str:
    """'42 s', '3 min 05 s', '2 h 04 min'; 'not started' for None."""
    if seconds is None:
        return "not started"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s" if seconds >= 1 or seconds == 0 else f"{seconds:.1f} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def report(store: Store, job_id: int) -> list[str]:
    """What a job did, for its worker log and the command line: its kind and scope, its state, the
    times (start, end, duration), the counts, its message (what was done, what failed and why), the
    error, the failed requests by reason, and its spend."""
    job = get(store, job_id)
    lines = [f"job {job.id} {job.state}: {job.summary}",
             f"  started {job.started_at or 'not started'}, ended {job.finished_at or 'not yet'}"
             f" ({duration_text(job.duration_s)})",
             f"  {job.done:,} of {job.total:,} {job.unit} done, {job.failed:,} failed"
             + (f"; spent {job.spend_text}" if job.spends else "")]
    if job.message:
        lines.append(f"  {job.message}")
    if job.error:
        lines.append(f"  error: {job.error}")
    why = failure_summary(store, job_id) if job.kind in ("annotate", "judge", "experiment") else ""
    if why and why not in (job.message or ""):
        lines.append(f"  failed requests: {why}")
    return lines


def _run_experiment(store: Store, job: JobStatus, update, on_progress, due, cancelled):
    """The manipulation experiment (``core.experiment.run``): its stages report as the job's message."""
    from . import experiment

    def stage(name: str, done: int, total: int) -> None:
        if on_progress:
            on_progress((name, done, total))
        if due(False):
            update(done=done, total=total, message=f"{name}: {done}/{total}", cost=round(spent(store, job.id), 8),
                   heartbeat_at=now())

    out = experiment.run(store, job.params["experiment"], budget=job.budget, job_id=job.id,
                         spent=lambda: spent(store, job.id), should_stop=cancelled, on_stage=stage)
    return out.status, out.message, dict(done=out.done, total=out.total, cost=round(spent(store, job.id), 8))


def _run_heuristic(store: Store, job: JobStatus, update, on_progress, due, cancelled):
    from . import annotate, paidwork

    t0 = time.monotonic()
    samples = select_samples(store, job.params)
    update(total=len(samples), heartbeat_at=now())
    done = 0
    for i in range(0, len(samples), HEURISTIC_CHUNK):
        if cancelled():
            return ("cancelled", f"cancelled by user after {done:,} of {len(samples):,} samples in "
                    f"{duration_text(time.monotonic() - t0)}; resume to continue", dict(done=done))
        done += annotate.run_heuristics(store, samples[i : i + HEURISTIC_CHUNK])
        pr = paidwork.Progress(total=len(samples), done=done)
        if on_progress:
            on_progress(pr)
        if due(done == len(samples)):
            update(done=done, message=f"{done} of {len(samples)} samples", heartbeat_at=now())
    return ("done", f"finished: {done:,} of {len(samples):,} samples rated by the offline heuristics in "
            f"{duration_text(time.monotonic() - t0)}, no requests, no cost; features in the feature set "
            f"{featureset.HEURISTIC}", dict(done=done, failed=0))


def _run_import(store: Store, job: JobStatus, update, on_progress, due, cancelled):
    """An upload from the dashboard (``importers.run_import``): all of it or nothing."""
    from . import importers

    def progress(stage: str, i: int, n: int) -> None:
        if on_progress:
            on_progress((stage, i, n))
        if due(i >= n - 1) or i == 0:  # the write step and the end always show
            update(done=i, total=n, message=stage[:1000], heartbeat_at=now())

    rep = importers.run_import(store, job.params, progress)
    notes = " ".join(f"Note: {n}." for n in rep.notes())
    msg = (f"dataset {rep.dataset!r}: {rep.samples_added:,} new samples of {rep.samples_seen:,}, "
           f"{rep.labels_written:,} labels from {', '.join(rep.judges) or 'no judge'}. {notes}")
    done = rep.counts.get("rows", 0) + 1
    return "done", msg.strip(), dict(done=done, total=done, failed=0)


def _run_fit(store: Store, job: JobStatus, update, on_progress, due, cancelled):
    from . import fit

    p = job.params
    source = p.get("features") or featureset.default(store, p["dataset"])
    if not source:
        raise ValueError(f"dataset {p['dataset']!r} has no features yet: annotate it first")
    state = {"done": 0, "total": 0}

    def progress(stage: str, i: int, n: int) -> None:
        state.update(done=i, total=n)
        if on_progress:
            on_progress((stage, i, n))
        if due(i == n):
            update(done=i, total=n, message=stage[:1000], heartbeat_at=now())
        if cancelled():
            raise _Cancelled

    settings = {k: p.get(k, v) for k, v in FIT_DEFAULTS.items()}
    try:
        rep = fit.dissect(store, p["dataset"], source, scopes=p.get("scopes"), judges=p.get("judges"),
                          on_progress=progress, **settings)
    except _Cancelled:
        return ("cancelled", f"cancelled by user at step {state['done']} of {state['total']} (batches already fitted "
                "are stored); resume to continue", dict(done=state["done"], total=state["total"]))
    msg = (f"finished: {len(rep.fitted)} profiles fitted, {len(rep.unchanged)} unchanged (inputs as before), "
           f"{len(rep.skipped)} skipped, on features {source} in {duration_text(rep.seconds)}")
    if rep.skipped:
        msg += " (" + "; ".join(f"{scope}: {why}" for scope, why in rep.skipped[:3]) + (" ..." if len(rep.skipped) > 3 else "") + ")"
    return "done", msg, dict(done=state["total"], total=state["total"], failed=0)


def log_dir(store_path: str | Path) -> Path:
    """The folder of a store's job logs: beside the store, named after the store file
    (``store.db`` -> ``store.db.jobs/``), so stores that share a folder never share a log."""
    path = Path(store_path).resolve()
    return path.parent / f"{path.name}.jobs"


def log_path(store_path: str | Path, job_id: int) -> Path:
    return log_dir(store_path) / f"job-{job_id}.log"


def log_tail(store_path: str | Path, job_id: int, lines: int = 20, max_bytes: int = 16_384) -> str:
    """The last lines of the job's worker log ("" when there is none)."""
    path = log_path(store_path, job_id)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _lower_priority(pid: int) -> None:
    """Lower a new worker's CPU priority by ``config.WORKER_NICE`` below ours at once, before it imports
    anything: its start (the interpreter and the imports of a fit, seconds of CPU) otherwise competes at
    full priority with the page that started it. The worker lowers itself too, when started by hand."""
    if not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + config.WORKER_NICE))
    except OSError:  # gone already, or not ours to change: its own os.nice still applies
        pass


def start_worker(store_path: str | Path, job_id: int, *, env: dict[str, str] | None = None) -> int:
    """Start a detached worker process for a job; its output goes to ``<store>.jobs/job-N.log`` beside the store."""
    log_file = log_path(store_path, job_id)
    log_file.parent.mkdir(exist_ok=True)
    log = open(log_file, "ab")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "--store", str(store_path), "worker", str(job_id)],
        cwd=root, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    log.close()
    _lower_priority(proc.pid)
    # reap it when it ends: a finished worker of a long-lived dashboard process otherwise stays a zombie
    # (seen for 6+ minutes after a fit, issue 17), and _alive() would count it as running
    threading.Thread(target=proc.wait, name=f"reap-worker-{job_id}", daemon=True).start()
    return proc.pid


def ensure_worker(store: Store, job_id: int, *, env: dict[str, str] | None = None) -> int | None:
    """Start a worker for the job unless one is on it; the new worker's pid, or None.

    None when the job is finished, running with a live worker, or queued with a worker already
    starting. A stale running job is queued again first. The start is reserved by a
    compare-and-set on the job row, so two callers at once (two clicks, two browsers) start one
    worker; ``claim`` in the worker is the last guard. ``env`` reaches the worker's environment
    only (how a key from Streamlit secrets gets there without being written anywhere)."""
    job = get(store, job_id)
    if job.stale:
        job = resume(store, job_id)
    if job.status != "queued" or (job.worker_pid and _alive(job.worker_pid)):
        return None
    me = os.getpid()
    if not store.swap_job_worker(job_id, job.worker_pid, me):
        return None
    try:
        pid = start_worker(store.path, job_id, env=env)
    except BaseException:
        _update(store, job_id, worker_pid=None)
        raise
    store.swap_job_worker(job_id, me, pid)  # the worker may have claimed it already (it then wrote its own pid)
    return pid


def launch(store: Store, kind: str, params: dict[str, Any], *, total: int = 0, budget: float | None = None,
           env: dict[str, str] | None = None) -> tuple[JobStatus, int | None]:
    """Submit a job (or run a finished one again) and start a worker unless one is on it.
    Returns the job and the new worker's pid (None when none was needed)."""
    job = submit(store, kind, params, total=total, budget=budget)
    pid = ensure_worker(store, job.id, env=env)
    return get(store, job.id), pid
