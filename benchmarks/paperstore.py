"""A store at the paper's scale, for the page-speed and load benchmarks.

5,240 pairs in the paper's 11 scenario groups with query-case flags in the paper's proportions,
texts of realistic length (a few hundred words per response, markdown included), eight responding
models, 29 simulated comparison features, labels of the 33 judges drawn from the paper's published
weights for each sample's group, and every (scope, judge) profile fitted: 16 groups and cases
plus "all". Built once and cached under benchmarks/results/ (rebuilt when this file changes).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_fit import shared_data  # noqa: E402
from core import catalogue, fit, synthetic  # noqa: E402
from core.profile import load_published_profiles  # noqa: E402
from core.records import Dataset, Feature, ImportBatch, Judge, Label, Sample  # noqa: E402
from core.store import Store  # noqa: E402

DATASET = "paper-scale"
SOURCE = "sim"
MODELS = ["gpt-4", "gpt-3.5-turbo", "claude-2", "llama-2-70b-chat", "vicuna-13b", "wizardlm-13b", "tulu-2-70b",
          "zephyr-7b"]
WORDS = ("the of and to in is that for it with as was on be by this are or from at an which have not can "
         "model answer user question response data code step result example because however first then "
         "python function list value error test should would could important consider").split()


def _text(rng: np.random.Generator, n_words: int) -> str:
    words = rng.choice(WORDS, size=n_words)
    lines, i = [], 0
    while i < n_words:
        k = int(rng.integers(8, 25))
        line = " ".join(words[i:i + k])
        lines.append(("- " if rng.random() < 0.2 else "") + line.capitalize() + ".")
        i += k
    return "\n".join(lines)


def write(store: Store, seed: int = 0) -> int:
    """Write the paper-scale dataset (no profiles) into ``store``; returns the number of pairs."""
    gair = shared_data() / "gair"
    idx = json.loads((gair / "query_aware_idxs.json").read_text())
    published = load_published_profiles(gair / "fitted_paras_comparison")
    judges = list(published["Advice"])
    group_of = {i: g for g in catalogue.group_keys() for i in idx[g]}
    cases_of = {i: {c: True for c in catalogue.case_keys() if i in set(idx[c])} for i in range(len(idx["all"]))}
    rng = np.random.default_rng(seed)
    keys = catalogue.attribute_keys()
    batch = ImportBatch(Dataset(DATASET, source="benchmarks/paperstore.py", synthetic=True),
                        judges=[Judge(j, "synthetic") for j in judges])
    for i in range(len(idx["all"])):
        g = group_of[i]
        ma, mb = rng.choice(MODELS, size=2, replace=False)
        s = Sample(DATASET, f"Question {i}: " + _text(rng, int(rng.integers(15, 60))),
                   _text(rng, int(rng.integers(60, 500))), _text(rng, int(rng.integers(60, 500))),
                   model_a=str(ma), model_b=str(mb), scenario_group=g, cases=cases_of[i])
        batch.samples.append(s)
        x = synthetic.simulate_features(1, rng)[0]
        batch.features += [Feature(s.id, SOURCE, k, int(v)) for k, v in zip(keys, x)]
        for j in judges:
            p = 1 / (1 + np.exp(-x @ published[g][j]))
            batch.labels.append(Label(s.id, j, "A" if rng.random() < p else "B", prob_a=float(p)))
    store.write_batch(batch)
    return len(batch.samples)


def build(path: Path, seed: int = 0) -> dict:
    """The dataset and every profile fitted, in a new store file."""
    with Store(path) as store:
        n = write(store, seed)
        t = time.perf_counter()
        rep = fit.dissect(store, DATASET, SOURCE)
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"pairs": n, "profiles": len(rep.fitted), "fit_seconds": round(time.perf_counter() - t, 1)}


def paper_store(dest: Path) -> Path:
    """Copy of the cached paper-scale store at ``dest`` (building the cache the first time)."""
    cache_dir = ROOT / "benchmarks" / "results"
    cache_dir.mkdir(parents=True, exist_ok=True)
    version = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    cached = cache_dir / f"paper-store-{version}.db"
    if not cached.exists():
        for old in cache_dir.glob("paper-store-*.db"):
            old.unlink()
        t = time.perf_counter()
        info = build(cached.with_suffix(".part"))
        cached.with_suffix(".part").replace(cached)
        print(f"built the paper-scale store in {time.perf_counter() - t:.0f} s: {info}", file=sys.stderr)
    shutil.copy(cached, dest)
    return dest
