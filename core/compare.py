"""Comparing judges through their profiles: similarity, clustering, groups of judges, differences.

Profiles come in as ``{scope: {judge: weights}}`` (weights in the catalogue's attribute order),
as ``profile.load_published_profiles`` returns and as fitted :class:`core.fit.Profile` lists
reduce to with :func:`weights_by_scope`. Following the paper, the similarity of two judges
is the correlation of their weight vectors within a scope, averaged over the scopes both
have; by default only the scenario groups count, not the five query-specific cases (those
scopes overlap the groups and hold the same samples again).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import catalogue
from . import scopes as scope_rules
from .intervals import INTERVAL_PROB, tails
from .profile import POSITION_LABEL, floats, is_position, measured_mask
from .records import size_from_name

METHODS = ("pearson", "spearman")

WeightsByScope = Mapping[str, Mapping[str, Sequence[float]]]


def correlation(a: Sequence[float], b: Sequence[float], method: str = "pearson") -> float:
    """Pearson or Spearman correlation of two weight vectors (NaN if either is constant)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"weight vectors differ in length: {x.shape} vs {y.shape}")
    if method == "spearman":
        x, y = _ranks(x), _ranks(y)
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties sharing their mean rank (scipy's rankdata, without loading
    scipy.stats: half a second on the first page a new server shows)."""
    return pd.DataFrame(np.atleast_2d(values)).rank(axis=1).to_numpy().reshape(np.shape(values))


def _corr_matrix(W: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        W = _ranks(W)
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
    ``scopes.beside_cases`` (every scope but the query cases). Pairs that share no scope get NaN.
    A NaN weight is an attribute the profile did not measure (see :func:`weights_from_rows`): a pair's correlation in a scope is
    over the attributes both measured (NaN with fewer than 3). The result's ``attrs["attributes"]``
    gives, per scope, the fewest attributes a pair's correlation there rested on.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    scopes = list(scopes) if scopes is not None else scope_rules.beside_cases(profiles)
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
    used: dict[str, int] = {}
    for s in scopes:
        present = [j for j in profiles.get(s, {}) if j in pos]
        if len(present) < 1:
            continue
        W = np.asarray([profiles[s][j] for j in present], dtype=float)
        finite = np.isfinite(W)
        if finite.all() or len(present) == 1:
            C = _corr_matrix(W, method) if len(present) > 1 else np.ones((1, 1))
            used[s] = W.shape[1]
        elif (finite == finite[0]).all():  # one feature set: the same attributes measured for every judge
            C = _corr_matrix(W[:, finite[0]], method) if finite[0].sum() >= 3 else np.full((len(present),) * 2, np.nan)
            used[s] = int(finite[0].sum())
        else:
            C = np.full((len(present), len(present)), np.nan)
            least = W.shape[1]
            for a in range(len(present)):
                for b in range(a, len(present)):
                    both = finite[a] & finite[b]
                    least = min(least, int(both.sum()))
                    if both.sum() >= 3:
                        C[a, b] = C[b, a] = correlation(W[a, both], W[b, both], method)
            used[s] = least
        C = np.atleast_2d(C)
        idx = np.array([pos[j] for j in present])
        ok = np.isfinite(C)
        total[np.ix_(idx, idx)] += np.where(ok, C, 0.0)
        count[np.ix_(idx, idx)] += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    out = pd.DataFrame(mean, index=judges, columns=judges)
    out.attrs["attributes"] = used
    return out


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
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    Z = hierarchy.linkage(squareform(D, checks=False), method=method, optimal_ordering=True)
    return [names[i] for i in hierarchy.leaves_list(Z)]


@dataclass
class SimilarityReport:
    """Judge similarity as the Similarity page and ``python -m core similarity`` show it."""

    matrix: pd.DataFrame  # judge x judge correlation, rows and columns in ``order``
    order: list[str]  # the judges, ordered by hierarchical clustering (alike judges together)
    scopes: list[str]  # the scopes the correlation is averaged over (or the one asked for)
    corr: str  # "pearson" or "spearman"
    attributes: dict[str, int] = field(default_factory=dict)  # per scope: fewest attributes a pair's rested on

    @property
    def attribute_range(self) -> tuple[int, int] | None:
        """(fewest, most) over the scopes of the attributes a pair's correlation rested on (both
        profiles measured them)."""
        used = list(self.attributes.values())
        return (min(used), max(used)) if used else None


def similarity_report(weights: WeightsByScope, *, scope: str | None = None, judges: Sequence[str] | None = None,
                      corr: str = "pearson") -> SimilarityReport:
    """The one similarity pipeline: weights ({scope: {judge: weights}}, from :func:`weights_from_rows`,
    where unmeasured attributes are NaN) -> the correlation matrix in one scope, or averaged over the
    scenario groups (``scopes.averaged``) -> ordered by clustering."""
    over = [scope] if scope else scope_rules.averaged(weights)
    matrix = similarity_matrix(weights, list(judges) if judges else None, scopes=over, method=corr)
    used = dict(matrix.attrs.get("attributes", {}))
    order = cluster_order(matrix)
    return SimilarityReport(matrix.loc[order, order], order, over, corr, used)


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
    S = matrix.to_numpy(dtype=float)  # positional lookups: .at per pair cost ~0.1 s at 33 judges
    row = {j: i for i, j in enumerate(matrix.index)}
    col = {j: i for i, j in enumerate(matrix.columns)}

    def mean_of(pairs: list[tuple[str, str]]) -> float:
        vals = [S[row[a], col[b]] for a, b in pairs if a != b]
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
    prob: float = INTERVAL_PROB,
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
        out["lo"], out["hi"] = np.quantile(diff, tails(prob), axis=0)
        out["p_pos"] = (diff > 0).mean(axis=0)
    else:
        out["lo"] = out["hi"] = out["p_pos"] = math.nan
    return out


def weights_by_scope(profiles: Mapping[str, Iterable[Any]]) -> dict[str, dict[str, np.ndarray]]:
    """{scope: [Profile, ...]} (as ``core.fit.fit_groups`` returns) -> {scope: {judge: mean weights}}."""
    return {s: {p.judge: np.asarray(p.mean, dtype=float) for p in ps} for s, ps in profiles.items()}


def difference_of(row_a: Mapping[str, Any], row_b: Mapping[str, Any], *, prob: float = INTERVAL_PROB,
                  seed: int = 0) -> pd.DataFrame:
    """:func:`weight_difference` of two stored profiles (rows read ``with_draws=True``), with labels.

    Intervals and P(a > b) come from the stored posterior draws; NaN when either profile has none
    (imported, means-only profiles). A tie parameter (Davidson's log nu, the last term of a profile
    fitted with ties) is not a weight of an attribute: it is left out, so a judge fitted with ties
    compares with one fitted without, on the terms both have."""
    from .profile import TIE

    def terms(row: Mapping[str, Any]) -> tuple[list[str], list[float], Any]:
        names = list(row["attributes"])
        keep = [i for i, k in enumerate(names) if k != TIE]
        mean = floats(row["mean"], len(names))
        draws = row.get("draws")
        if draws is not None:
            draws = np.asarray(draws, dtype=float).reshape(-1, len(names))[:, keep]
        return [names[i] for i in keep], [mean[i] for i in keep], draws

    names_a, mean_a, draws_a = terms(row_a)
    names_b, mean_b, draws_b = terms(row_b)
    if names_a != names_b:
        raise ValueError("profiles have different attributes")
    out = weight_difference(mean_a, mean_b, draws_a=draws_a, draws_b=draws_b, attributes=names_a, prob=prob,
                            seed=seed)

    labels = {a.key: a.label for a in catalogue.attributes()}
    out.insert(1, "label", [POSITION_LABEL if is_position(k) else labels.get(k, k) for k in out["attribute"]])
    out.insert(0, "index", np.arange(len(out)))
    return out


def weights_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Stored profile rows -> {scope: {judge: mean weights}}, the input of :func:`similarity_matrix`.

    The weights are the catalogue's attributes in its order (a position term or a tie parameter is
    not a preference for an attribute and is left out); an attribute the profile did not measure
    (no or too few differing samples) is NaN, so similarity leaves it out."""
    keys = catalogue.attribute_keys()
    out: dict[str, dict[str, np.ndarray]] = {}
    for r in rows:
        attrs = list(r.get("attributes") or keys)
        mean = floats(r["mean"], len(attrs))
        mask = measured_mask({**r, "attributes": attrs})
        by_name = {k: (m if ok else math.nan) for k, m, ok in zip(attrs, mean, mask)}
        out.setdefault(r["scope"], {})[r["judge"]] = np.asarray([by_name.get(k, math.nan) for k in keys], dtype=float)
    return out


# --------------------------------------------------------------------------- groups of judges

def judge_sizes(judges: Iterable[str], known: Mapping[str, float | None] | None = None) -> dict[str, float | None]:
    """Each judge's size in billions of parameters: the recorded one (``judges.size_b``) when known,
    else read off the name (``records.size_from_name``)."""
    known = known or {}
    out = {}
    for j in judges:
        k = known.get(j)
        out[j] = float(k) if k is not None and math.isfinite(float(k)) else size_from_name(j)
    return out


def size_groups(judges: Iterable[str], sizes: Mapping[str, float | None], split: float = 30.0) -> dict[str, list[str]]:
    """Judges split at ``split`` billion parameters (the paper's ~30B split); judges of unknown size
    are left out. ``sizes`` maps a judge to its size (e.g. ``judges.size_b``, else
    ``records.size_from_name``)."""
    small, large = [], []
    for j in judges:
        s = sizes.get(j)
        if s is None or not math.isfinite(float(s)):
            continue
        (small if float(s) < split else large).append(j)
    return {f"< {split:g}B": small, f"≥ {split:g}B": large}


def groups_by(judges: Iterable[str], key: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Judges grouped by a property (e.g. their kind); judges without it are left out."""
    out: dict[str, list[str]] = {}
    for j in judges:
        k = key.get(j)
        if k:
            out.setdefault(str(k), []).append(j)
    return out


def cluster_groups(matrix: pd.DataFrame, k: int, *, method: str = "average") -> dict[str, list[str]]:
    """The judges cut into ``k`` clusters of the same hierarchical clustering that :func:`cluster_order`
    draws (1 - similarity, average linkage); clusters named in the order they appear there."""
    names = list(matrix.index)
    if len(names) < 2 or k < 2:
        return {"cluster 1": names}
    S = matrix.to_numpy(dtype=float)
    S = np.where(np.isfinite(S), S, 0.0)
    D = np.clip(1.0 - (S + S.T) / 2.0, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    Z = hierarchy.linkage(squareform(D, checks=False), method=method, optimal_ordering=True)
    labels = hierarchy.fcluster(Z, t=min(k, len(names)), criterion="maxclust")
    order = [names[i] for i in hierarchy.leaves_list(Z)]
    lab = dict(zip(names, labels))
    seen: dict[int, list[str]] = {}
    for j in order:
        seen.setdefault(int(lab[j]), []).append(j)
    return {f"cluster {i}": js for i, js in enumerate(seen.values(), start=1)}


def group_table(g: GroupSimilarity, groups: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """:class:`GroupSimilarity` as a table: one row per group (intra), one per pair of groups, and (with
    more than two groups) the overall inter-group mean; with the judges and pairs behind each number.
    ``groups`` are the members as passed to :func:`group_similarity`, limited to the matrix's judges."""
    recs = [{"comparison": "within", "group": name, "judges": len(groups[name]), "pairs": g.pairs.get(name, 0),
             "similarity": g.intra[name]} for name in g.intra]
    for (a, b), v in g.between.items():
        recs.append({"comparison": "between", "group": f"{a} vs {b}", "judges": len(groups[a]) + len(groups[b]),
                     "pairs": len(groups[a]) * len(groups[b]), "similarity": v})
    if len(g.between) != 1:  # with two groups the one pair of groups is the overall figure already
        recs.append({"comparison": "between", "group": "all across groups",
                     "judges": sum(len(v) for v in groups.values()), "pairs": g.pairs.get("inter", 0),
                     "similarity": g.inter})
    return pd.DataFrame(recs, columns=["comparison", "group", "judges", "pairs", "similarity"])


# ---------------------------------------------------------------- what the Similarity page shows
# (dashboard/data_profiles.py wraps each in a cache: the page calls one function per result)


def auto_groups(judges: Sequence[str], by: str, *, matrix: pd.DataFrame | None = None,
                kinds: Mapping[str, str | None] | None = None, sizes: Mapping[str, float] | None = None,
                split: float = 30.0, k: int = 2) -> dict[str, list[str]]:
    """Automatic judge groups: by ``"size"`` (``sizes`` in billions of parameters, else read off the
    name; split at ``split`` B), by ``"kind"``, or by cutting the clustering of ``matrix`` into ``k``
    ``"clusters"``."""
    if by == "clusters":
        return cluster_groups(matrix, k)
    if by == "kind":
        return groups_by(judges, kinds or {})
    return size_groups(judges, judge_sizes(judges, sizes or {}), split)


def group_similarity_table(matrix: pd.DataFrame, groups: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Intra- and inter-group similarity of judge groups (members not in ``matrix`` left out), as
    :func:`group_table`."""
    members = {name: [j for j in js if j in matrix.index] for name, js in groups.items()}
    return group_table(group_similarity(matrix, members), members)
