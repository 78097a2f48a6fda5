"""Benchmark: the first start (issue 17), as a new user meets it: `streamlit run` on an empty store, then
one headless Chromium opening the dashboard. Times, from the command's start:

- healthy: the server answers /_stcore/health;
- building: the page shows the demo being written, with its progress bar (the first visit writes it);
- overview: the Overview is rendered (its charts drawn) on the demo's data;
- profiles: the demo's profile fit, a background job the first visit starts, is done.

    .venv/bin/python benchmarks/bench_first_start.py [--runs 1]

Prints one JSON line per run. Needs Debian's chromium and chromium-driver (as the browser tests).
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

from tests import browserkit  # noqa: E402


def once() -> dict:
    store = Path(tempfile.mkdtemp(prefix="first-start-")) / "store.db"
    t0 = time.perf_counter()
    proc, url = browserkit.start_streamlit(store)
    healthy = time.perf_counter() - t0
    driver = browserkit.chrome()
    try:
        driver.get(url)
        building = overview = None
        deadline = time.time() + 180
        while time.time() < deadline:
            body = browserkit.body_text(driver)
            if building is None and ("First start" in body or "synthetic demo" in body):
                building = time.perf_counter() - t0
            if "Samples per scenario group" in body and driver.find_elements(
                    "css selector", "[data-testid='stVegaLiteChart'] svg"):
                overview = time.perf_counter() - t0
                break
            time.sleep(0.1)
        fitted = None
        from core import jobs
        from core.store import Store

        with Store(store) as s:
            while time.time() < deadline:
                fits = [j for j in jobs.list_jobs(s) if j.kind == "fit"]
                if fits and fits[0].status in ("done", "failed"):
                    fitted = time.perf_counter() - t0 if fits[0].status == "done" else None
                    break
                time.sleep(0.2)
    finally:
        driver.quit()
        browserkit.stop(proc)
    return {"healthy_s": round(healthy, 2), "building_shown_s": None if building is None else round(building, 2),
            "overview_rendered_s": None if overview is None else round(overview, 2),
            "profiles_fitted_s": None if fitted is None else round(fitted, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    for _ in range(args.runs):
        print(json.dumps(once()), flush=True)


if __name__ == "__main__":
    main()
