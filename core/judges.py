"""Judges: how their labels relate (agreement, position consistency).

Collecting a new judge's labels from an LLM lives here too once the annotation engine lands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .store import Store

_CODE = {"A": 1, "B": -1, "tie": 0}


@dataclass(frozen=True)
class Agreement:
    judge_a: str
    judge_b: str
    shared: int  # samples both judges labelled
    agree: int  # of those, samples with the same choice (A, B or tie)

    @property
    def rate(self) -> float | None:
        return self.agree / self.shared if self.shared else None


def agreement(store: Store, dataset: str | None = None, judges: list[str] | None = None) -> list[Agreement]:
    """Pairwise agreement between judges on the samples both labelled (ties count as a choice)."""
    labels = pd.DataFrame(store.labels(dataset, judges), columns=["sample_id", "judge", "choice"])
    if labels.empty:
        return []
    wide = labels.assign(code=labels["choice"].map(_CODE)).pivot(index="sample_id", columns="judge", values="code")
    names = sorted(wide.columns)
    m = wide[names].to_numpy(dtype=float)
    have = ~np.isnan(m)
    out = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            both = have[:, i] & have[:, j]
            shared = int(both.sum())
            agree = int((m[both, i] == m[both, j]).sum())
            out.append(Agreement(a, names[j], shared, agree))
    return out


def agreement_frame(store: Store, dataset: str | None = None) -> pd.DataFrame:
    """Agreement as a long table (judge_a, judge_b, shared, agree, rate), both orders plus the diagonal."""
    rows = []
    for ag in agreement(store, dataset):
        if not ag.shared:
            continue
        rows.append((ag.judge_a, ag.judge_b, ag.shared, ag.agree, ag.rate))
        rows.append((ag.judge_b, ag.judge_a, ag.shared, ag.agree, ag.rate))
    for j in store.judges(dataset):
        rows.append((j["name"], j["name"], j["labels"], j["labels"], 1.0))
    return pd.DataFrame(rows, columns=["judge_a", "judge_b", "shared", "agree", "rate"])
