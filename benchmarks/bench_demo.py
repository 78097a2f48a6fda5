"""The built-in demo: how long it takes to build (its data, then the fit on the fast path; the default demo's
data is copied from its prebuilt file, as on a first start, unless --generate) and what it shows: agreement between judges (with kappa), first-slot rates, tie rates, and each scope's
held-out accuracy beside its best baseline.

    .venv/bin/python benchmarks/bench_demo.py [--per-group N] [--generate] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-group", type=int, default=None)
    ap.add_argument("--generate", action="store_true", help="generate the default demo instead of copying it prebuilt")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    t0, c0 = time.perf_counter(), time.process_time()
    from core import bias, demo, fit, judges
    from core.profile import best_baseline
    from core.store import Store

    n = args.per_group or demo.N_PER_GROUP
    out: dict = {"per_group": n, "import_s": round(time.perf_counter() - t0, 2)}
    with tempfile.TemporaryDirectory() as d, Store(Path(d) / "demo.db") as store:
        t1, c1 = time.perf_counter(), time.process_time()
        heard: list[str] = []
        demo.build_demo(store, n_per_group=n, prebuilt=not args.generate, on_progress=lambda s, *_: heard.append(s))
        out["data"] = "prebuilt copy" if any("prebuilt" in s for s in heard) else "generated"
        out["build_s"] = round(time.perf_counter() - t1, 2)
        out["build_cpu_s"] = round(time.process_time() - c1, 2)
        out["agreement"] = {f"{a.judge_a} ~ {a.judge_b}": {"rate": round(a.rate, 3), "chance": round(a.chance, 3),
                                                             "kappa": round(a.kappa[0], 3)}
                            for a in judges.agreement(store, demo.DEMO_DATASET)}
        out["judges"] = {}
        for name in demo.JUDGES:
            rows = store.conn.execute(
                "SELECT AVG(choice = 'tie'), SUM(verdict_ab IS NOT NULL AND verdict_ba IS NOT NULL),"
                " SUM((verdict_ab = 'A') + (verdict_ba = 'B')), SUM(verdict_ab = verdict_ba) FROM labels WHERE judge = ?",
                (name,)).fetchone()
            both = rows[1] or 0
            out["judges"][name] = {"tie_rate": round(rows[0], 3),
                                   "first_slot_rate": round(rows[2] / (2 * both), 3) if both else None,
                                   "order_consistency": round(rows[3] / both, 3) if both else None}
        scopes = {}
        for p in store.profiles(dataset=demo.DEMO_DATASET, feature_source=demo.FEATURE_SOURCE, method="fast"):
            prov = p.get("provenance") or {}
            best = best_baseline(prov.get("baselines"))
            scopes[f"{p['scope']} / {p['judge']}"] = (p.get("accuracy"), best)
        out["profiles"] = len(scopes)
        out["beat_best_baseline"] = sum(1 for a, b in scopes.values() if a is not None and b and a > b[1])
        out["not_beating"] = {k: {"accuracy": round(a, 3) if a is not None else None, "best": b}
                              for k, (a, b) in sorted(scopes.items()) if not (a is not None and b and a > b[1])}
        out["scopes"] = {k: [round(a, 3) if a is not None else None, b[0] if b else None, round(b[1], 3) if b else None]
                         for k, (a, b) in sorted(scopes.items())}
    out["total_s"] = round(time.perf_counter() - t0, 2)
    out["total_cpu_s"] = round(time.process_time() - c0, 2)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
