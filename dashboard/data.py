"""Thin cached wrappers over core shared by every page: the store, its fingerprint, the first-start
seeding, downloads, and the Overview's reads. Each page type's own wrappers sit in one module beside
this one (datasette's one module per page type): ``data_profiles`` (Profiles, Similarity),
``data_simulator`` (Simulator), ``data_samples`` (Samples), ``data_judges`` (Judges, Annotate & fit,
the job widgets). Pages reach the store only through these.

Caches are keyed by the store path and a cheap fingerprint of the store's contents, so a
write by another session, the CLI or a worker shows up on the next rerun without a restart.
(The fingerprint argument is named ``fp``, not ``_fp``: st.cache_data leaves arguments whose
names start with an underscore out of the cache key.)
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import config, jobs as _jobs
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


@st.cache_resource(show_spinner=False)
def one_blas_thread() -> bool:
    """Limit BLAS to one thread in the server process, once. The pages' products are small (a few
    chains x 31 weights x some thousand pairs) and sessions run on threads of their own: several BLAS
    threads per product only wait on each other, and on a busy machine they spin (the bias card's
    self-preference fit took 16 s of CPU on the default threads and 2 s on one, at the paper's scale,
    load 8 on 2 cores). Workers (fits, annotation) are processes of their own and keep their setting."""
    try:  # threadpoolctl comes with PyMC
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return False
    threadpool_limits(limits=1, user_api="blas")  # not used as a context manager: the limit stays
    return True


def needs_seeding() -> bool:
    """The store is empty and seeding is on: the first visit builds the demo."""
    return config.settings().seed_demo and store().is_empty()


def warm_imports() -> None:
    """Import the chart library (Altair, through ``dashboard.charts``) and the judges' agreement (SciPy,
    through ``core.judges``) on a background thread. A first start calls it as the demo is written (its
    prebuilt copy copied in, or, generated, written): that write runs mostly in SQLite, without the GIL, so
    the imports (some 0.6-1.5 s) go on beside it and the Overview, which needs them, waits only for what is
    left of them (beside the generation, pure Python, they only took turns with it; before it, they held up
    the page's "writing the demo" notice)."""
    import importlib
    import threading

    def imports() -> None:
        for module in ("dashboard.charts", "core.judges"):  # Altair; SciPy (the agreement's intervals)
            importlib.import_module(module)

    threading.Thread(target=imports, name="warm-imports", daemon=True).start()


def ensure_seeded(on_progress=None) -> int | None:
    """Build the synthetic demo's data when the store is empty (and seeding is on: ``core.demo.build_demo``
    copies it from its prebuilt file, under a second, or generates and writes it), then queue the fit of
    its judges' profiles as a background job (``core.jobs``), so the first page shows in seconds rather
    than after the fit; its worker process starts as the run ends (:func:`start_demo_fit`). The fit
    job's id, or None when nothing was built. ``on_progress(text, done, total)`` hears the data being
    written."""
    s = store()
    if not config.settings().seed_demo or not s.is_empty():
        return None
    from core import demo, jobs

    def heard(stage: str, done: int, total: int) -> None:
        if stage.startswith("writing"):  # the write (or the prebuilt demo's copy) runs in SQLite, mostly
            warm_imports()  # without the GIL, so the Overview's chart library is imported beside it, not after
        if on_progress:
            on_progress(stage, done, total + 1)

    demo.build_demo(s, fit=False, on_progress=heard)
    if on_progress:
        on_progress("queueing the fit of the judges' profiles, to run in the background", 1, 1)
    return jobs.submit(s, "fit", {"dataset": demo.DEMO_DATASET, "features": demo.FEATURE_SOURCE}).id


def start_demo_fit(job) -> None:
    """Start a worker on the demo's fit when it is queued without one (``jobs.ensure_worker``: at most one,
    however many sessions ask). The app calls it as a run ends: on a first start the worker's own start
    (an interpreter and a fit's imports, seconds of CPU on a small machine) then follows the first
    Overview instead of competing with it; a store left with the fit queued (the server stopped before
    its worker started) gets its worker on the next visit."""
    from core import jobs

    if job is not None and job.status == "queued":
        jobs.ensure_worker(store(), job.id)


def demo_fit_job():
    """The newest fit of the demo's profiles (a first start runs it in the background), or None. Read
    fresh on every call: while it is queued or running it tells a page to fill in when it ends; when it
    failed, every page says so (dashboard/app.py)."""
    from core import demo, jobs

    for job in jobs.list_jobs(store(), limit=20):
        if job.kind == "fit" and job.params.get("dataset") == demo.DEMO_DATASET:
            return job
    return None


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
        "judges": pd.DataFrame({"name": s.all_judge_names()}, columns=["name"]),
    }


@st.cache_data(show_spinner=False, max_entries=32)
def category_counts(fp: tuple) -> pd.DataFrame:
    """Samples per dataset and user category (only datasets that brought categories)."""
    return pd.DataFrame(store().category_counts(), columns=["dataset", "category", "samples", "scenario_group"])


@st.cache_data(show_spinner=False, max_entries=32)
def agreement(fp: tuple, dataset: str | None) -> pd.DataFrame:
    from core import judges  # with SciPy: imported here (a first start imports it beside the demo's write)

    return judges.agreement_frame(store(), dataset)


def activity_fingerprint() -> tuple:
    """``fingerprint()`` plus job activity (requests stored, jobs): cost estimates change when a job
    stores answers, which the plain fingerprint does not see (its features it does)."""
    return fingerprint() + _jobs.activity(store())
