"""Benchmark: annotation throughput against the loopback server with 250 ms per call.

For 1, 8, 32 and 128 requests in flight: requests and samples per second through the whole
annotation pipeline (stored answers, features), against the ideal rate in_flight / latency
(target: >= 85% up to 128), and the peak memory of the annotating process (target: < 500 MB).
The server runs in its own process, as a real endpoint would.

Two rates per level, both reported:
- whole run: requests / wall time of ``run_annotation``, which includes starting (a worker process
  above 64 in flight, the HTTP client) and draining (a sample's steps run one after another, so the
  last samples cannot fill the pipe). These fixed costs weigh more the shorter the run (--seconds).
- steady: the rate while the pipe is full, from the server's own completion counter polled every
  50 ms: completions between 10% and 90% of the run's total, over the time between.

    .venv/bin/python benchmarks/bench_annotate.py [--latency 0.25] [--levels 1,8,32,128]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one_level(in_flight: int, latency: float, base_url: str, seconds: float) -> dict:
    from core import annotate, demo, paidwork
    from core.llm import LLMSettings
    from core.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.db")
        demo.build_demo(store, n_per_group=300, fit=False)  # profiles are not needed here
        # enough samples to keep the pipe full for about `seconds` (about 5 requests per sample)
        n = max(4, min(3300, int(in_flight / latency * seconds / 5)))
        samples = store.samples_for(demo.DEMO_DATASET, limit=n)
        for s in samples:  # annotate everything: drop the demo's scenario / reference shortcuts
            s["scenario_group"] = None
            s["reference"] = None
        settings = LLMSettings(model="bench", base_url=base_url, api_key="bench", concurrency=in_flight,
                               timeout_s=30, price_input=1.0, price_output=4.0)
        t, cpu = time.perf_counter(), time.process_time()
        p = annotate.run_annotation(store, samples, settings)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    ideal = in_flight / latency
    return {
        "in_flight": in_flight, "samples": p.done, "failed": p.failed, "requests": p.requests, "wall_s": wall,
        "requests_per_s": p.requests / wall, "samples_per_s": p.done / wall, "ideal_requests_per_s": ideal,
        "efficiency": p.requests / wall / ideal, "client_cpu_share": cpu / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # the worker processes above 64 in flight (the largest child process; none below)
        "worker_peak_rss_mb": (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                               if in_flight > paidwork.IN_FLIGHT_PER_PROCESS else 0),
    }


class CompletionClock:
    """Polls the loopback server's completion counter (GET /loopback/stats) in a thread."""

    def __init__(self, base_url: str, every: float = 0.05):
        self.url = base_url.split("/v1")[0].rstrip("/") + "/loopback/stats"
        self.every = every
        self.points: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            with urllib.request.urlopen(self.url, timeout=5) as r:
                self.points.append((time.perf_counter(), json.loads(r.read())["completions"]))
            time.sleep(self.every)

    def __enter__(self) -> "CompletionClock":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def steady_rate(self, lo: float = 0.1, hi: float = 0.9) -> float:
        """Completions per second between the moments lo and hi of this run's completions were done."""
        start = self.points[0][1]
        total = self.points[-1][1] - start
        t = [p[0] for p in self.points]
        done = [p[1] - start for p in self.points]
        t_lo = next(t[i] for i, d in enumerate(done) if d >= lo * total)
        t_hi = next(t[i] for i, d in enumerate(done) if d >= hi * total)
        n_lo = next(d for d in done if d >= lo * total)
        n_hi = next(d for d in done if d >= hi * total)
        return (n_hi - n_lo) / (t_hi - t_lo)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--levels", default="1,8,32,128")
    ap.add_argument("--seconds", type=float, default=30.0, help="target duration of each level")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--base-url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_level(args.one, args.latency, args.base_url, args.seconds)))
        return
    server = subprocess.Popen(
        [sys.executable, "-m", "core", "loopback", "--", "--port", "0", "--latency", str(args.latency)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        base_url = next(w for w in line.split() if w.startswith("http"))
        rows = []
        for level in [int(x) for x in args.levels.split(",")]:
            with CompletionClock(base_url) as clock:
                out = subprocess.run([sys.executable, __file__, "--one", str(level), "--latency", str(args.latency),
                                      "--base-url", base_url, "--seconds", str(args.seconds)],
                                     capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["steady_requests_per_s"] = clock.steady_rate()
            row["steady_efficiency"] = row["steady_requests_per_s"] / row["ideal_requests_per_s"]
            rows.append(row)
            print(f"{row['in_flight']:>4} in flight: steady {row['steady_requests_per_s']:6.1f} req/s of ideal "
                  f"{row['ideal_requests_per_s']:4.0f} ({row['steady_efficiency']:.0%}); whole run "
                  f"{row['requests_per_s']:6.1f} req/s ({row['efficiency']:.0%}), {row['samples_per_s']:5.1f} samples/s, "
                  f"{row['samples']} samples / {row['requests']} requests in {row['wall_s']:.1f} s, "
                  f"client CPU {row['client_cpu_share']:.0%}, peak RSS {row['peak_rss_mb']:.0f} MB"
                  + (f" (worker process {row['worker_peak_rss_mb']:.0f} MB)" if row["worker_peak_rss_mb"] else ""),
                  flush=True)
    finally:
        server.terminate()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "annotate.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
