"""Benchmark: the paper-scale dissection through the store, as `python -m core fit` runs it.

The dataset of benchmarks/paperstore.py (5,240 pairs in the paper's 11 scenario groups, query-case
flags in the paper's proportions, 29 simulated comparison features, labels of 33 judges drawn from
the paper's published weights for each sample's group); then `fit.dissect` over all 16 scopes and
"all" (561 profiles), and a second run that must find every profile unchanged.

    .venv/bin/python benchmarks/bench_dissect.py
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core import fit  # noqa: E402
from core.store import Store  # noqa: E402
from paperstore import write as build  # noqa: E402  the paper-scale dataset, shared with bench_pages


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.db")
        t = time.perf_counter()
        n = build(store)
        print(f"built {n} pairs x 33 judges in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        rep = fit.dissect(store, "paper-scale", "sim")
        first = time.perf_counter() - t
        t = time.perf_counter()
        again = fit.dissect(store, "paper-scale", "sim")
        second = time.perf_counter() - t
        t = time.perf_counter()
        fit.dissect(store, "paper-scale", "sim", judges=["human"], force=True)
        single = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"dissection through the store: {len(rep.fitted)} profiles in {first:.1f} s "
          f"(all scopes and judges batched in one fit)")
    print(f"second run: {len(again.unchanged)} unchanged, {len(again.fitted)} fitted, {second:.1f} s")
    print(f"one judge across all scopes: {single:.1f} s; peak RSS {peak:.0f} MB")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dissect.json").write_text(json.dumps({"profiles": len(rep.fitted), "seconds": first,
                                                   "rerun_seconds": second, "one_judge_seconds": single,
                                                   "peak_rss_mb": peak}, indent=2))


if __name__ == "__main__":
    main()
