"""Benchmark: batch mode at scale, and what the paper's annotation costs at batch prices.

1. About 20,000 annotation requests (demo samples with no scenario and no reference, so every step
   runs: query analysis, scenario, reference and ratings in round 1; conditional ratings and error
   detection in round 2) planned, written as Batch-API JSONL, uploaded and submitted to the loopback
   server's batch endpoints (its own process), polled, ingested into the request store and resolved
   into features. Reported: wall time, the server's own processing time (answering the lines),
   the time beyond it, and the peak memory of the annotating process (targets: < 60 s and < 1 GB
   beyond the server's processing).
2. The cost of annotating the paper's 5,240 pairs: the prompts of the real Auto-J pairs
   (``../shared/data/autoj``: real user queries and LLM answers, like Chatbot Arena's) counted per
   pair, scaled to 5,240, at the price table's standard and batch prices for a few models.

    .venv/bin/python benchmarks/bench_batch.py [--samples 4600] [--poll 0.2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("gpt-4-turbo", "gpt-4o", "gpt-4.1-mini", "gpt-4o-mini")
PAPER_PAIRS = 5240


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "core.loopback", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    return proc, url


def stats(url: str) -> dict:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/loopback/stats") as r:
        return json.load(r)


def run_scale(n_samples: int, poll: float) -> dict:
    from core import annotate, batch, demo
    from core.llm import LLMSettings
    from core.store import Store

    proc, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "store.db")
            demo.build_demo(store, n_per_group=-(-n_samples // 11), fit=False)
            samples = store.samples_for(demo.DEMO_DATASET, limit=n_samples)
            for s in samples:  # every step: drop the demo's scenario and reference
                s["scenario_group"] = None
                s["reference"] = None
            settings = LLMSettings(model="bench", base_url=url, api_key="bench", timeout_s=120, price_input=1.0,
                                   price_output=4.0, batch=True)
            rss0 = _reset_peak()  # the demo's build is not the run: measure the run's own peak
            t, cpu = time.perf_counter(), time.process_time()
            out = batch.run_batch(store, samples, settings, annotate.annotate_sample, {"both_orders": False}, poll_s=poll,
                                  directory=Path(tmp) / "batches")
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            srv = stats(url)
            src = annotate.feature_source(settings.model, False)
            resolved = store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?", [src])
            files = store.rows("SELECT round, requests, bytes FROM llm_batches ORDER BY created_at")
            store.close()
    finally:
        proc.terminate()
        proc.wait(10)
    return {"samples": len(samples), "resolved": resolved, "requests": out.progress.requests,
            "server_lines": srv["batch_lines"], "rounds": out.rounds, "files": files,
            "wall_s": round(wall, 2), "server_processing_s": round(srv["batch_processing_s"], 2),
            "beyond_server_s": round(wall - srv["batch_processing_s"], 2), "client_cpu_s": round(cpu, 2),
            "peak_rss_mb": round(_status_mb("VmHWM"), 1), "rss_before_mb": round(rss0, 1),
            "peak_beyond_start_mb": round(_status_mb("VmHWM") - rss0, 1)}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> float:
    """Reset the process's peak resident memory (Linux: /proc/self/clear_refs), return the current."""
    import gc

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_mb("VmRSS")


def paper_estimate() -> dict:
    from core import annotate
    from core.importers import import_file
    from core.llm import LLMSettings
    from core.store import Store
    from tests.conftest import shared_data_path

    path = shared_data_path() / "autoj" / "testdata_pairwise.jsonl"
    if not path.exists():
        return {"skipped": f"{path} not found"}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.db")
        import_file(store, "autoj", path)
        samples = store.rows("SELECT * FROM samples")
        for s in samples:
            s["reference"] = None  # the paper's pairs have none: a reference answer is generated
            s["scenario_group"] = None
        out: dict = {"proxy": f"{len(samples)} Auto-J pairs (real queries and answers), scaled to {PAPER_PAIRS:,}"}
        for model in MODELS:
            row = {}
            for mode in (False, True):
                est = annotate.estimate(store, samples, LLMSettings(model=model, batch=mode))
                scale = PAPER_PAIRS / len(samples)
                row["batch" if mode else "standard"] = {
                    "usd": None if not est.price_known else round(est.cost * scale, 2),
                    "requests": int(est.requests * scale), "input_tokens": int(est.input_tokens * scale),
                    "output_tokens": int(est.output_tokens * scale), "price": est.price_source}
            out[model] = row
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=4600, help="samples (about 4.4 requests each: the demo repeats queries)")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between polls")
    ap.add_argument("--skip-scale", action="store_true")
    args = ap.parse_args()
    if not args.skip_scale:
        print(json.dumps({"scale": run_scale(args.samples, args.poll)}, indent=2), flush=True)
    print(json.dumps({"paper_5240_pairs": paper_estimate()}, indent=2))


if __name__ == "__main__":
    main()
