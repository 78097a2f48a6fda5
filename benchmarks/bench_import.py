"""Benchmark: import 100,000 generated pairs (generic JSONL) with two judges' verdicts in both
presentation orders into a fresh store: the pairs file carries judge 1's verdict in each order
(``label`` with A shown first, ``label_ba`` with B shown first, strengths like "A>>B") and a category;
judge 2 (a reward model: two scores per run) comes from a second file through ``labels``.

Reports wall time of the two commands together and the peak memory of either (target: < 60 s,
< 1 GB), then the latency of full-text search over the result (target for the dashboard: < 200 ms).

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
                "category": f"family-{rng.randint(1, 12)}",
                "label": rng.choice(["A>>B", "A>B", "A=B", "B>A", "B>>A"]),  # judge 1, A shown first
                "label_ba": rng.choice(["A>>B", "A>B", "A=B", "B>A", "B>>A"]),  # judge 1, B shown first
            }
            f.write(json.dumps(row) + "\n")


def generate_scores(path: Path, n: int, seed: int = 1) -> None:
    """Judge 2: a reward model's scores [shown first, shown second] in each order, by the pairs' own ids."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        f.write("sample_id,scores,scores_ba\n")
        for i in range(n):
            a, b = rng.gauss(0, 2), rng.gauss(0, 2)
            f.write(f'pair-{i},"[{a:.3f}, {b:.3f}]","[{b + rng.gauss(0, 0.1):.3f}, {a:.3f}]"\n')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs.jsonl"
        t = time.perf_counter()
        generate(data, args.pairs)
        scores = Path(tmp) / "judge2.csv"
        generate_scores(scores, args.pairs)
        print(f"generated {args.pairs:,} pairs ({data.stat().st_size / 1e6:.0f} MB) and a second judge's scores "
              f"in {time.perf_counter() - t:.1f} s")
        store = Path(tmp) / "store.db"
        steps = [
            ["import", "generic", str(data), "--dataset", "bench", "--judge", "bench-judge-1", "--judge-kind", "llm",
             "--map", "label=label", "--map", "label_ba=label_ba", "--map", "category=category"],
            ["labels", str(scores), "--dataset", "bench", "--judge", "bench-judge-2", "--map", "scores=scores",
             "--map", "scores_ba=scores_ba"],
        ]
        wall, step_times = 0.0, []
        for step in steps:
            t = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "core", "--store", str(store), *step],
                                 cwd=ROOT, capture_output=True, text=True)
            step_times.append(time.perf_counter() - t)
            if res.returncode:
                raise SystemExit(res.stderr)
            print(res.stdout.strip())
        wall = sum(step_times)
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mb, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        print(f"import: {wall:.1f} s wall, {cpu:.1f} s CPU (pairs + judge 1 in both orders {step_times[0]:.1f} s, judge 2's scores "
              f"{step_times[1]:.1f} s), peak RSS {peak_mb:.0f} MB, store {store.stat().st_size / 1e6:.0f} MB")
        from core.store import Store

        with Store(store) as s:
            both = s.scalar("SELECT COUNT(*) FROM labels WHERE verdict_ab IS NOT NULL AND verdict_ba IS NOT NULL")
        if both != 2 * args.pairs:
            raise SystemExit(f"expected {2 * args.pairs:,} labels with both orders, found {both:,}")

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
            {"pairs": args.pairs, "judges": 2, "both_orders": True, "import_s": wall, "import_cpu_s": cpu, "step_s": step_times,
             "peak_rss_mb": peak_mb,
             "search_median_ms": statistics.median(times), "search_max_ms": max(times)}, indent=2))


if __name__ == "__main__":
    main()
