"""Benchmark: how fast each page renders on a store of the paper's scale, and the app under load.

The store: benchmarks/paperstore.py (5,240 pairs, 33 judges, 561 fitted profiles over 16 groups
and cases plus "all"). A real `streamlit run` serves it; browserless sessions (tests/stsession.py,
the browser's own websocket protocol) time each page run from the request to the end of the
script run, which is what a page waits for before it is complete.

- first: the page's first run with every cache empty (the cache is cleared before each page);
- interaction: a rerun of the same page in the same session (what a widget change costs once
  the data is cached); median of 5;
- load (--load): N sessions (default 20) cycling through every page for S seconds (default 60):
  p50 / p95 page times and errors.

    .venv/bin/python benchmarks/bench_pages.py [--load] [--sessions 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from paperstore import paper_store  # noqa: E402
from tests import browserkit  # noqa: E402
from tests.stsession import Session  # noqa: E402

PAGES = {"overview": "", "samples": "samples", "profiles": "profiles", "similarity": "similarity",
         "judges": "judges", "annotate": "annotate", "simulate": "simulate"}


def page_speed(url: str) -> dict:
    out = {}
    with Session(url, timeout=120) as s:
        s.run("")  # open the session (and the first connection's one-off costs)
        for name, page in PAGES.items():
            s.clear_cache()
            first = s.run(page)
            again = [s.run(page) for _ in range(5)]
            out[name] = {"first_s": round(first.seconds, 3),
                         "interaction_s": round(statistics.median(r.seconds for r in again), 3),
                         "errors": first.exceptions + [e for r in again for e in r.exceptions]
                         + ([first.status] if first.status != "ok" else [])}
            print(f"{name:<11} first {first.seconds:6.2f} s   interaction {out[name]['interaction_s']:6.3f} s"
                  + (f"   ERRORS {out[name]['errors']}" if out[name]["errors"] else ""))
    return out


def load(url: str, sessions: int, seconds: float) -> dict:
    stop = threading.Event()
    times: list[tuple[str, float]] = []
    errors: list = []
    lock = threading.Lock()

    def user(k: int) -> None:
        names = list(PAGES)
        try:
            with Session(url, timeout=120) as s:
                i = k
                while not stop.is_set():
                    name = names[i % len(names)]
                    r = s.run(PAGES[name])
                    with lock:
                        times.append((name, r.seconds))
                        if r.status != "ok" or r.exceptions:
                            errors.append((name, r.status, r.exceptions[:1]))
                    i += 1
        except Exception as e:
            with lock:
                errors.append(("session", type(e).__name__, str(e)[:200]))

    threads = [threading.Thread(target=user, args=(k,)) for k in range(sessions)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t0
    all_t = sorted(s for _, s in times)

    def pct(values, q):
        values = sorted(values)
        return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None

    per_page = {n: {"runs": sum(1 for m, _ in times if m == n), "p50_s": pct([s for m, s in times if m == n], 0.5),
                    "p95_s": pct([s for m, s in times if m == n], 0.95)} for n in PAGES}
    res = {"sessions": sessions, "seconds": round(wall, 1), "page_runs": len(times), "errors": len(errors),
           "error_examples": errors[:5], "p50_s": pct(all_t, 0.5), "p95_s": pct(all_t, 0.95), "per_page": per_page}
    print(f"load: {sessions} sessions for {wall:.0f} s: {len(times)} page runs, {len(errors)} errors, "
          f"p50 {res['p50_s']} s, p95 {res['p95_s']} s")
    for n, v in per_page.items():
        print(f"  {n:<11} runs {v['runs']:4d}  p50 {v['p50_s']} s  p95 {v['p95_s']} s")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--load", action="store_true", help="also run the concurrent-sessions load test")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = paper_store(Path(tmp) / "store.db")
        proc, url = browserkit.start_streamlit(store, env={"PREFDISSECT_SEED_DEMO": "0"})
        try:
            results = {"pages": page_speed(url)}
            if args.load:
                results["load"] = load(url, args.sessions, args.seconds)
        finally:
            browserkit.stop(proc)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pages.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
