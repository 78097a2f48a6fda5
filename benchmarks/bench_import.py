"""Benchmark: import 100,000 generated pairs (generic JSONL) into a fresh store.

Reports wall time and peak memory of the import process (target: < 60 s, < 1 GB), then the
latency of full-text search over the result (target for the dashboard: < 200 ms).

    .venv/bin/python benchmarks/bench_import.py [--pairs 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = (
    "the model answer response question data water energy river city history science music garden "
    "recipe python function error list table summary budget travel health sleep exercise market price "
    "language translate poem story letter email plan project team meeting schedule weather planet"
).split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    groups = ["Advice", "Code", "Communication", "Creative Writing", "Daily Tasks", "Exam Questions",
              "Functional Writing", "Knowledge-aware", "NLP Tasks", "Unsafe Queries", "Others"]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = {
                "id": f"pair-{i}",
                "query": sentence(rng, rng.randint(8, 40)),
                "response_a": " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(2, 12))),
                "response_b": " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(2, 12))),
                "model_a": f"model-{rng.randint(1, 20)}",
                "model_b": f"model-{rng.randint(1, 20)}",
                "scenario": rng.choice(groups),
                "label": rng.choice("AB"),
            }
            f.write(json.dumps(row) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        t = time.perf_counter()
        generate(data, args.pairs)
        print(f"generated {args.pairs:,} pairs ({data.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        store = Path(tmp) / "store.db"
        t = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "core", "--store", str(store), "import", "generic", str(data),
             "--dataset", "bench", "--judge", "bench-judge"],
            cwd=ROOT, capture_output=True, text=True,
        )
        wall = time.perf_counter() - t
        if res.returncode:
            raise SystemExit(res.stderr)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(res.stdout.strip())
        print(f"import: {wall:.1f} s wall, peak RSS {peak_mb:.0f} MB, store {store.stat().st_size / 1e6:.0f} MB")

        from core.store import Store

        with Store(store) as s:
            times = []
            for q in ["river", "python function", "budget travel plan", "zebra", "water energy city"] * 4:
                t = time.perf_counter()
                s.search(q, limit=50)
                times.append((time.perf_counter() - t) * 1000)
        print(f"search over {args.pairs:,} samples: median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
        out = ROOT / "benchmarks" / "results"
        out.mkdir(parents=True, exist_ok=True)
        (out / "import.json").write_text(json.dumps(
            {"pairs": args.pairs, "import_s": wall, "peak_rss_mb": peak_mb,
             "search_median_ms": statistics.median(times), "search_max_ms": max(times)}, indent=2))


if __name__ == "__main__":
    main()
