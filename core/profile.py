"""A preference profile: what its terms are, how it is shown, exported and chosen.

The pieces every reader of a stored profile shares (the Profiles and Similarity pages, the
simulator, the bias card, the Samples waterfall, the CLI): the names of the position and tie terms,
whether an attribute was measured, the paper's display quantity, the baseline check, the tables and
downloads built from ``Store.profiles()`` rows, the paper's published weights, and the one rule for
which stored profile stands for a judge (:func:`choose`). Fitting is ``core.fit``; comparing judges
is ``core.compare``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special

from . import catalogue, safecsv
from .featureset import rank as feature_set_rank

#: Name of the position term, the weight of "shown first" (``sampler.INTERCEPT_SCALE``: a Normal prior,
#: not a Laplace). In A/B orientation its column is +1 where A was shown first and -1 where B was, so
#: with single-order data (A always first) it is an intercept, and verdicts in both orders separate
#: it from content. Profiles fitted before it had this name call it "(intercept)": see is_position.
POSITION = "(shown first)"
INTERCEPT = POSITION
LEGACY_INTERCEPT = "(intercept)"

#: Name of the tie parameter of the Davidson model (log nu).
TIE = "(tie)"


def is_position(name: str) -> bool:
    """Whether a profile term is the position ("shown first") term, under its current or old name."""
    return name in (POSITION, LEGACY_INTERCEPT)


def is_attribute_term(name: str) -> bool:
    """Whether a profile term is an attribute weight (not the position term or the tie parameter)."""
    return not is_position(name) and name != TIE


#: An attribute on which fewer labelled samples than this differ is not presented as an estimate:
#: its posterior is (nearly) the prior, which says nothing about the judge ("too few samples"; with
#: none at all, "not measured": the feature set did not measure it, or never saw A and B differ).
MIN_DIFFERING = 10


def measurement(differing: int | None, threshold: int = MIN_DIFFERING) -> str:
    """The one rule for whether an attribute's weight is an estimate: "measured", "too few samples"
    or "not measured", from the number of labelled samples on which A and B differ on it."""
    if differing is None:
        return "measured"
    if differing <= 0:
        return "not measured"
    return "too few samples" if differing < threshold else "measured"


def display_percent(w: Any) -> Any:
    """The paper's display quantity, 100 * sigmoid(w).

    It reads as the probability (in %) that A is preferred when A beats B on this attribute
    alone: 50 is indifference, above 50 a liking, below 50 a dislike.
    """
    return 100.0 * special.expit(w)


def beats_baselines(accuracy: float | None, baselines: Mapping[str, Mapping[str, Any]]) -> bool | None:
    """Whether a held-out accuracy beats the best baseline's (None when either is unknown). The one
    rule the pages and the CLI use to flag a profile that predicts no better than the obvious."""
    best = best_baseline(baselines)
    if accuracy is None or best is None:
        return None
    return float(accuracy) > best[1]


def best_baseline(baselines: Mapping[str, Mapping[str, Any]] | None) -> tuple[str, float] | None:
    """(name, accuracy) of the most accurate baseline, or None."""
    vals = [(k, v.get("accuracy")) for k, v in (baselines or {}).items() if v and v.get("accuracy") is not None]
    if not vals:
        return None
    return max(vals, key=lambda t: t[1])


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


# --------------------------------------------------------------------------- stored profiles as tables
# ``Store.profiles()`` rows -> the frames that the Profiles and Similarity pages, their downloads and
# the CLI's ``export-profiles`` / ``similarity`` commands share.

#: columns of :func:`profile_frame`, one row per (profile, attribute)
PROFILE_FRAME_COLUMNS = [
    "dataset", "scope", "judge", "feature_source", "method", "index", "attribute", "label",
    "mean", "sd", "lo", "hi", "p_pos", "percent", "percent_lo", "percent_hi", "rhat", "ess",
    "status", "differing",
]

#: how the position term is labelled wherever a profile is shown
POSITION_LABEL = "shown first (position)"

#: per-profile columns of :func:`profile_summary` (held-out accuracy, diagnostics, provenance)
SUMMARY_COLUMNS = [
    "dataset", "scope", "judge", "feature_source", "method", "n", "accuracy", "log_loss", "folds",
    "max_rhat", "min_ess", "divergences", "accept_rate", "interval", "sampler", "prior", "prior_scale",
    "seed", "draws", "fitted_at", "versions", "fingerprint", "imported",
    "model", "ties", "tie_rate", "baseline", "baseline_accuracy", "beats_baseline", "measured",
]


def floats(values: Any, d: int) -> list[float]:
    """A stored list (None entries allowed) as floats with NaN, or d NaNs when absent."""
    if values is None:
        return [math.nan] * d
    return [math.nan if v is None else float(v) for v in values]


def profile_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (profile, attribute): the weight's posterior mean, sd, interval (``lo``/``hi``, as
    stored: see the profile's ``interval``), P(w > 0), R-hat and ESS, and the paper's display
    quantity ``percent`` = 100 * sigmoid(mean) with ``percent_lo``/``percent_hi`` the interval mapped
    the same way (exact for an equal-tailed interval: the map is monotone). Means-only profiles
    (imported ones) get NaN for everything but the mean.

    ``status`` says whether a weight is an estimate ("measured"), or the attribute was "not
    measured" / had "too few samples" differing (``differing`` of them, :func:`measurement`): such
    rows keep their name and count but no numbers, so nothing presents the prior as a finding. The
    position term is labelled :data:`POSITION_LABEL`; a tie parameter is no row (see the summary)."""
    labels = {a.key: a.label for a in catalogue.attributes()}
    parts = []
    for r in rows:
        attrs = list(r["attributes"])
        d = len(attrs)
        cols = {k: np.asarray(floats(r.get(k), d), dtype=float) for k in ("mean", "sd", "lo", "hi", "p_pos", "rhat", "ess")}
        prov = r.get("provenance") or {}
        differing = list(prov.get("differing") or [None] * d) + [None] * d
        threshold = prov.get("min_differing")
        status = [measurement(differing[i], *(() if threshold is None else (threshold,))) for i in range(d)]
        hidden = np.array([st != "measured" for st in status])
        for k in cols:
            cols[k] = np.where(hidden, np.nan, cols[k])
        part = pd.DataFrame({
            "dataset": r.get("dataset"), "scope": r.get("scope"), "judge": r["judge"],
            "feature_source": r.get("feature_source"), "method": r.get("method"),
            "index": np.arange(d), "attribute": attrs,
            "label": [POSITION_LABEL if is_position(k) else labels.get(k, k) for k in attrs],
            **{k: cols[k] for k in ("mean", "sd", "lo", "hi", "p_pos")},
            "percent": display_percent(cols["mean"]),
            "percent_lo": display_percent(cols["lo"]),
            "percent_hi": display_percent(cols["hi"]),
            "rhat": cols["rhat"], "ess": cols["ess"],
            "status": status, "differing": pd.array(differing[:d], dtype="Int64"),
        })
        parts.append(part[part["attribute"] != TIE])
    if not parts:
        return pd.DataFrame(columns=PROFILE_FRAME_COLUMNS)
    return pd.concat(parts, ignore_index=True)[PROFILE_FRAME_COLUMNS]


def top_bottom(frame: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """Each judge's ``k`` most and ``k`` least rewarded attributes (by posterior-mean weight).

    Columns: judge, end ("top" / "bottom"), rank (1 = the most rewarded for "top", the most
    disliked for "bottom"), attribute, label, mean, lo, hi, percent, percent_lo, percent_hi."""
    cols = ["judge", "end", "rank", "attribute", "label", "mean", "lo", "hi", "percent", "percent_lo", "percent_hi"]
    out = []
    # only measured attributes: the position term is no attribute, an unmeasured one no estimate
    keep = frame["attribute"].map(is_attribute_term).astype(bool) & frame["mean"].notna()
    if "status" in frame:
        keep &= frame["status"] == "measured"
    sub = frame[keep]
    if sub.empty:
        return pd.DataFrame(columns=cols)
    # positions, not pandas groups: each judge's rows by weight (largest first, catalogue order within a
    # tie), its first k the top and its last k, reversed, the bottom; judges in order of appearance
    # (a per-judge sort_values/assign/concat took 20-100 ms on a paper-scale scope, 15x this)
    codes = pd.factorize(sub["judge"])[0]
    mean, index = sub["mean"].to_numpy(dtype=float), sub["index"].to_numpy()
    ends, ranks = [], []
    for j in range(codes.max() + 1):
        pos = np.flatnonzero(codes == j)
        ordered = pos[np.lexsort((index[pos], -mean[pos]))]
        n = min(k, len(ordered))
        out.extend([ordered[:n], ordered[::-1][:n]])
        ends += ["top"] * n + ["bottom"] * n
        ranks += [*range(1, n + 1)] * 2
    picked = sub.iloc[np.concatenate(out)].reset_index(drop=True)
    return picked.assign(end=ends, rank=np.array(ranks, dtype=np.int64))[cols]


def profile_summary(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per profile: samples used, held-out accuracy and log loss, convergence diagnostics
    (largest R-hat, smallest ESS over the weights; divergences and acceptance rate of the sampler)
    and provenance (sampler, prior, seed, draws, library versions, fit time, data fingerprint)."""
    recs = []
    for r in rows:
        prov = r.get("provenance") or {}
        diag = prov.get("diagnostics") or {}
        prior = prov.get("prior") or {}
        rhat = [v for v in floats(r.get("rhat"), 0) if math.isfinite(v)]
        ess = [v for v in floats(r.get("ess"), 0) if math.isfinite(v)]
        versions = prov.get("versions") or {}
        recs.append({
            "dataset": r.get("dataset"), "scope": r.get("scope"), "judge": r["judge"],
            "feature_source": r.get("feature_source"), "method": r.get("method"), "n": r.get("n"),
            "accuracy": r.get("accuracy"), "log_loss": r.get("log_loss"), "folds": prov.get("folds"),
            "max_rhat": max(rhat) if rhat else diag.get("max_rhat"),
            "min_ess": min(ess) if ess else diag.get("min_ess"),
            "divergences": diag.get("divergences"), "accept_rate": diag.get("accept_rate"),
            "interval": r.get("interval"), "sampler": prov.get("sampler"),
            "prior": (f"{prior.get('family')}(0, {prior.get('scale')})" if prior else None),
            "prior_scale": prior.get("scale"), "seed": prov.get("seed"), "draws": prov.get("draws"),
            "fitted_at": prov.get("fitted_at") or r.get("created_at"),
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items()) or None,
            "fingerprint": r.get("fingerprint"), "imported": bool(r.get("imported")),
            **_trust(r, prov),
        })
    return pd.DataFrame(recs, columns=SUMMARY_COLUMNS)


def _trust(r: Mapping[str, Any], prov: Mapping[str, Any]) -> dict[str, Any]:
    """What a reader needs before trusting a profile: its model (position term, tie model), the tie
    rate, the best baseline's held-out accuracy and whether the profile beats it, and how many
    attributes were measured."""
    model = prov.get("model") or {}
    ties = prov.get("ties") or {}
    obs = ties.get("observations")
    best = best_baseline(prov.get("baselines"))
    attrs = list(r.get("attributes") or [])
    mask = measured_mask(r) if attrs else []
    n_attr = sum(1 for k in attrs if is_attribute_term(k))
    n_meas = sum(1 for k, ok in zip(attrs, mask) if is_attribute_term(k) and ok)
    labels = prov.get("labels") or {}
    soft = (f", soft labels ({labels.get('soft')} with the judge's P(A))" if labels.get("soft")
            else ", hard labels" if labels.get("mode") == "hard" else "")
    if labels.get("conflicts"):
        soft += f", {labels['conflicts']} of them on the other side of the choice"
    return {
        "model": (("position term" if model.get("position") else "no position term")
                  + (", ties as outcome (Davidson)" if model.get("ties") == "davidson" else ", ties dropped") + soft)
        if model else None,
        "ties": ties.get("observed"),
        "tie_rate": (ties.get("observed") / obs) if obs else None,
        "baseline": best[0] if best else None,
        "baseline_accuracy": best[1] if best else None,
        "beats_baseline": beats_baselines(r.get("accuracy"), prov.get("baselines")),
        "measured": f"{n_meas} of {n_attr}" if attrs else None,
    }


def _json_safe(v: Any) -> Any:
    if v is pd.NA:
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def export_profiles(rows: Sequence[Mapping[str, Any]], fmt: str = "csv") -> str:
    """Stored profiles as a download: ``csv`` (one line per profile and attribute, with the interval,
    the display percent and the profile's accuracy and provenance repeated on each line) or
    ``json`` (one object per profile: its attributes with their numbers, and the full provenance)."""
    frame = profile_frame(rows)
    summary = profile_summary(rows)
    if fmt == "csv":
        key = ["dataset", "scope", "judge", "feature_source", "method"]
        extra = summary[key + ["n", "accuracy", "log_loss", "interval", "sampler", "prior_scale", "seed", "draws",
                               "folds", "fitted_at", "versions", "fingerprint", "imported"]]
        return safecsv.to_csv(frame.merge(extra, on=key, how="left"), index=False)
    if fmt != "json":
        raise ValueError(f"format must be 'csv' or 'json', not {fmt!r}")
    out = []
    for r, (_, s) in zip(rows, summary.iterrows()):
        f = frame[(frame["judge"] == r["judge"]) & (frame["scope"] == r.get("scope"))
                  & (frame["method"] == r.get("method")) & (frame["dataset"] == r.get("dataset"))
                  & (frame["feature_source"] == r.get("feature_source"))]
        attrs = f[["attribute", "label", "mean", "sd", "lo", "hi", "p_pos", "percent", "percent_lo", "percent_hi",
                   "rhat", "ess", "status", "differing"]].astype(object).to_dict(orient="records")
        out.append({
            **{k: s[k] for k in ("dataset", "scope", "judge", "feature_source", "method", "n", "accuracy", "log_loss",
                                 "interval", "imported")},
            "display": "percent = 100 * sigmoid(weight): P(preferred | better on this attribute alone), in %",
            "attributes": attrs,
            "provenance": r.get("provenance") or {},
            "fingerprint": r.get("fingerprint"),
        })
    return json.dumps(_json_safe(out), indent=2, default=str)


def measured_mask(row: Mapping[str, Any]) -> list[bool]:
    """Per term of a stored profile, whether its weight is an estimate (:func:`measurement`): the
    position term and profiles that did not record what they measured (imported ones) count as measured."""
    prov = row.get("provenance") or {}
    differing = prov.get("differing") or []
    threshold = prov.get("min_differing")
    attrs = list(row["attributes"])
    out = []
    for i, k in enumerate(attrs):
        n = differing[i] if i < len(differing) else None
        ok = not is_attribute_term(k) or n is None or measurement(n, *(() if threshold is None else (threshold,))) == "measured"
        out.append(ok)
    return out


# --------------------------------------------------------------------------- which profile stands for a judge

#: The method preference when none is asked for: NUTS ("exact") before the fast sampler, then the
#: demo's known weights ("truth"), then imported / published means. Then the richer feature set.
METHOD_ORDER = ("exact", "fast", "truth", "imported")
#: methods whose profiles are fitted here (posterior draws, held-out accuracy, an inputs key)
FITTED_METHODS = ("exact", "fast")


def method_rank(method: str) -> tuple[int, str]:
    """Sort key of a method under :data:`METHOD_ORDER` (unknown methods last, by name)."""
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def stored_set(store, dataset: str, feature_source: str | None = None, method: str | None = None) -> tuple[str, str]:
    """(feature source, method) of the dataset's stored profiles that a whole-dataset read uses
    (export-profiles, similarity): as asked, else the first present, feature sets by name (as the
    Profiles and Similarity pages list them) and methods by :func:`method_rank`. A ValueError says
    what is stored when nothing matches."""
    rows = store.profiles(dataset=dataset, columns=["feature_source", "method"])
    if not rows:
        raise ValueError(f"no profiles for dataset {dataset!r}: fit them with `python -m core fit --dataset "
                         f"{dataset}` (or import published ones with `python -m core profiles --import DIR`)")
    sources = sorted({r["feature_source"] for r in rows})
    source = feature_source or sources[0]
    methods = {r["method"] for r in rows if r["feature_source"] == source}
    if not methods:
        raise ValueError(f"no profiles of dataset {dataset!r} on features {source!r} (there are: {', '.join(sources)})")
    method = method or sorted(methods, key=method_rank)[0]
    if method not in methods:
        raise ValueError(f"no {method!r} profiles of dataset {dataset!r} (there are: {', '.join(sorted(methods))})")
    return source, method


def preference(row: Mapping[str, Any], available: set[str] | None = None) -> tuple:
    """Sort key of a stored profile row under the one choice rule: with ``available`` (the feature
    sets a sample has), profiles on those first; then :func:`method_rank`; then the feature set's
    rank (``featureset``); then the names, so the choice never depends on the store's order."""
    src = row.get("feature_source") or ""
    return (0 if available is None or src in available else 1, *method_rank(row["method"]),
            feature_set_rank(src), src)


def choose(rows: Iterable[Mapping[str, Any]], *, available: set[str] | None = None) -> Any:
    """The profile that stands for a judge among ``rows`` (one judge and scope), or None."""
    rows = list(rows)
    return min(rows, key=lambda r: preference(r, available)) if rows else None


def pick_profile(store, dataset: str, scope: str, judge: str, *, method: str | None = None,
                 feature_source: str | None = None, available: set[str] | None = None,
                 with_draws: bool = False) -> dict[str, Any] | None:
    """The stored profile of ``judge`` in ``scope`` under :func:`choose` (the method and feature set
    when asked for), or None. The Samples waterfall, the simulator and the bias card all use it."""
    return choose(store.profiles(dataset=dataset, scope=scope, judges=[judge], method=method,
                                 feature_source=feature_source, with_draws=with_draws), available=available)


# ---------------------------------------------------------------- what the Profiles page shows


def profile_view(rows: Sequence[Mapping[str, Any]], truth_rows: Sequence[Mapping[str, Any]] | None = None,
                 k: int = 5) -> dict[str, Any]:
    """One scope's profiles as the Profiles page shows them: the per-attribute ``frame``, each judge's
    ``top`` and bottom ``k`` attributes, the accuracy and diagnostics ``summary``; ``truth``: the
    known weights (a synthetic dataset's, method "truth") drawn over the fitted ones, when given."""
    frame = profile_frame(rows)
    truth = profile_frame(truth_rows)[["judge", "attribute", "label", "percent"]] if truth_rows else None
    return {"frame": frame, "top": top_bottom(frame, k), "summary": profile_summary(rows), "truth": truth}
