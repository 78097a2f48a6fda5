"""Benchmark: the paper-scale dissection through the store, as `python -m core fit` runs it.

5,240 pairs in the paper's 11 scenario groups (400 or 820 each) with query-case flags in the
paper's proportions, 29 simulated comparison features, labels of 33 judges drawn from the
paper's published weights for each sample's group; then `fit.dissect` over all 16 scopes and
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_fit import shared_data  # noqa: E402
from core import catalogue, compare, fit  # noqa: E402
from core.records import Dataset, Feature, ImportBatch, Judge, Label, Sample  # noqa: E402
from core.store import Store  # noqa: E402


def build(store: Store, seed: int = 0) -> int:
    gair = shared_data() / "gair"
    idx = json.loads((gair / "query_aware_idxs.json").read_text())
    published = compare.load_published_profiles(gair / "fitted_paras_comparison")
    judges = list(published["Advice"])
    group_of = {i: g for g in catalogue.group_keys() for i in idx[g]}
    cases_of = {i: {c: True for c in catalogue.case_keys() if i in set(idx[c])} for i in range(len(idx["all"]))}
    rng = np.random.default_rng(seed)
    keys = catalogue.attribute_keys()
    batch = ImportBatch(Dataset("paper-scale", source="benchmarks/bench_dissect.py", synthetic=True),
                        judges=[Judge(j, "synthetic") for j in judges])
    for i in range(len(idx["all"])):
        g = group_of[i]
        s = Sample("paper-scale", f"query {i}", f"response a {i}", f"response b {i}", scenario_group=g,
                   cases=cases_of[i])
        batch.samples.append(s)
        x = fit.simulate_features(1, rng)[0]
        batch.features += [Feature(s.id, "sim", k, int(v)) for k, v in zip(keys, x)]
        for j in judges:
            p = 1 / (1 + np.exp(-x @ published[g][j]))
            batch.labels.append(Label(s.id, j, "A" if rng.random() < p else "B", prob_a=float(p)))
    store.write_batch(batch)
    return len(batch.samples)


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
