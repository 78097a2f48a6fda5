"""Comparing judges through their profiles: similarity, clustering, groups of judges, differences.

Profiles come in as ``{scope: {judge: weights}}`` (weights in the catalogue's attribute order),
as :func:`load_published_profiles` returns and as fitted :class:`core.fit.Profile` lists
reduce to with :func:`weights_by_scope`. Following the paper, the similarity of two judges
is the correlation of their weight vectors within a scope, averaged over the scopes both
have; by default only the scenario groups count, not the five query-specific cases (those
scopes overlap the groups and hold the same samples again).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from . import catalogue

METHODS = ("pearson", "spearman")

WeightsByScope = Mapping[str, Mapping[str, Sequence[float]]]


def default_scopes(profiles: WeightsByScope) -> list[str]:
    """The scopes the paper averages over: every scope except the query-specific cases."""
    cases = set(catalogue.case_keys())
    return [s for s in profiles if s not in cases]


def correlation(a: Sequence[float], b: Sequence[float], method: str = "pearson") -> float:
    """Pearson or Spearman correlation of two weight vectors (NaN if either is constant)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"weight vectors differ in length: {x.shape} vs {y.shape}")
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _corr_matrix(W: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        W = stats.rankdata(W, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(W)


def similarity_matrix(
    profiles: WeightsByScope,
    judges: Sequence[str] | None = None,
    *,
    scopes: Sequence[str] | None = None,
    method: str = "pearson",
) -> pd.DataFrame:
    """Judge x judge similarity: the per-scope correlation averaged over the scopes both judges have.

    ``judges`` defaults to every judge in the chosen scopes (first-seen order); ``scopes`` to
    :func:`default_scopes`. Pairs that share no scope get NaN.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    scopes = list(scopes) if scopes is not None else default_scopes(profiles)
    if judges is None:
        seen: dict[str, None] = {}
        for s in scopes:
            for j in profiles.get(s, {}):
                seen.setdefault(j, None)
        judges = list(seen)
    judges = list(judges)
    pos = {j: i for i, j in enumerate(judges)}
    total = np.zeros((len(judges), len(judges)))
    count = np.zeros_like(total)
    for s in scopes:
        present = [j for j in profiles.get(s, {}) if j in pos]
        if len(present) < 1:
            continue
        W = np.asarray([profiles[s][j] for j in present], dtype=float)
        C = _corr_matrix(W, method) if len(present) > 1 else np.ones((1, 1))
        C = np.atleast_2d(C)
        idx = np.array([pos[j] for j in present])
        ok = np.isfinite(C)
        total[np.ix_(idx, idx)] += np.where(ok, C, 0.0)
        count[np.ix_(idx, idx)] += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return pd.DataFrame(mean, index=judges, columns=judges)


def judge_similarity(
    profiles: WeightsByScope, a: str, b: str, *, scopes: Sequence[str] | None = None, method: str = "pearson"
) -> float:
    """Similarity of two judges: their correlation averaged over the scopes they share."""
    return float(similarity_matrix(profiles, [a, b], scopes=scopes, method=method).iloc[0, 1])


def cluster_order(matrix: pd.DataFrame, *, method: str = "average") -> list[str]:
    """Judges ordered so that similar ones sit together (hierarchical clustering, 1 - similarity).

    Uses scipy's optimal leaf ordering, so neighbours in the list are as similar as the tree allows.
    """
    names = list(matrix.index)
    if len(names) < 3:
        return names
    S = matrix.to_numpy(dtype=float)
    S = np.where(np.isfinite(S), S, 0.0)
    D = np.clip(1.0 - (S + S.T) / 2.0, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    Z = hierarchy.linkage(squareform(D, checks=False), method=method, optimal_ordering=True)
    return [names[i] for i in hierarchy.leaves_list(Z)]


@dataclass
class GroupSimilarity:
    """Mean similarity within each judge group and across groups (over unordered pairs)."""

    intra: dict[str, float]
    inter: float
    pairs: dict[str, int] = field(default_factory=dict)  # pairs behind each number ("inter" included)
    between: dict[tuple[str, str], float] = field(default_factory=dict)  # per pair of groups


def group_similarity(matrix: pd.DataFrame, groups: Mapping[str, Iterable[str]]) -> GroupSimilarity:
    """Intra-group similarity (mean over pairs of judges within a group) and inter-group (across).

    Judges missing from the matrix are ignored; a judge in two groups counts in both.
    """
    members = {g: [j for j in js if j in matrix.index] for g, js in groups.items()}
    S = matrix

    def mean_of(pairs: list[tuple[str, str]]) -> float:
        vals = [S.at[a, b] for a, b in pairs if a != b]
        vals = [v for v in vals if np.isfinite(v)]
        return float(np.mean(vals)) if vals else math.nan

    intra, counts, between = {}, {}, {}
    for g, js in members.items():
        pairs = list(combinations(js, 2))
        intra[g] = mean_of(pairs)
        counts[g] = len(pairs)
    cross: list[tuple[str, str]] = []
    for g1, g2 in combinations(members, 2):
        pairs = [(a, b) for a in members[g1] for b in members[g2]]
        between[(g1, g2)] = mean_of(pairs)
        cross.extend(pairs)
    counts["inter"] = len(cross)
    return GroupSimilarity(intra=intra, inter=mean_of(cross), pairs=counts, between=between)


def _vector_and_draws(p: Any) -> tuple[np.ndarray, np.ndarray | None, list[str] | None]:
    if hasattr(p, "mean") and hasattr(p, "attributes"):  # a core.fit.Profile
        samples = getattr(p, "samples", None)
        return np.asarray(p.mean, dtype=float), None if samples is None else np.asarray(samples, float), list(
            p.attributes
        )
    return np.asarray(p, dtype=float), None, None


def weight_difference(
    a: Any,
    b: Any,
    *,
    draws_a: np.ndarray | None = None,
    draws_b: np.ndarray | None = None,
    attributes: Sequence[str] | None = None,
    prob: float = 0.94,
    seed: int = 0,
) -> pd.DataFrame:
    """Judge a minus judge b, per attribute: the weight difference, with an interval when draws exist.

    ``a`` and ``b`` are Profiles (their kept ``samples`` are used) or plain weight vectors
    (then pass ``draws_a``/``draws_b``, each (S, d), for intervals). The two posteriors are
    independent, so randomly paired draws are draws of the difference. ``lo``/``hi`` bound the
    equal-tailed ``prob`` interval and ``p_pos`` is P(a > b); all three are NaN without draws.
    """
    wa, da, names_a = _vector_and_draws(a)
    wb, db, names_b = _vector_and_draws(b)
    da = np.asarray(draws_a, dtype=float) if draws_a is not None else da
    db = np.asarray(draws_b, dtype=float) if draws_b is not None else db
    if wa.shape != wb.shape:
        raise ValueError(f"profiles differ in length: {wa.shape} vs {wb.shape}")
    if names_a and names_b and names_a != names_b:
        raise ValueError("profiles have different attributes")
    names = list(attributes) if attributes is not None else (names_a or names_b or catalogue.attribute_keys())
    out = pd.DataFrame({"attribute": names, "a": wa, "b": wb, "diff": wa - wb})
    if da is not None and db is not None:
        rng = np.random.default_rng(seed)
        m = min(len(da), len(db))
        diff = da[rng.permutation(len(da))[:m]] - db[rng.permutation(len(db))[:m]]
        tail = (1.0 - prob) / 2.0
        out["lo"], out["hi"] = np.quantile(diff, [tail, 1.0 - tail], axis=0)
        out["p_pos"] = (diff > 0).mean(axis=0)
    else:
        out["lo"] = out["hi"] = out["p_pos"] = math.nan
    return out


def weights_by_scope(profiles: Mapping[str, Iterable[Any]]) -> dict[str, dict[str, np.ndarray]]:
    """{scope: [Profile, ...]} (as ``core.fit.fit_groups`` returns) -> {scope: {judge: mean weights}}."""
    return {s: {p.judge: np.asarray(p.mean, dtype=float) for p in ps} for s, ps in profiles.items()}


def load_published_profiles(directory: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The paper's released weights: ``model_<scope>_fitted_paras.jsonl`` files -> {scope: {judge: weights}}.

    Each line is ``{"model_name": ..., "parameters": [29 floats]}`` in the catalogue's order.
    """
    directory = Path(directory)
    out: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted(directory.glob("model_*_fitted_paras.jsonl")):
        scope = path.name[len("model_"):-len("_fitted_paras.jsonl")]
        rows: dict[str, np.ndarray] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                rows[str(rec["model_name"])] = np.asarray(rec["parameters"], dtype=float)
        out[scope] = rows
    if not out:
        raise FileNotFoundError(f"no model_<scope>_fitted_paras.jsonl files in {directory}")
    return out
