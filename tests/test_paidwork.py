"""The paid-request engine (core/paidwork.py): work passed by reference, in one process or several."""

from __future__ import annotations

from core import paidwork
from core.llm import LLMSettings
from core.loopback import LoopbackServer
from core.store import Store


async def count_work(sample, runner, *, fail_every: int = 0) -> bool:
    """A per-sample coroutine that sends nothing: done unless its number is a multiple of fail_every."""
    n = int(sample["id"].split("-")[1])
    return not (fail_every and n % fail_every == 0)


def _samples(n):
    return [{"id": f"s-{i}", "query": f"query {i % 7}"} for i in range(1, n + 1)]


def test_work_runs_by_reference_in_one_process_and_across_processes(tmp_path):
    settings = dict(model="loopback-1", api_key="test-key", timeout_s=2.0, max_retries=2, concurrency=8)
    with Store(tmp_path / "store.db") as store, LoopbackServer() as server:
        s = LLMSettings(base_url=server.url, **settings)
        one = paidwork.run_work(store, _samples(30), s, count_work, {"fail_every": 10}, processes=1)
        seen = []
        two = paidwork.run_work(store, _samples(30), s, count_work, {"fail_every": 10}, processes=2,
                                on_progress=lambda p: seen.append(p.done))
    # done counts every sample resolved, failed the ones whose work said no
    assert (one.total, one.done, one.failed, one.requests) == (30, 30, 3, 0)
    assert (two.total, two.done, two.failed, two.requests) == (30, 30, 3, 0)  # the child process ran count_work too
    assert seen and seen[-1] == 30


def test_progress_of_shards_adds_up():
    parts = [paidwork.Progress(total=5, done=4, failed=1, requests=9, cached=2, cost=0.5, errors=["a"]),
             paidwork.Progress(total=3, done=3, requests=4, cost=0.25, stopped="budget", errors=["b", "c"])]
    p = paidwork.sum_progress(parts, total=8)
    assert (p.total, p.done, p.failed, p.requests, p.cached, p.cost) == (8, 7, 1, 13, 2, 0.75)
    assert p.stopped == "budget" and p.errors == ["a", "b", "c"]


def test_keys_are_stable_hashes():
    m = [{"role": "user", "content": "x"}]
    other = [{**m[0], "content": "y"}]
    assert paidwork.messages_sha(m) == paidwork.messages_sha([dict(m[0])]) != paidwork.messages_sha(other)
    assert len(paidwork.annotation_id("k", "s")) == 32
    assert paidwork.annotation_id("k", "s") != paidwork.annotation_id("k", "t")
