"""Benchmark: how often the manipulation experiment's measurement lands in the prediction's interval.

Workload: the loopback server plays a model under test that shows the asked-for attributes at a set
success rate (``core.loopback.manipulable_model``) and a judge whose verdicts come from a known profile
over the offline heuristics' features (``core.loopback.profile_judge``); ``core.experiment`` runs the
default experiment (control, liked = top attributes shown, disliked = bottom ones shown) on --queries
queries for each (success rate, seed) of the grid, through the real openai client, and the known
profile predicts. Reported: the share of manipulated arms whose measured shift against the control lies
in the predictive 94% interval of the predicted shift (the issue asks >= 90%), the same for each arm's
win rate, the mean measured and predicted shifts, and the seconds per experiment.

    .venv/bin/python benchmarks/bench_experiment.py [--queries 40] [--seeds 10] [--rates 0.3 0.6 0.9]

Prints a table and writes benchmarks/results/experiment.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import experiment  # noqa: E402
from core.store import Store  # noqa: E402
from tests.test_experiment import _queries, _save_known_profile, _server, _spec  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.3, 0.6, 0.9])
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    rows = []
    for r, rate in enumerate(args.rates):
        for seed in range(100 + 1000 * r, 100 + 1000 * r + args.seeds):  # independent controls across rates
            t0 = time.perf_counter()
            with Store(tmp / f"{rate}-{seed}.db") as store, _server(rate, seed) as server:
                _save_known_profile(store)
                exp_id = experiment.create(store, _spec(server, _queries(tmp, args.queries, seed), seed=seed))
                out = experiment.run(store, exp_id)
                result = store.experiment(exp_id)["result"]
            secs = time.perf_counter() - t0
            for a in result["arms"]:
                p = a["predicted"]
                row = {"rate": rate, "seed": seed, "arm": a["arm"], "status": out.status, "seconds": secs,
                       "rate_inside": p["pred_lo"] <= a["measured"]["rate"] <= p["pred_hi"]}
                if a.get("shift"):
                    ps = a["predicted_shift"]
                    row.update(shift=a["shift"]["mean"], predicted_shift=ps["mean"],
                               shift_inside=ps["pred_lo"] <= a["shift"]["mean"] <= ps["pred_hi"])
                rows.append(row)
    shifts = [r for r in rows if "shift" in r]
    summary = {
        "experiments": len(args.rates) * args.seeds, "queries": args.queries,
        "shift_coverage": sum(r["shift_inside"] for r in shifts) / len(shifts), "shift_checks": len(shifts),
        "rate_coverage": sum(r["rate_inside"] for r in rows) / len(rows), "rate_checks": len(rows),
        "seconds_per_experiment": sum(r["seconds"] for r in rows if r["arm"] == "control") / (len(args.rates) * args.seeds),
        "by_rate_and_arm": {f"{rate} {arm}": {
            "measured_shift": sum(r["shift"] for r in shifts if r["rate"] == rate and r["arm"] == arm) / args.seeds,
            "predicted_shift": sum(r["predicted_shift"] for r in shifts if r["rate"] == rate and r["arm"] == arm)
            / args.seeds} for rate in args.rates for arm in ("liked", "disliked")},
    }
    print(f"{summary['experiments']} experiments x {args.queries} queries: measured shift inside the predictive 94% "
          f"interval in {summary['shift_coverage']:.1%} of {len(shifts)} arms; arm win rates inside theirs in "
          f"{summary['rate_coverage']:.1%} of {len(rows)}; {summary['seconds_per_experiment']:.1f} s per experiment")
    for k, v in summary["by_rate_and_arm"].items():
        print(f"  rate {k:<14} measured shift {v['measured_shift']:+.3f}   predicted {v['predicted_shift']:+.3f}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "experiment.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
