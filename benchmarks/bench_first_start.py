"""Benchmark: the first start (issue 17), as a new user meets it: `streamlit run` on an empty store, then
one headless Chromium opening the dashboard. Times, from the command's start:

- healthy: the server answers /_stcore/health (polled every 0.3 s);
- browser started, page loaded: Chromium is up (started once the server is healthy), the app's page has loaded;
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


#: Watches the page from inside it (one WebDriver call) and resolves with the wall-clock times (ms since the
#: epoch) at which the building notice and the rendered Overview first showed. Polling the page's text from
#: Python (Selenium's ``.text``: a layout of the whole page per call, 0.3-0.8 CPU s on a big page) took CPU
#: from the browser drawing the very page being timed.
WATCH = """
const done = arguments[arguments.length - 1];
const seen = {building: null, overview: null};
const timer = setInterval(() => {
  const text = document.body ? document.body.innerText : "";
  if (seen.building === null && (text.includes("First start") || text.includes("synthetic demo"))) seen.building = Date.now();
  if (text.includes("Samples per scenario group") && document.querySelector("[data-testid='stVegaLiteChart'] svg")) {
    seen.overview = Date.now(); clearInterval(timer); done(seen);
  }
}, 50);
"""


def once() -> dict:
    store = Path(tempfile.mkdtemp(prefix="first-start-")) / "store.db"
    t0 = time.perf_counter()
    w0 = time.time()  # the in-page watch reports wall-clock times
    proc, url = browserkit.start_streamlit(store)
    healthy = time.perf_counter() - t0
    driver = browserkit.chrome()
    browser = time.perf_counter() - t0
    try:
        deadline = time.time() + 180
        driver.set_script_timeout(180)
        driver.get(url)
        loaded = time.perf_counter() - t0
        seen = driver.execute_async_script(WATCH)
        building = None if seen["building"] is None else seen["building"] / 1000 - w0
        overview = seen["overview"] / 1000 - w0
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
    return {"healthy_s": round(healthy, 2), "browser_started_s": round(browser, 2), "page_loaded_s": round(loaded, 2),
            "building_shown_s": None if building is None else round(building, 2),
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
