"""Benchmark: annotation and judge collection against a real llama.cpp server, at default settings.

Starts llama-cpp-python's server with the Gemma 3 270M GGUF (tests/realserverkit.py; needs
requirements-realserver.txt), imports PandaLM's test set from ../shared/data, then:

- annotates the first --samples pairs (one order, every step, default settings) and reports the share
  of requests that parse (stored as answered; and answered at the first attempt), the share of samples
  that finish every step (their features stored), and the server's busy share during the run: the
  seconds llama.cpp spent computing answers (its own per-answer timings in its verbose log) over the
  run's wall time (target >= 90%: the tool keeps a one-slot server fed);
- collects a judge's labels on the first --judge-samples pairs in both orders and reports the share of
  labels stored and of answers whose verdict came from log-probabilities.

Targets (issue 14): >= 90% of requests parse, >= 80% of samples finish, busy share >= 90%.
A 270M base model rates badly: this measures our protocol handling, not its judgement.

    .venv/bin/python benchmarks/bench_realserver.py [--samples 3] [--judge-samples 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import realserverkit  # noqa: E402
from tests.conftest import shared_data_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=3, help="pairs to annotate (default 3)")
    ap.add_argument("--judge-samples", type=int, default=10, help="pairs to judge in both orders (default 10)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    why = realserverkit.missing()
    if why:
        print(why, file=sys.stderr)
        return 2
    data = shared_data_path() / "pandalm" / "testset-v1.json"
    if not data.exists():
        print(f"PandaLM's test set not found at {data}", file=sys.stderr)
        return 2

    from core import annotate, judges, paidwork
    from core.importers import import_file
    from core.llm import LLMSettings
    from core.store import Store

    os.environ.setdefault("PREFDISSECT_LLM_API_KEY", "no-key-needed")
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        proc, url = realserverkit.start(work, verbose=True)
        log = work / "llama-server.log"
        try:
            with Store(work / "store.db") as store:
                import_file(store, "pandalm", data)
                samples = store.samples_for("pandalm-test", limit=args.samples)
                settings = LLMSettings.from_env(base_url=url, model=realserverkit.ANNOTATOR)
                t0 = time.perf_counter()
                dialect = paidwork.endpoint_dialect(store, settings)
                probe_s = time.perf_counter() - t0
                mark = len(log.read_text(errors="replace"))
                t0 = time.perf_counter()
                p = annotate.run_annotation(store, samples, settings)
                wall = time.perf_counter() - t0
                busy = realserverkit.busy_seconds(log.read_text(errors="replace")[mark:])
                rows = store.rows("SELECT status, attempts, usage_estimated, error, step FROM annotations"
                                  " WHERE reused = 0")
                ok = [r for r in rows if r["status"] == "ok"]
                finished = store.scalar("SELECT COUNT(DISTINCT sample_id) FROM features WHERE source = ?",
                                        [annotate.feature_source(settings.model, False)])
                out["annotate"] = {
                    "dialect": dialect.as_dict(), "probe_s": round(probe_s, 1), "samples": len(samples),
                    "requests": len(rows), "requests_parsed": len(ok),
                    "parse_share": round(len(ok) / len(rows), 3) if rows else None,
                    "first_attempt_share": round(sum(r["attempts"] == 1 for r in ok) / len(rows), 3) if rows else None,
                    "samples_finished": finished, "sample_share": round(finished / len(samples), 3),
                    "wall_s": round(wall, 1), "server_busy_s": round(busy, 1),
                    "busy_share": round(busy / wall, 3) if wall else None,
                    "timed_out": sum(r["usage_estimated"] for r in rows),
                    "failures": [f"{r['step']}: {(r['error'] or '')[:160]}" for r in rows if r["status"] != "ok"],
                    "stopped": p.stopped,
                }
                jsamples = store.samples_for("pandalm-test", limit=args.judge_samples)
                jsettings = LLMSettings.from_env(base_url=url, model=realserverkit.JUDGE)
                paidwork.endpoint_dialect(store, jsettings)
                mark = len(log.read_text(errors="replace"))
                t0 = time.perf_counter()
                jp = judges.collect_labels(store, jsamples, jsettings, judge="gemma-270m")
                jwall = time.perf_counter() - t0
                jbusy = realserverkit.busy_seconds(log.read_text(errors="replace")[mark:])
                labels = store.labels("pandalm-test", ["gemma-270m"])
                answers = [json.loads(r["parsed"]) for r in store.rows(
                    "SELECT parsed FROM annotations WHERE step = 'judge' AND status = 'ok' AND reused = 0")]
                c = judges.position_consistency(store, "gemma-270m")
                out["judge"] = {
                    "samples": len(jsamples), "labels": len(labels),
                    "label_share": round(len(labels) / len(jsamples), 3),
                    "with_prob": sum(lab["prob_a"] is not None for lab in labels),
                    "answers": len(answers), "from_logprobs": sum(bool(a.get("top_logprobs")) for a in answers),
                    "position_consistency": c.rate, "wall_s": round(jwall, 1),
                    "busy_share": round(jbusy / jwall, 3) if jwall else None, "failed": jp.failed,
                }
        finally:
            realserverkit.stop(proc)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    a, j = out["annotate"], out["judge"]
    print(f"dialect: {a['dialect']['mode']}, system role {'kept' if a['dialect']['system_role'] else 'folded'}, "
          f"slots {a['dialect']['slots']}, probed in {a['probe_s']} s")
    print(f"annotate {a['samples']} samples: {a['requests_parsed']}/{a['requests']} requests parse "
          f"({a['parse_share']:.0%}; {a['first_attempt_share']:.0%} at the first attempt), "
          f"{a['samples_finished']}/{a['samples']} samples finish every step ({a['sample_share']:.0%}), "
          f"server busy {a['server_busy_s']} s of {a['wall_s']} s ({a['busy_share']:.0%}), "
          f"{a['timed_out']} timed out")
    for f in a["failures"]:
        print(f"  failed: {f}")
    print(f"judge {j['samples']} samples, both orders: {j['labels']} labels ({j['label_share']:.0%}), "
          f"{j['with_prob']} with a probability, {j['from_logprobs']}/{j['answers']} answers read from "
          f"log-probabilities, position consistency "
          + (f"{j['position_consistency']:.0%}" if j["position_consistency"] is not None else "-")
          + f", {j['wall_s']} s, server busy {j['busy_share']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
