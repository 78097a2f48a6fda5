"""Benchmark: a 10,000-row upload from the browser, end to end (target: < 30 s).

Starts ``streamlit run`` on a fresh store, drives headless Chromium to the Your data page, uploads a
generated 10,000-row CSV (a judge's verdicts in both orders and a category), checks it, imports it,
and stops the clock when the import job is done and every pair is in the store. Reports the upload
and check time (until the validation report shows) and the import time separately.

    .venv/bin/python benchmarks/bench_upload.py [--rows 10000]

Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_import import sentence  # noqa: E402
from tests import browserkit  # noqa: E402


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    verdicts = ["A>>B", "A>B", "A=B", "B>A", "B>>A"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "response_a", "response_b", "label", "label_ba", "category"])
        for i in range(n):
            w.writerow([sentence(rng, rng.randint(8, 40)),
                        " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(2, 8))),
                        " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(2, 8))),
                        rng.choice(verdicts), rng.choice(verdicts), f"family-{rng.randint(1, 8)}"])


def click(driver, text: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for b in driver.find_elements("css selector", "button"):
            try:
                if b.text.strip().endswith(text) and b.is_enabled():
                    b.click()
                    return
            except Exception:  # re-rendered under us: look again
                pass
        time.sleep(0.2)
    raise AssertionError(f"no enabled button {text!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "upload.csv"
        generate(data, args.rows)
        store = Path(tmp) / "store.db"
        proc, url = browserkit.start_streamlit(store, env={"PREFDISSECT_SEED_DEMO": "0"})
        driver = browserkit.chrome()
        try:
            driver.get(url + "/data")
            browserkit.wait_for_text(driver, "Data file")
            t0 = time.perf_counter()
            driver.find_element("css selector", "input[type='file']").send_keys(str(data))
            browserkit.wait_for_text(driver, "Check the file", timeout=120)
            click(driver, "Check the file")
            browserkit.wait_for_text(driver, "Labels", timeout=120)
            click(driver, "Import")
            t1 = time.perf_counter()
            from core.store import Store

            deadline = time.time() + 300
            while time.time() < deadline:
                with Store(store) as s:
                    done = s.scalar("SELECT COUNT(*) FROM jobs WHERE kind = 'import' AND status = 'done'")
                    failed = s.rows("SELECT error FROM jobs WHERE kind = 'import' AND status = 'failed'")
                if failed:
                    raise SystemExit(f"the import job failed: {failed[0]['error']}")
                if done:
                    break
                time.sleep(0.2)
            t2 = time.perf_counter()
            with Store(store) as s:
                n = s.scalar("SELECT COUNT(*) FROM samples")
                both = s.scalar("SELECT COUNT(*) FROM labels WHERE verdict_ab IS NOT NULL AND verdict_ba IS NOT NULL")
        finally:
            driver.quit()
            browserkit.stop(proc)
    if n != args.rows or both != args.rows:
        raise SystemExit(f"expected {args.rows:,} samples with both orders, found {n:,} / {both:,}")
    print(f"{args.rows:,}-row upload from the browser: {t2 - t0:.1f} s in all (upload, preview, mapping and check "
          f"{t1 - t0:.1f} s; the import job {t2 - t1:.1f} s)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "upload.json").write_text(json.dumps({"rows": args.rows, "total_s": t2 - t0, "check_s": t1 - t0,
                                                 "import_s": t2 - t1}, indent=2))


if __name__ == "__main__":
    main()
