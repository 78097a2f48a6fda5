"""Benchmark: how fast each page renders on a store of the paper's scale, and the app under load.

The store: benchmarks/paperstore.py (5,240 pairs, 33 judges, 561 fitted profiles over 16 groups
and cases plus "all"). A real `streamlit run` serves it; browserless sessions (tests/stsession.py,
the browser's own websocket protocol) time each page run from the request to the end of the
script run, which is what a page waits for before it is complete.

- first: the page's first run with every cache empty (the cache is cleared before each page) on an idle
  server: work a page left running in the background (the Judges page fits its bias card's own-family
  covariate on a thread) is waited out first, so it is not counted in the next page's figures;
- rerun: the same page again in the same session, nothing changed; median of 3;
- interaction: a widget a user would change on the page (INTERACTIONS) set to a value not shown yet,
  five times, so each pays for its query and its charts; median and max;
- load (--load): N sessions (default 20) cycling through every page for S seconds (default 60):
  p50 / p95 page times and errors.

    .venv/bin/python benchmarks/bench_pages.py [--load] [--sessions 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
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


# What a user changes on each page, and the values it takes in turn. Each is a value not shown yet, so
# the data behind it is not cached yet: an interaction pays for its query and its charts. "options":
# the widget's own options after the first (the page's default is the first or another one).
INTERACTIONS = {
    "overview": None,  # nothing to change on a one-dataset store: a rerun
    "samples": ("Scenario group", "options"),
    "profiles": ("Scope", "options"),
    "similarity": ("Scenarios", "options"),
    "judges": ("Reference judge", "options"),
    "annotate": ("Annotator", "options"),
    "simulate": ("success rate: + lengthy", [0.1, 0.2, 0.3, 0.4, 0.6]),
}


def _values(spec, widgets: dict, n: int = 5) -> list:
    label, values = spec
    if values != "options":
        return list(values)[:n]
    options = list(widgets[label][1].options)
    return [options[1 + i % (len(options) - 1)] for i in range(n)] if len(options) > 1 else []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_idle(pid: int | None, quiet: float = 0.02, step: float = 0.25, limit: float = 60.0) -> float:
    """Wait until the server process uses less than ``quiet`` CPU seconds in ``step`` seconds (its
    background threads are done); the seconds waited. Without /proc (or a pid) it returns at once."""
    if pid is None or not Path(f"/proc/{pid}/stat").exists():
        return 0.0
    t0 = time.perf_counter()
    last = _cpu_seconds(pid)
    while time.perf_counter() - t0 < limit:
        time.sleep(step)
        now = _cpu_seconds(pid)
        if now - last < quiet:
            break
        last = now
    return time.perf_counter() - t0


def page_speed(url: str, pid: int | None = None) -> dict:
    out = {}
    with Session(url, timeout=120) as s:
        s.run("")  # open the session (and the first connection's one-off costs)
        for name, page in PAGES.items():
            wait_idle(pid)
            s.clear_cache()
            first = s.run(page)
            reruns = [s.run(page) for _ in range(3)]
            spec = INTERACTIONS[name]
            values = _values(spec, first.widgets) if spec else []
            changed = [s.run(page, change={spec[0]: v}, widgets=first.widgets) for v in values] or reruns
            runs = [first, *reruns, *changed]
            out[name] = {"first_s": round(first.seconds, 3),
                         "rerun_s": round(statistics.median(r.seconds for r in reruns), 3),
                         "interaction_s": round(statistics.median(r.seconds for r in changed), 3),
                         "interaction_max_s": round(max(r.seconds for r in changed), 3),
                         "interaction": f"{spec[0]}: {len(values)} new values" if spec else "rerun",
                         "errors": [e for r in runs for e in r.exceptions] + [r.status for r in runs if r.status != "ok"]}
            print(f"{name:<11} first {first.seconds:5.2f} s   rerun {out[name]['rerun_s']:5.3f} s   "
                  f"interaction {out[name]['interaction_s']:5.3f} s (max {out[name]['interaction_max_s']:5.3f}; "
                  f"{out[name]['interaction']})" + (f"   ERRORS {out[name]['errors']}" if out[name]["errors"] else ""))
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


def peak_rss_mb(pid: int) -> float | None:
    """The server process's peak resident memory (Linux: VmHWM), with Streamlit's per-run garbage
    collection off (.streamlit/config.toml)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


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
            results = {"pages": page_speed(url, proc.pid)}
            if args.load:
                results["load"] = load(url, args.sessions, args.seconds)
            results["server_peak_rss_mb"] = peak_rss_mb(proc.pid)
            print(f"server peak RSS {results['server_peak_rss_mb']} MB")
        finally:
            browserkit.stop(proc)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pages.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
