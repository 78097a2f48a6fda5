"""Benchmark: one injection simulation over 5,000 pairs and 4,000 posterior draws (target < 300 ms).

Workload: 5,000 pairs of comparison features drawn like real ones (``synthetic.simulate_features``) and
4,000 draws of a judge's weights (the demo crowd's true weights plus posterior-like scatter, sd 0.1),
float32 as stored. "One simulation" is everything ``core.simulate.simulate`` computes for one judge
once the pairs are in memory: the prediction before, the exact expectation after over every
combination of the changes taking effect, the Shapley contributions, the 94% credible intervals and
the predictive intervals. The main case injects two attributes and suppresses one, all at fractional
success rates (2^3 = 8 subset evaluations); the scaling rows show 1 and 6 changes, the what-to-inject
ranking (29 attributes alone) and, unless --no-store, the same simulation end to end through a
SQLite store holding the 5,000 pairs and the 4,000-draw profile: with every read (the dataset's
features dominate), and with the pairs already loaded, as the page has them cached when a slider moves
(the profile's draws and the judge's labels are still read).

Each figure is the median of --repeats runs (default 7) after one warm-up; peak memory is the
simulation's own peak allocation (tracemalloc; numpy reports its buffers there) and the process's
peak RSS.

    .venv/bin/python benchmarks/bench_simulate.py [--repeats 7] [--pairs 5000] [--draws 4000] [--no-store]

Prints a table and writes benchmarks/results/simulate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import catalogue, demo, synthetic  # noqa: E402
from core import simulate as sim  # noqa: E402

TARGET_MS = 300.0
KEYS = catalogue.attribute_keys()
MAIN = {"inject": {"lengthy": 0.5, "well_formatted": 0.8}, "suppress": {"admits_limits": 0.3}}


def workload(pairs: int, draws: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = synthetic.simulate_features(pairs, rng).astype(np.float32)
    w = np.array([demo.true_weights("demo-crowd", "Advice")[k] for k in KEYS])
    W = (w + rng.normal(0.0, 0.1, (draws, len(KEYS)))).astype(np.float32)
    return X, W


def one_simulation(X, W, inject, suppress):
    changes = sim.changes_from(inject, suppress)
    res = sim.simulate_arrays(X, W, [KEYS.index(c.attribute) for c in changes], [c.target for c in changes],
                              [c.rate for c in changes])
    return {
        "before": sim.Estimate.from_draws(res.before, var=res.var_before),
        "after": sim.Estimate.from_draws(res.after, var=res.var_after),
        "change": sim.Estimate.from_draws(res.after - res.before),
        "contributions": [sim.Estimate.from_draws(c) for c in res.contributions],
    }


def timed(fn, repeats: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
            "max_ms": 1000 * max(times), "repeats": repeats}


def peak_alloc_mb(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def build_store(path: Path, X: np.ndarray, W: np.ndarray, seed: int = 0):
    """A store with the workload's pairs (two models, alternating sides), labels and a 4,000-draw profile."""
    from core.records import Dataset, Feature, ImportBatch, Judge, Label, Sample
    from core.store import Store

    rng = np.random.default_rng(seed)
    store = Store(path)
    batch = ImportBatch(dataset=Dataset("bench", synthetic=True), judges=[Judge("bench-judge", "synthetic")])
    p = 1.0 / (1.0 + np.exp(-(X.astype(float) @ W.mean(axis=0))))
    for i in range(X.shape[0]):
        m_is_a = i % 2 == 0
        s = Sample(dataset="bench", query=f"q{i}", response_a=f"a{i}", response_b=f"b{i}",
                   model_a="model-m" if m_is_a else "model-o", model_b="model-o" if m_is_a else "model-m")
        batch.samples.append(s)
        batch.features += [Feature(s.id, "bench", k, int(X[i, j])) for j, k in enumerate(KEYS)]
        batch.labels.append(Label(s.id, "bench-judge", "A" if rng.random() < p[i] else "B"))
    store.write_batch(batch)
    store.save_profile({"dataset": "bench", "scope": "all", "judge": "bench-judge", "feature_source": "bench",
                        "method": "fast", "attributes": KEYS, "mean": W.mean(axis=0).tolist(), "n": X.shape[0],
                        "draws": np.ascontiguousarray(W, dtype=np.float32).tobytes()})
    return store


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--no-store", action="store_true", help="skip the end-to-end run through a SQLite store")
    args = ap.parse_args(argv)

    X, W = workload(args.pairs, args.draws)
    rows = {}
    main_fn = lambda: one_simulation(X, W, MAIN["inject"], MAIN["suppress"])  # noqa: E731
    rows["main: 2 inject + 1 suppress, fractional rates (8 subsets)"] = timed(main_fn, args.repeats)
    rows["1 inject at 50%"] = timed(lambda: one_simulation(X, W, {"lengthy": 0.5}, {}), args.repeats)
    six = {k: 0.5 for k in ("lengthy", "well_formatted", "clear", "rich_info", "friendly")}
    rows["6 changes at 50% (64 subsets)"] = timed(lambda: one_simulation(X, W, six, {"admits_limits": 0.5}),
                                                  max(3, args.repeats // 2))
    rows["what to inject: 29 attributes alone"] = timed(
        lambda: sim.gains_arrays(X, W, list(range(len(KEYS))), 1), max(3, args.repeats // 2))
    peak = peak_alloc_mb(main_fn)

    if not args.no_store:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            store = build_store(Path(tmp) / "bench.db", X, W)
            build_s = time.perf_counter() - t0
            e2e = lambda: sim.simulate(store, "bench", ["bench-judge"], model="model-m", opponent="model-o",  # noqa: E731
                                       inject=MAIN["inject"], suppress=MAIN["suppress"])
            (res,) = e2e()
            assert res.pairs == args.pairs and res.profile["draws"] == args.draws
            rows["end to end through the store (reads included)"] = timed(e2e, max(3, args.repeats // 2))
            loaded = sim.load_pairs(store, "bench", "bench", "all")
            moved = lambda: sim.simulate(store, "bench", ["bench-judge"], model="model-m", opponent="model-o",  # noqa: E731
                                         inject=MAIN["inject"], suppress=MAIN["suppress"], pairs=loaded)
            rows["through the store, pairs loaded (a slider move on the page)"] = timed(moved, args.repeats)
            store.close()
    out = {
        "pairs": args.pairs, "draws": args.draws, "target_ms": TARGET_MS,
        "main_median_ms": rows["main: 2 inject + 1 suppress, fractional rates (8 subsets)"]["median_ms"],
        "peak_alloc_mb": peak, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rows": rows, "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg(),
                                  "python": platform.python_version(), "numpy": np.__version__},
    }
    if not args.no_store:
        out["store_build_s"] = build_s
    print(f"{args.pairs:,} pairs x {args.draws:,} draws (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    for name, r in rows.items():
        print(f"  {name:<58} median {r['median_ms']:7.1f} ms  (min {r['min_ms']:.1f}, max {r['max_ms']:.1f})")
    verdict = "meets" if out["main_median_ms"] < TARGET_MS else "MISSES"
    print(f"main case: {out['main_median_ms']:.1f} ms median, {verdict} the {TARGET_MS:.0f} ms target; "
          f"peak allocation {peak:.0f} MB, process peak RSS {out['peak_rss_mb']:.0f} MB")
    dest = ROOT / "benchmarks" / "results" / "simulate.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(f"written to {dest.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
