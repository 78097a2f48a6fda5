"""Streamlit entry point: ``streamlit run dashboard/app.py``.

Sets up the page, asks for sign-in when the deployment is configured for it (dashboard/auth.py),
seeds the synthetic demo into an empty store, and registers every page of ``pages/`` with
``st.navigation``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import auth, data  # noqa: E402
from dashboard.render import plain  # noqa: E402

PAGES = [
    st.Page(ROOT / "pages" / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(ROOT / "pages" / "samples.py", title="Samples", icon=":material/table_view:", url_path="samples"),
    st.Page(ROOT / "pages" / "profiles.py", title="Profiles", icon=":material/bar_chart:", url_path="profiles"),
    st.Page(ROOT / "pages" / "similarity.py", title="Similarity", icon=":material/grid_on:", url_path="similarity"),
    st.Page(ROOT / "pages" / "judges.py", title="Judges", icon=":material/gavel:", url_path="judges"),
    st.Page(ROOT / "pages" / "annotate.py", title="Annotate & fit", icon=":material/model_training:",
            url_path="annotate"),
    st.Page(ROOT / "pages" / "simulate.py", title="Simulator", icon=":material/science:", url_path="simulate"),
    st.Page(ROOT / "pages" / "data.py", title="Your data", icon=":material/upload_file:", url_path="data"),
]

st.set_page_config(page_title="Preference dissection", page_icon=":material/balance:", layout="wide")

data.one_blas_thread()
where = data.store_location()
if where.error:  # nothing can be saved: say why in one line rather than fail on the first write
    st.error(f"Cannot start: {where.error}", icon=":material/error:")
    st.stop()

user = auth.gate()  # a session that is not signed in sees only the sign-in
if where.warnings and user.can_edit:
    with st.sidebar:
        for w in where.warnings:
            st.warning(plain(w), icon=":material/warning:")

if "seeded" not in st.session_state:
    if data.needs_seeding():  # first start: say what is happening instead of a blank wait
        with st.status("First start: writing the synthetic demo (a few seconds, once)", expanded=True) as box:
            st.caption("Generated pairs and four judges modelled on the paper's published profiles, so every page "
                       "has something to show; import your own data on the Your data page.")
            bar = st.progress(0.0, text="writing the generated pairs")
            job_id = data.ensure_seeded(lambda stage, i, n: bar.progress(min(1.0, i / n) if n else 0.0, text=stage))
            st.session_state["seeded"] = job_id is not None
            box.update(label="The demo is ready; its judges' profiles are being fitted in the background"
                       + (f" (job {job_id})" if job_id else ""), state="complete", expanded=False)
    else:
        st.session_state["seeded"] = False


@st.fragment(run_every=2.0)
def demo_fit_notice() -> None:
    """While the demo's profiles are fitted in the background, say so on every page; when the fit ends,
    run the page again so it fills in (or shows that the fit failed)."""
    job = data.demo_fit_job()
    if job is None or not job.active:
        if st.session_state.pop("demo_fit_seen", None):
            st.rerun()  # the profiles are in (or the fit failed): the page shows it
        return
    st.session_state["demo_fit_seen"] = job.id
    step = f", step {job.done} of {job.total}" if job.total else ""
    st.info(f"The demo judges' profiles are being fitted (job {job.id}, {job.status}{step}); the Profiles, "
            "Similarity and Simulator pages and the Samples waterfall fill in when it is done.",
            icon=":material/hourglass_top:")


def demo_fit_failed(job) -> None:
    """The demo's background fit failed (or lost its worker): say so on every page, with the job, its
    error and the way to run it again, rather than leave the profile pages empty without a word."""
    reason = ("its worker stopped (no heartbeat)" if job.stale else job.error or job.message or "no reason recorded")
    step = ("Run it again here, or open Annotate & fit for the job's log." if user.can_edit else
            "An editor can run it again; Annotate & fit shows the job's log.")
    st.warning(f"The fit of the demo judges' profiles failed (job {job.id}): {plain(reason)}. The Profiles, "
               f"Similarity and Simulator pages and the Samples waterfall stay empty until it succeeds. {step}",
               icon=":material/error:")
    c1, c2 = st.columns([1, 3])
    if user.can_edit and c1.button("Run the fit again", key="demo_fit_retry", icon=":material/replay:"):
        from core import jobs

        jobs.launch(data.store(), job.kind, job.params)  # the same job, queued again, and a worker on it
        st.session_state["demo_fit_seen"] = job.id
        st.rerun()
    c2.page_link(PAGES[5], label="Annotate & fit: the job's log and history", icon=":material/model_training:")


demo_job = data.demo_fit_job()
if demo_job is not None and demo_job.active:
    demo_fit_notice()
elif demo_job is not None and (demo_job.status == "failed" or demo_job.stale):
    demo_fit_failed(demo_job)

try:
    st.navigation(PAGES).run()
finally:  # the page is sent: now the demo's queued fit gets its worker (also when the page stopped or reran)
    data.start_demo_fit(demo_job)
