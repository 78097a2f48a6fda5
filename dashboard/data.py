"""Thin cached wrappers over core: the only way pages reach the store.

Caches are keyed by the store path and a cheap fingerprint of the store's contents, so a
write by another session, the CLI or a worker shows up on the next rerun without a restart.
(The fingerprint argument is named ``fp``, not ``_fp``: st.cache_data leaves arguments whose
names start with an underscore out of the cache key.)
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import config, judges
from core.store import Store, open_store


def csv_download(frame: pd.DataFrame, *, index: bool = True) -> str:
    """A frame as CSV for a download button, formula cells neutralised (``core.safecsv``)."""
    from core import safecsv

    return safecsv.to_csv(frame, index=index)


def json_download(frame: pd.DataFrame) -> str:
    """A frame as a JSON list of records (dates as ISO text, missing values as null)."""
    return frame.to_json(orient="records", date_format="iso", indent=1, force_ascii=False)


def download_buttons(frame, stem: str, key: str, *, where=None, what: str = "Table") -> None:
    """A "CSV" and a "JSON" download of exactly the rows a table shows (the CSV through core.safecsv).
    ``frame``: the frame, or a function returning it (called only when a button is clicked);
    ``where``: a container or column (default: the page)."""
    target = where or st
    get = frame if callable(frame) else (lambda: frame)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    c1, c2 = target.columns(2) if where is None else (target, target)
    c1.download_button(f"{what} (CSV)", lambda: csv_download(get(), index=False), file_name=stem + ".csv",
                       mime="text/csv", on_click="ignore", icon=":material/download:", key=key + "_csv")
    c2.download_button(f"{what} (JSON)", lambda: json_download(get()), file_name=stem + ".json",
                       mime="application/json", on_click="ignore", icon=":material/download:", key=key + "_json")


def store() -> Store:
    """This thread's connection to the configured store."""
    return open_store(config.settings().store)


def fingerprint() -> tuple:
    """The key of every cached read: the store's path and version (moves with any content change)."""
    s = store()
    return (str(s.path),) + s.version()


@st.cache_resource(show_spinner=False)
def store_location() -> config.StoreLocation:
    """Where the store lives and what is wrong with it, checked once per server (and logged)."""
    import logging

    loc = config.check_store_location()
    log = logging.getLogger("prefdissect")
    for w in loc.warnings:
        log.warning("store: %s", w)
    if loc.error:
        log.error("store: %s", loc.error)
    return loc


def needs_seeding() -> bool:
    """The store is empty and seeding is on: the first visit builds the demo."""
    return config.settings().seed_demo and store().is_empty()


def ensure_seeded(on_progress=None) -> bool:
    """Build the synthetic demo when the store is empty (and seeding is on). True if it built.
    ``on_progress(text, done, total)`` hears each step: the data written, then the fit's steps."""
    s = store()
    if not config.settings().seed_demo or not s.is_empty():
        return False
    from core import demo

    demo.build_demo(s, on_progress=on_progress)
    return True


@st.cache_data(show_spinner=False, max_entries=32)
def overview(fp: tuple) -> dict:
    ov = store().overview()
    return {
        "counts": ov.counts,
        "datasets": pd.DataFrame(ov.datasets),
        "scenarios": pd.DataFrame(ov.scenarios, columns=["dataset", "scenario_group", "samples"]),
        "judges": pd.DataFrame(ov.judges),
    }


@st.cache_data(show_spinner=False, max_entries=32)
def catalog(fp: tuple) -> dict:
    """What the job and upload forms choose from: datasets, samples per scenario group, judge names.
    A fraction of ``overview``: no per-judge label counts, which cost a scan of every label."""
    s = store()
    return {
        "datasets": pd.DataFrame(s.datasets(), columns=["name", "source", "licence", "description", "synthetic",
                                                        "imported_at", "samples", "judges", "labels"]),
        "scenarios": pd.DataFrame(s.scenario_counts(), columns=["dataset", "scenario_group", "samples"]),
        "judges": pd.DataFrame(s.rows("SELECT name FROM judges ORDER BY name"), columns=["name"]),
    }


@st.cache_data(show_spinner=False, max_entries=32)
def category_counts(fp: tuple) -> pd.DataFrame:
    """Samples per dataset and user category (only datasets that brought categories)."""
    return pd.DataFrame(store().category_counts(), columns=["dataset", "category", "samples", "scenario_group"])


@st.cache_data(show_spinner=False, max_entries=32)
def agreement(fp: tuple, dataset: str | None) -> pd.DataFrame:
    return judges.agreement_frame(store(), dataset)


# --------------------------------------------------------------------------- profiles and similarity
# (pages/profiles.py and pages/similarity.py)

from core import compare, scopes as _scopes  # noqa: E402
from core.profile import export_profiles, profile_frame, profile_summary, top_bottom  # noqa: E402


@st.cache_data(show_spinner=False, max_entries=16)
def profile_index(fp: tuple) -> pd.DataFrame:
    """Which profiles are stored: one row per profile (its key, samples used, imported or fitted)."""
    cols = ["dataset", "feature_source", "method", "scope", "judge", "n", "imported"]
    return pd.DataFrame(store().profiles(columns=cols), columns=cols)


def _profiles_in_order(dataset: str, feature_source: str, method: str, scope: str, judges: tuple[str, ...]):
    rows = store().profiles(dataset=dataset, scope=scope, feature_source=feature_source, method=method,
                            judges=list(judges), with_draws=True)
    rank = {j: i for i, j in enumerate(judges)}
    return sorted(rows, key=lambda r: rank.get(r["judge"], len(rank)))


@st.cache_data(show_spinner=False, max_entries=64)
def profile_rows(fp: tuple, dataset: str, feature_source: str, method: str, scope: str,
                 judges: tuple[str, ...]) -> list[dict]:
    """Stored profiles of these judges in one scope, with their posterior draws, in the judges' order."""
    return _profiles_in_order(dataset, feature_source, method, scope, judges)


@st.cache_data(show_spinner=False, max_entries=64)
def profile_view(fp: tuple, dataset: str, feature_source: str, method: str, scope: str,
                 judges: tuple[str, ...], k: int = 5) -> dict:
    """What the Profiles page shows: per-attribute frame, top/bottom attributes, accuracy and diagnostics."""
    rows = profile_rows(fp, dataset, feature_source, method, scope, judges)
    frame = profile_frame(rows)
    truth = None
    if method != "truth":  # a synthetic dataset's known weights, drawn over the fitted ones
        known = _profiles_in_order(dataset, feature_source, "truth", scope, judges)
        if known:
            truth = profile_frame(known)[["judge", "attribute", "label", "percent"]]
    return {"frame": frame, "top": top_bottom(frame, k), "summary": profile_summary(rows),
            "truth": truth}


def profile_export(dataset: str, feature_source: str, method: str, scope: str, judges: tuple[str, ...],
                   fmt: str) -> str:
    """The weights download (CSV or JSON), made when the button is clicked, not on every view. It
    runs in Streamlit's download thread, outside any page run, so it reads the store directly."""
    return export_profiles(_profiles_in_order(dataset, feature_source, method, scope, judges), fmt)


@st.cache_data(show_spinner=False, max_entries=64)
def weight_difference(fp: tuple, dataset: str, feature_source: str, method: str, scope: str, a: str,
                      b: str) -> pd.DataFrame:
    """Judge a minus judge b per attribute, with intervals from the stored posterior draws."""
    rows = {r["judge"]: r for r in profile_rows(fp, dataset, feature_source, method, scope, (a, b))}
    return compare.difference_of(rows[a], rows[b])


@st.cache_data(show_spinner=False, max_entries=64)
def differing_samples(fp: tuple, dataset: str, feature_source: str, scope: str) -> dict[str, int]:
    """Per attribute, how many samples of the scope differ on it (A and B compare unequal);
    empty when the dataset has no samples stored (imported profiles)."""
    return store().differing_counts(dataset, feature_source, scope)


@st.cache_data(show_spinner=False, max_entries=16)
def judge_details(fp: tuple) -> pd.DataFrame:
    """Every judge with labels: kind and size (billions of parameters, when known)."""
    return pd.DataFrame(store().judges(), columns=["name", "kind", "size_b", "notes", "labels"])


@st.cache_data(show_spinner=False, max_entries=16)
def profile_weights(fp: tuple, dataset: str, feature_source: str, method: str) -> dict:
    """{scope: {judge: mean weights}} of every stored profile: read once for every scope's similarity."""
    return compare.weights_from_rows(store().profiles(dataset=dataset, feature_source=feature_source, method=method,
                                                      columns=["scope", "judge", "attributes", "mean",
                                                               "provenance"]))


@st.cache_data(show_spinner=False, max_entries=32)
def similarity(fp: tuple, dataset: str, feature_source: str, method: str, scope: str | None,
               judges: tuple[str, ...], corr: str) -> compare.SimilarityReport:
    """Judge similarity (``compare.similarity_report``, as the CLI prints it)."""
    return compare.similarity_report(profile_weights(fp, dataset, feature_source, method), scope=scope,
                                     judges=judges, corr=corr)


@st.cache_data(show_spinner=False, max_entries=32)
def judge_groups(fp: tuple, dataset: str, feature_source: str, method: str, scope: str | None,
                 judges: tuple[str, ...], corr: str, by: str, split: float = 30.0, k: int = 2) -> dict[str, list[str]]:
    """Automatic judge groups: by size (``judges.size_b``, else read off the name, split at
    ``split`` B), by kind, or by cutting the clustering into ``k`` clusters."""
    if by == "clusters":
        return compare.cluster_groups(similarity(fp, dataset, feature_source, method, scope, judges, corr).matrix, k)
    details = judge_details(fp).set_index("name")
    if by == "kind":
        return compare.groups_by(judges, details["kind"].to_dict())
    return compare.size_groups(judges, compare.judge_sizes(judges, details["size_b"].dropna().to_dict()), split)


@st.cache_data(show_spinner=False, max_entries=32)
def group_similarity(fp: tuple, dataset: str, feature_source: str, method: str, scope: str | None,
                     judges: tuple[str, ...], corr: str, groups: tuple[tuple[str, tuple[str, ...]], ...]) -> pd.DataFrame:
    """Intra- and inter-group similarity of judge groups, as a table (see ``compare.group_table``)."""
    matrix = similarity(fp, dataset, feature_source, method, scope, judges, corr).matrix
    members = {name: [j for j in js if j in matrix.index] for name, js in groups}
    return compare.group_table(compare.group_similarity(matrix, members), members)


# --------------------------------------------------------------------------- jobs, annotation, judges
# (pages/annotate.py and pages/judges.py; live job state is read uncached by dashboard/jobview.py)

from core import featureset as _featureset, jobs as _jobs  # noqa: E402


def activity_fingerprint() -> tuple:
    """``fingerprint()`` plus job activity (requests stored, jobs): cost estimates change when a job
    stores answers, which the plain fingerprint does not see (its features it does)."""
    return fingerprint() + _jobs.activity(store())


@st.cache_data(show_spinner=False, max_entries=16)
def job_estimate(fp: tuple, kind: str, dataset: str, scenarios: tuple[str, ...], limit: int | None,
                 llm: tuple[tuple[str, object], ...], both_orders: bool) -> dict:
    """Cost estimate of an annotate or judge job before it starts (core.annotate.estimate: the
    tokens of the actual prompts x the prices, per step, for the requests not answered yet)."""
    from core.llm import LLMSettings

    params = {"dataset": dataset, "scenarios": list(scenarios), "limit": limit, "both_orders": both_orders}
    settings = LLMSettings(**dict(llm))  # no key: an estimate needs none
    est, sampled = _jobs.estimate(store(), kind, params, settings)
    steps = pd.DataFrame([{"step": k, **v} for k, v in est.by_step.items()],
                         columns=["step", "requests", "input_tokens", "output_tokens", "cost"])
    return {"estimate": est, "sampled": sampled, "steps": steps}


@st.cache_data(show_spinner=False, max_entries=16)
def feature_sources(fp: tuple, dataset: str) -> dict:
    """The dataset's feature sets (with samples covered) and the one fitting uses by default."""
    sources = store().feature_sources(dataset)  # one read: a job writing features cannot come between two
    return {"sources": sources, "default": _featureset.richest(r["source"] for r in sources)}


@st.cache_data(show_spinner=False, max_entries=16)
def judge_summary(fp: tuple, dataset: str | None) -> dict:
    """Per-judge counts and position consistency, and every pair's shared / agreeing samples (one read)."""
    return judges.judge_summary(store(), dataset)


@st.cache_data(show_spinner=False, max_entries=32)
def judge_table(fp: tuple, dataset: str | None, reference: str | None) -> pd.DataFrame:
    """Judges with label counts, datasets, position consistency and agreement with ``reference``."""
    return judges.with_reference(judge_summary(fp, dataset), reference)


@st.cache_data(show_spinner=False, max_entries=16)
def judge_pairs(fp: tuple, dataset: str | None) -> pd.DataFrame:
    """Agreement of every two judges (as ``agreement``), from the same read."""
    return judges.agreement_pairs(judge_summary(fp, dataset))


@st.cache_data(show_spinner=False, max_entries=16)
def dataset_judges(fp: tuple, dataset: str) -> list[str]:
    """Names of the judges with labels on the dataset."""
    return store().judge_names(dataset)


@st.cache_data(show_spinner=False)
def fit_scopes() -> list[str]:
    return _scopes.to_fit()


# --------------------------------------------------------------------------- simulator (pages/simulate.py)

from core import simulate as _simulate  # noqa: E402


@st.cache_data(show_spinner=False, max_entries=16)
def simulation_datasets(fp: tuple) -> list[str]:
    """Datasets with a profile whose features they have: the ones the simulator can run on."""
    return _simulate.datasets(store())


@st.cache_data(show_spinner=False, max_entries=16)
def simulation_options(fp: tuple, dataset: str) -> dict:
    """Per feature set, scope and method the judges with a profile; the responding models of a dataset."""
    return _simulate.simulation_options(store(), dataset)


@st.cache_resource(show_spinner=False, max_entries=8)
def simulation_pairs(fp: tuple, dataset: str, feature_source: str, scope: str):
    """The scope's pairs (features, models, where conditional attributes apply), read once: moving a
    slider then costs only the simulation, not a read of every feature of the dataset. A shared
    resource, not a copy per call (the simulator only reads it): unpickling 5,000 pairs on every
    rerun cost more than the simulation."""
    return _simulate.load_pairs(store(), dataset, feature_source, scope)


def _pairs_or_none(fp: tuple, dataset: str, feature_source: str | None, scope: str):
    return simulation_pairs(fp, dataset, feature_source, scope) if feature_source else None


def _estimate_row(judge: str, stage: str, e) -> dict:
    return {"judge": judge, "stage": stage, "mean": e.mean, "lo": e.lo, "hi": e.hi,
            "pred_lo": e.pred_lo, "pred_hi": e.pred_hi}


@st.cache_data(show_spinner=False, max_entries=32)
def simulation(fp: tuple, dataset: str, judges: tuple[str, ...], scope: str, model: str | None, opponent: str,
               inject: tuple[tuple[str, float], ...], suppress: tuple[tuple[str, float], ...],
               method: str | None, feature_source: str | None = None) -> dict:
    """core.simulate.simulate for several judges, with frames for the page's tables and charts."""
    sims = _simulate.simulate(store(), dataset, list(judges), scope=scope, model=model, opponent=opponent,
                              inject=dict(inject), suppress=dict(suppress), method=method,
                              feature_source=feature_source,
                              pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    rates, contrib, prov = [], [], []
    for s in sims:
        if s.observed is not None:
            rates.append({"judge": s.judge, "stage": "observed", "mean": s.observed, "lo": s.observed_lo,
                          "hi": s.observed_hi, "pred_lo": None, "pred_hi": None})
        rates.append(_estimate_row(s.judge, "predicted before", s.before))
        rates.append(_estimate_row(s.judge, "predicted after", s.after))
        contrib += [{"judge": s.judge, "attribute": c.attribute, "label": c.label, "direction": c.direction,
                     "rate": c.rate, "applies": c.applies, "mean": c.mean, "lo": c.lo, "hi": c.hi}
                    for c in s.contributions]
        prov.append({**s.profile, "pairs": s.pairs, "labelled": s.labelled,
                     "pairs_fingerprint": s.settings["pairs_fingerprint"], "seconds": s.settings["seconds"]})
    return {"results": sims, "rates": pd.DataFrame(rates), "contributions": pd.DataFrame(contrib),
            "provenance": pd.DataFrame(prov)}


@st.cache_data(show_spinner=False, max_entries=32)
def injection_ranking(fp: tuple, dataset: str, judge: str, scope: str, model: str | None, opponent: str,
                      method: str | None, feature_source: str | None = None) -> dict:
    """What to inject: every attribute alone (rate 1), ranked by M's predicted gain under one judge."""
    r = _simulate.injection_ranking(store(), dataset, judge, scope=scope, model=model, opponent=opponent,
                                    method=method, feature_source=feature_source,
                                    pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    frame = pd.DataFrame([{"attribute": g.attribute, "label": g.label, "mean": g.mean, "lo": g.lo, "hi": g.hi,
                           "p_positive": g.p_positive, "applies": g.applies} for g in r.gains])
    top = frame.head(5).assign(part="top 5")
    bottom = frame.tail(5).iloc[::-1].assign(part="bottom 5")
    return {"ranking": r, "frame": frame, "extremes": pd.concat([top, bottom], ignore_index=True)}


@st.cache_data(show_spinner=False, max_entries=32)
def controlled_leaderboard(fp: tuple, dataset: str, judge: str, attributes: tuple[str, ...], scope: str,
                           method: str | None, feature_source: str | None = None) -> dict:
    """Raw and attribute-controlled win rates of every responding model under one judge."""
    lb = _simulate.controlled_win_rates(store(), dataset, judge, list(attributes), scope=scope, method=method,
                                        feature_source=feature_source,
                                        pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    frame = pd.DataFrame([r.__dict__ for r in lb.rows])
    return {"leaderboard": lb, "frame": frame, "warnings": lb.warnings}


@st.cache_data(show_spinner=False, max_entries=32)
def calibration(fp: tuple, dataset: str, judges: tuple[str, ...], scope: str, method: str | None,
                feature_source: str | None = None) -> dict:
    """Predicted against observed P(A preferred) by decile, per judge, and each judge's calibration error."""
    cals = _simulate.calibration(store(), dataset, list(judges), scope=scope, method=method,
                                 feature_source=feature_source,
                                 pairs=_pairs_or_none(fp, dataset, feature_source, scope))
    bins = pd.DataFrame([{"judge": c.judge, **b} for c in cals for b in c.bins])
    summary = pd.DataFrame([{"judge": c.judge, "pairs": c.pairs, "ece": c.ece, "method": c.profile["method"]}
                            for c in cals])
    return {"bins": bins, "summary": summary}


# --------------------------------------------------------------------------- samples (pages/samples.py)

from core import catalogue as _catalogue, samples as _samples  # noqa: E402
from core.store import SampleFilter  # noqa: E402
from dashboard import sampleurl as _sampleurl  # noqa: E402


def samples_fingerprint() -> tuple:
    """``fingerprint()`` and the last feature and annotation written: an annotation job adds those
    (and fills scenario groups and query cases) without touching samples, labels or profiles."""
    s = store()
    return fingerprint() + tuple(s.conn.execute(
        "SELECT (SELECT MAX(rowid) FROM features), (SELECT MAX(rowid) FROM annotations)").fetchone())


def sample_catalogue() -> dict:
    """Attribute labels, scenario groups and query-case labels, for the filters."""
    return {"attributes": {a.key: a.label for a in _catalogue.attributes()}, "groups": _catalogue.group_keys(),
            "cases": {c.key: c.label for c in _catalogue.query_cases()},
            "rated_as": {a.key: a.annotated_as for a in _catalogue.attributes() if a.annotated_as}}


def sample_scopes(sample: dict) -> list[str]:
    """The profile scopes a sample belongs to: its scenario group, its query cases, "all"."""
    return _scopes.of_sample(sample)


@st.cache_data(show_spinner=False, max_entries=8)
def sample_datasets(fp: tuple) -> list[str]:
    """Datasets that have samples (imported profiles alone have none), largest first."""
    rows = [d for d in store().datasets() if d["samples"]]
    return [d["name"] for d in sorted(rows, key=lambda d: (-d["samples"], d["name"]))]


@st.cache_data(show_spinner=False, max_entries=64)
def sample_dataset_of(fp: tuple, sample_id: str) -> str | None:
    return store().scalar("SELECT dataset FROM samples WHERE id = ?", [sample_id])


@st.cache_data(show_spinner=False, max_entries=16)
def sample_options(fp: tuple, dataset: str) -> _sampleurl.Options:
    """The filters' choices on one dataset: scenario groups present, labelled judges, feature sources."""
    s = store()
    return _sampleurl.Options(scenarios=[r["scenario_group"] for r in s.scenario_counts(dataset)],
                              judges=s.judge_names(dataset),
                              sources=[r["source"] for r in s.feature_sources(dataset)],
                              categories=s.categories(dataset))


@st.cache_data(show_spinner=False, max_entries=64)
def browse(fp: tuple, f: SampleFilter, offset: int, limit: int) -> dict:
    """One page of the filtered list: ``ids`` (in order), the ``frame`` the table shows, ``total``."""
    rows, total = store().browse(f, offset=offset, limit=limit)
    labels = {a.key: a.label for a in _catalogue.attributes()}
    side = {1: "A", -1: "B", 0: "equal", None: None}
    records = []
    for r in rows:
        rec = {"#": r["position"] + 1, "scenario": r["scenario_group"], "query": r["query"]}
        for j, choice in r["choices"].items():
            rec[f"{j}"] = choice
        for a, v in r["features"].items():
            rec[f"{labels.get(a, a)}: better"] = side.get(v, v)
        rec.update({"model A": r["model_a"], "model B": r["model_b"], "words A": r["words_a"], "words B": r["words_b"]})
        if "score" in r:
            rec["match (bm25)"] = -r["score"]
        records.append(rec)
    return {"ids": [r["id"] for r in rows], "frame": pd.DataFrame(records), "total": total,
            "choice_columns": list(f.shown_judges())}


@st.cache_data(show_spinner=False, max_entries=64)
def browse_all(fp: tuple, f: SampleFilter) -> pd.DataFrame:
    """Every row of the filtered list (not one page), with each sample's id first: the list's download."""
    total = store().browse(f, offset=0, limit=1)[1]
    got = browse(fp, f, 0, max(total, 1))
    return got["frame"].assign(id=got["ids"])[["id", *got["frame"].columns]] if got["ids"] else got["frame"]


@st.cache_data(show_spinner=False, max_entries=64)
def browse_index(fp: tuple, sample_id: str, f: SampleFilter) -> int | None:
    return store().browse_index(sample_id, f)


@st.cache_data(show_spinner=False, max_entries=64)
def sample_at(fp: tuple, f: SampleFilter, index: int) -> str | None:
    """The id at a position (0-based) of the filtered list, for previous / next."""
    if index < 0:
        return None
    rows, _ = store().browse(f, offset=index, limit=1)
    return rows[0]["id"] if rows else None


@st.cache_data(show_spinner=False, max_entries=32)
def sample_view(fp: tuple, sample_id: str) -> _samples.SampleView | None:
    return _samples.sample_view(store(), sample_id)


@st.cache_data(show_spinner=False, max_entries=32)
def profiled_judges(fp: tuple, dataset: str) -> list[str]:
    """Judges with a stored profile on the dataset (any scope, any method)."""
    return sorted({p["judge"] for p in store().profiles(dataset=dataset, columns=["judge"])})


@st.cache_data(show_spinner=False, max_entries=64)
def explanation(fp: tuple, sample_id: str, judge: str, scope: str) -> dict:
    """A judge's contributions on one sample (``core.samples.explain``) and the frame the chart draws."""
    e = _samples.explain(store(), sample_id, judge, scope)
    return {"explanation": e, "frame": pd.DataFrame(e.frame_rows, columns=["attribute", "label", "x", "weight",
                                                                            "contribution"])}


@st.cache_data(show_spinner=False, max_entries=32)
def bias_card(fp: tuple, judge: str, dataset: str | None, families: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    """A judge's bias card (``core.bias.bias_card``) as a table; ``families``: extra (pattern, family)
    pairs checked before the built-in map."""
    from core import bias

    fams = {**dict(families), **bias.DEFAULT_FAMILIES} if families else None
    return pd.DataFrame(bias.card_rows(bias.bias_card(store(), judge, dataset, families=fams)))


# ---------------------------------------------------------------- the manipulation experiment (core/experiment.py)
from core import experiment as _experiment  # noqa: E402


@st.cache_data(show_spinner=False, max_entries=16)
def experiments(fp: tuple) -> list[dict]:
    """The stored experiments, newest first: id, name, status, judge, model, created."""
    return [{"id": r["id"], "name": r["name"], "status": r["status"], "created_at": r["created_at"],
             "judge": (r["spec"] or {}).get("judge_name"), "model": ((r["spec"] or {}).get("model") or {}).get("model")}
            for r in store().experiments()]


def _long(arms: list[dict], pairs: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    rows = []
    for a in arms:
        for stage, field in pairs:
            e = a.get(field) or {}
            mean = e.get("rate", e.get("mean"))
            if mean is None:
                continue
            rows.append({"arm": a["arm"], "stage": stage, "mean": mean, "lo": e.get("lo"), "hi": e.get("hi"),
                         "pred_lo": e.get("pred_lo"), "pred_hi": e.get("pred_hi")})
    return pd.DataFrame(rows, columns=["arm", "stage", "mean", "lo", "hi", "pred_lo", "pred_hi"])


@st.cache_data(show_spinner=False, max_entries=16)
def experiment_view(fp: tuple, experiment_id: int) -> dict | None:
    """One experiment: its record, and its result as frames for the page (win rates and shifts, measured
    beside predicted, long form for the charts; the arms' table; the attributes' success rates)."""
    rec = store().experiment(experiment_id)
    if rec is None:
        return None
    result = rec.get("result") or {}
    arms = result.get("arms", [])
    return {"record": rec,
            "rates": _long(arms, (("measured", "measured"), ("predicted", "predicted"),
                                  ("simulated", "simulated"))),
            "shifts": _long(arms, (("measured", "shift"), ("predicted", "predicted_shift"))),
            "table": _experiment.arms_frame(result), "success": _experiment.success_frame(result),
            "within": _experiment.within(result)}


@st.cache_data(show_spinner=False, max_entries=8)
def experiment_profiles(fp: tuple) -> list[dict]:
    """Profiles an experiment can use: fitted on features new answers can get (heuristics or LLM ones)."""
    cols = ["dataset", "scope", "judge", "feature_source", "method"]
    rows = store().profiles(columns=cols)
    ok = [r for r in rows if r["feature_source"] == _experiment.HEURISTIC_SOURCE or r["feature_source"].startswith("llm:")]
    return sorted({tuple(r[c] for c in cols) for r in ok})


def experiment_estimate(experiment_id: int):
    return _experiment.estimate(store(), experiment_id)


def create_experiment(spec: "_experiment.Spec") -> int:
    return _experiment.create(store(), spec)
