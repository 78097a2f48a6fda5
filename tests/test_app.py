"""Page tests with Streamlit's AppTest: what the pages show comes from the store."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import judges
from core.store import Store
from tests.stsession import frame_with, open_page

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty_store(tmp_path, monkeypatch):
    """An empty store file made the app's store: the first run builds the demo into it (when seeding is on)."""
    path = tmp_path / "store.db"
    monkeypatch.setenv("PREFDISSECT_STORE", str(path))
    return path


def test_first_start_seeds_the_demo_and_overview_shows_store_numbers(empty_store, monkeypatch):
    """The first run on an empty store writes the demo and starts its fit as a background job. The worker's
    start is recorded, not made (a real worker here fitted the demo for 12 CPU s beside the rest of the
    suite, and nothing read its result; tests/test_jobs.py runs real workers)."""
    import os

    from core import jobs

    started = []
    monkeypatch.setattr(jobs, "start_worker", lambda path, job_id, env=None: started.append(job_id) or os.getpid())
    at = open_page()
    with Store(empty_store) as s:
        counts = s.table_counts()
        judge_rows = s.judges()
        fits = [j.id for j in jobs.list_jobs(s) if j.kind == "fit"]
    assert counts["samples"] >= 300  # the app built the demo on an empty store
    assert len(fits) == 1 and started == fits  # and started the fit of its profiles
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Datasets": f"{counts['datasets']:,}",
        "Samples": f"{counts['samples']:,}",
        "Judges": f"{counts['judges']:,}",
        "Labels": f"{counts['labels']:,}",
    }
    assert any("synthetic" in c.value for c in at.caption)
    judges_df = next(df.value for df in at.dataframe if "kind" in df.value.columns)
    assert sorted(judges_df["name"]) == sorted(j["name"] for j in judge_rows)
    assert dict(zip(judges_df["name"], judges_df["labels"])) == {j["name"]: j["labels"] for j in judge_rows}


def test_first_overview_does_not_wait_for_the_demo_fit(empty_store, demo_file, monkeypatch):
    """Issue 17 point 6, a first start in seconds: on an empty store the app writes the demo's data and
    renders the Overview at once; the judges' profiles are fitted by a background job (a worker process).
    Here the worker is not started, so the job stays queued: the Overview rendered without the fit."""
    import os

    from core import demo, fit, jobs
    from tests.conftest import demo_samples

    started = []
    monkeypatch.setattr(jobs, "start_worker", lambda path, job_id, env=None: started.append(job_id) or os.getpid())
    at = open_page()
    with Store(empty_store) as s:
        counts = s.table_counts()
        (job,) = [j for j in jobs.list_jobs(s) if j.kind == "fit"]
        assert not s.profiles(dataset=demo.DEMO_DATASET, method="fast")  # nothing fitted yet
    assert counts["samples"] == demo_samples()
    assert job.status == "queued" and job.params["dataset"] == demo.DEMO_DATASET and started == [job.id]
    assert {m.label: m.value for m in at.metric}["Samples"] == f"{counts['samples']:,}"  # the Overview is there
    notice = [i.value for i in at.info if "being fitted" in i.value]
    assert len(notice) == 1 and f"job {job.id}" in notice[0]
    # another page meanwhile says the same, and does not fail for want of profiles
    at.switch_page("../pages/profiles.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"job {job.id}" in i.value for i in at.info)
    # the worker's run (here in this process) stores the profiles; the notice goes and the page fills in.
    # The session's demo (demo_file) was fitted by core.demo's own build, the fit this job asks for: its
    # profiles are written first, so the job's real fit.dissect finds every one with its inputs unchanged
    # (features, labels, prior, sampler settings: the profile's fingerprint) and fits nothing again, which
    # proves the job's fit is that one without spending its 12 CPU s (the fit is tested in test_fit/test_demo)
    real, reports = fit.dissect, []

    def dissect_after_the_sessions_fit(store, dataset, source, **kw):
        with Store(demo_file) as done:
            for p in done.profiles(dataset=dataset, method="fast", with_draws=True):
                store.save_profile({**{k: v for k, v in p.items() if k != "id"}, "draws": p["draws"].tobytes()})
        reports.append(real(store, dataset, source, **kw))
        return reports[-1]

    monkeypatch.setattr(fit, "dissect", dissect_after_the_sessions_fit)
    with Store(empty_store) as s:
        assert jobs.claim(s, job.id)
        assert jobs.run(s, job.id).status == "done"
        fitted = s.profiles(dataset=demo.DEMO_DATASET, method="fast", columns=["judge", "scope"])
    (rep,) = reports
    assert not rep.fitted and not rep.skipped and sorted(rep.unchanged) == sorted((p["scope"], p["judge"]) for p in fitted)
    assert len(fitted) >= 4 * 12
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [i.value for i in at.info if "being fitted" in i.value]
    assert at.get("vega_lite_chart")  # the profile chart


def test_a_failed_demo_fit_is_loud_on_every_page(empty_store, monkeypatch):
    """Issue 17 point 6: when the demo's background fit fails, the "being fitted" notice used to vanish
    and the failure showed only on the Annotate & fit page. Every page now warns, naming the job and its
    error, with a way to run it again; running it again queues the same job and starts a worker."""
    import os

    from core import jobs

    started = []
    monkeypatch.setattr(jobs, "start_worker", lambda path, job_id, env=None: started.append(job_id) or os.getpid())
    at = open_page()
    with Store(empty_store) as s:
        (job,) = [j for j in jobs.list_jobs(s) if j.kind == "fit"]
        assert jobs.claim(s, job.id)

        def planted(*args, **kwargs):
            raise MemoryError("planted: the fit ran out of memory")

        monkeypatch.setattr(jobs, "_run_fit", planted)
        with pytest.raises(MemoryError):
            jobs.run(s, job.id)
        assert jobs.get(s, job.id).status == "failed"
    at.run()  # the notice's next poll runs the page again; a rerun shows the same
    for page in (None, "profiles", "similarity", "simulate", "judges"):
        if page:
            at.switch_page(f"../pages/{page}.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert not [i.value for i in at.info if "being fitted" in i.value]
        (warning,) = [w.value for w in at.warning if "demo judges' profiles failed" in w.value]
        shown = warning.replace("\\", "")  # the error is escaped for markdown (dashboard.render.plain)
        assert f"job {job.id}" in shown and "MemoryError: planted: the fit ran out of memory" in shown, warning
        assert at.button(key="demo_fit_retry")
    # run it again: the same job, queued, a worker started for it; the warning gives way to the notice
    monkeypatch.undo()
    monkeypatch.setenv("PREFDISSECT_STORE", str(empty_store))
    monkeypatch.setattr(jobs, "start_worker", lambda path, job_id, env=None: started.append(job_id) or os.getpid())
    at.button(key="demo_fit_retry").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with Store(empty_store) as s:
        assert [(j.id, j.status) for j in jobs.list_jobs(s) if j.kind == "fit"] == [(job.id, "queued")]
    assert started == [job.id, job.id]
    assert not [w.value for w in at.warning if "demo judges' profiles failed" in w.value]
    assert any(f"job {job.id}" in i.value and "being fitted" in i.value for i in at.info)


def test_overview_agreement_table_matches_core(store_path):
    at = open_page()
    pairs = frame_with(at, "judge_a")
    with Store(store_path) as s:
        expected = {(a.judge_a, a.judge_b): (a.shared, a.agree) for a in judges.agreement(s, "demo-synthetic")}
    got = {(r.judge_a, r.judge_b): (r.shared, r.agree) for r in pairs.itertuples()}
    assert got == expected
    assert len(got) >= 6  # four judges or more


def test_empty_store_without_seeding_says_how_to_fill_it(empty_store, monkeypatch):
    monkeypatch.setenv("PREFDISSECT_SEED_DEMO", "0")
    at = open_page()
    assert any("store is empty" in i.value for i in at.info)
    assert not at.metric


def _show_and_altair_chart():
    import pandas as pd
    import streamlit as st

    from dashboard import charts

    frame = pd.DataFrame({"dataset": ["d", "d"], "scenario_group": ["g", "h"], "samples": [3, 5]})
    charts.show(charts.scenario_bars, frame, width="stretch")
    st.altair_chart(charts.scenario_bars(frame), width="stretch")


def test_charts_are_cached_specs_that_draw_what_altair_chart_draws(monkeypatch):
    from dashboard import charts

    assert charts._to_vega_lite is not None, "Streamlit's Altair conversion moved: charts.show draws uncached"
    at = AppTest.from_function(_show_and_altair_chart).run()
    cached, direct = at.get("vega_lite_chart")
    assert cached.proto.spec == direct.proto.spec
    assert [(d.name, d.data.data) for d in cached.proto.datasets] == [(d.name, d.data.data) for d in direct.proto.datasets]
    # built once per distinct input: a rerun with equal data reuses the spec, new data rebuilds it
    import pandas as pd

    calls = []
    real = charts.scenario_bars

    def counting(frame):
        calls.append(len(frame))
        return real(frame)

    counting.__name__ = "scenario_bars"
    monkeypatch.setattr(charts, "scenario_bars", counting)
    charts._vega_lite_spec.clear()
    frame = pd.DataFrame({"dataset": ["d"], "scenario_group": ["g"], "samples": [3]})
    first = charts._vega_lite_spec("scenario_bars", (frame,), ())
    assert charts._vega_lite_spec("scenario_bars", (frame.copy(),), ()) == first and calls == [1]
    charts._vega_lite_spec("scenario_bars", (frame.assign(samples=[4]),), ())
    assert calls == [1, 1]
    # a frame's key is its pickle (charts._frame_key, not Streamlit's slower hash): whatever tells two frames
    # apart (a value, a dtype, the index, a column's name) builds anew; an equal frame never does
    others = [frame.assign(scenario_group=["h"]), frame.astype({"samples": float}), frame.set_axis([7]),
              frame.assign(extra=[0]), frame.assign(samples=[3 + 1e-12]).astype({"samples": float})]
    for other in others:
        charts._vega_lite_spec("scenario_bars", (other,), ())
    assert len(calls) == 2 + len(others)
    equal = pd.DataFrame({"dataset": ["d"], "scenario_group": ["g"], "samples": [3]})
    charts._vega_lite_spec("scenario_bars", (equal,), ())
    assert len(calls) == 2 + len(others)
    keys = {charts._frame_key(f) for f in [frame, *others]}
    assert len(keys) == 1 + len(others) and charts._frame_key(frame.copy()) in keys
    # a frame that cannot be pickled is keyed as Streamlit keys it (hash_pandas_object), not an error
    unpicklable = [charts._frame_key(pd.DataFrame({"f": [lambda: n]})) for n in (1, 2)]
    assert all(isinstance(k, bytes) for k in unpicklable)


def _templated_and_altair_charts():
    import numpy as np
    import streamlit as st

    from core import catalogue, compare
    from core.profile import profile_frame
    from dashboard import charts

    def frame(scale, judges, unmeasured=()):
        rows = []
        for i, judge in enumerate(judges):
            w = scale * (1 - i) * np.linspace(-1, 1, 29)
            rows.append({"judge": judge, "attributes": catalogue.attribute_keys(), "mean": list(w),
                         "lo": list(w - 0.2), "hi": list(w + 0.2), "sd": [0.1] * 29, "scope": "all", "method": "fast",
                         "provenance": {"differing": [0 if k in unmeasured else 500 for k in catalogue.attribute_keys()],
                                        "min_differing": 20}})
        return profile_frame(rows)

    small, wide = frame(0.3, ["j1", "j2"]), frame(2.0, ["j1", "j2"], unmeasured=("funny", "novel"))
    truth = small[["judge", "label"]].assign(percent=62.25)
    cases = [(charts.profile_chart, (small,), {}), (charts.profile_chart, (wide,), {"order": "weight"}),
             (charts.profile_chart, (small,), {"truth": truth}),
             (charts.profile_chart, (frame(1.0, ["solo"]),), {"select": False, "title": "solo", "domain": [30.0, 70.0]})]
    diff = compare.weight_difference(np.linspace(-1, 1, 29), np.zeros(29), draws_a=np.zeros((10, 29)),
                                     draws_b=np.zeros((10, 29)))
    diff["label"] = [catalogue.attribute(k).label for k in diff["attribute"]]
    diff["index"] = range(29)
    cases += [(charts.difference_chart, (diff, "a", "b"), {}),
              (charts.difference_chart, (diff.iloc[::-1], "a", "b"), {"order": list(diff["label"])[::-1]})]
    for build, args, kwargs in cases:
        charts.show(build, *args, **kwargs)
        st.altair_chart(build(*args, **kwargs))


def test_templated_charts_draw_what_altair_chart_draws():
    """The profile and difference charts are built once per shape and get each call's data and
    data-dependent values (rows, x range, ticks, height) filled in: what reaches the browser is what
    converting the whole chart gives, spec and datasets, for every shape the pages draw."""
    from dashboard import charts

    charts._template.cache_clear()
    at = AppTest.from_function(_templated_and_altair_charts).run()
    assert not at.exception
    drawn = at.get("vega_lite_chart")
    assert len(drawn) == 12
    for templated, direct in zip(drawn[::2], drawn[1::2]):
        assert templated.proto.spec == direct.proto.spec
        assert [(d.name, d.data.data) for d in templated.proto.datasets] == \
            [(d.name, d.data.data) for d in direct.proto.datasets]
    assert charts._template.cache_info().misses == 5  # one per shape: two cases share theirs


def test_the_shared_altair_class_table_changes_no_chart():
    """charts patches Altair's from_dict to build its class table once: every builder's spec is the
    one unpatched Altair makes."""
    import subprocess
    import sys

    code = (
        "import pandas as pd\n"
        "from altair.utils import schemapi\n"
        "original = schemapi.SchemaBase.__dict__['from_dict']\n"
        "from dashboard import charts\n"
        "assert schemapi.SchemaBase.__dict__['from_dict'] is not original and charts._share_altair_class_table()\n"
        "frame = pd.DataFrame({'dataset': ['d', 'e'], 'scenario_group': ['g', 'h'], 'samples': [3, 5]})\n"
        "rates = pd.DataFrame({'name': ['a', 'b'], 'kind': ['llm', 'human'], 'consistency': [0.5, 0.9],"
        " 'both_orders': [4, 10]})\n"
        "def specs():\n"
        "    return [charts.scenario_bars(frame).to_dict(),\n"
        "            charts.judge_rates(rates, 'consistency', title='t', count='both_orders').to_dict()]\n"
        "patched = specs()\n"
        "schemapi.SchemaBase.from_dict = original  # the classmethod itself, as Altair defines it\n"
        "assert specs() == patched\n"
        "print('same')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "same" in res.stdout, res.stdout + res.stderr


def test_page_tests_scan_the_installed_packages_for_components_once(store_path, monkeypatch):
    """tests/stsession.scan_components_once (conftest turns it on): Streamlit scans every installed
    distribution for custom components once per AppTest (0.26 CPU s, more than a warm page run); the page
    tests keep the first scan's result. Fails loudly where Streamlit moved the scan, so the saving is not
    lost unnoticed."""
    from streamlit.components.v2 import manifest_scanner

    from tests.stsession import scan_components_once

    assert scan_components_once()
    scan = manifest_scanner.scan_component_manifests
    assert scan.scans_once
    calls = []
    real = scan.__wrapped__
    monkeypatch.setattr(manifest_scanner, "scan_component_manifests", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    scan_components_once()  # wraps the counting scan
    for _ in range(3):
        open_page()
    assert len(calls) == 1  # three AppTests, one scan
    assert manifest_scanner.scan_component_manifests() == real()  # the kept result is the scan's


def test_page_tests_compile_each_script_once(shared_store_path, tmp_path, monkeypatch):
    """tests/stsession.compile_scripts_once (conftest turns it on): every AppTest run made new script caches,
    so it parsed app.py and the page again and rewrote their syntax trees for Streamlit's magic (up to 60 ms
    a page); the page tests keep each file's compiled code. An edited file (new modification time or size)
    is compiled again. Fails loudly where Streamlit moved the cache, so the saving is not lost unnoticed."""
    from streamlit.runtime.scriptrunner import magic
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    from tests.stsession import compile_scripts_once

    assert compile_scripts_once()
    assert ScriptCache.get_bytecode.compiles_once
    compiled = []
    real = magic.add_magic
    monkeypatch.setattr(magic, "add_magic", lambda code, path: compiled.append(Path(path).name) or real(code, path))
    at = open_page("similarity")
    at.run()
    open_page("similarity").run()
    assert compiled.count("app.py") <= 1 and compiled.count("similarity.py") <= 1, compiled  # 4 runs, one compile
    script = tmp_path / "page.py"
    script.write_text("import streamlit as st\n'one'\n")
    kept = ScriptCache().get_bytecode(str(script))
    assert kept is ScriptCache().get_bytecode(str(script)) and kept.co_filename == str(script)
    script.write_text("import streamlit as st\n'two, edited'\n")  # a new size (and time): compiled again
    assert ScriptCache().get_bytecode(str(script)) is not kept and compiled.count("page.py") == 2


def test_page_tests_wait_for_a_run_by_joining_its_thread_not_by_polling(monkeypatch):
    """tests/stsession.wait_for_runs_without_polling (conftest turns it on): AppTest waited for a run by
    waking every millisecond to scan the run's events, taking the GIL from the script it waited for; the
    page tests join the script's thread instead. The run is still waited for to its end, and a run past its
    timeout is still stopped and reported as Streamlit reports it. Fails loudly where Streamlit moved the
    wait, so the saving is not lost unnoticed."""
    from streamlit.testing.v1 import local_script_runner as lsr

    from tests.stsession import wait_for_runs_without_polling

    assert wait_for_runs_without_polling()
    assert lsr.require_widgets_deltas.joins
    checks = []
    real = lsr.LocalScriptRunner.script_stopped
    monkeypatch.setattr(lsr.LocalScriptRunner, "script_stopped", lambda self: checks.append(1) or real(self))
    slow = "import time\nimport streamlit as st\nfor _ in range(30):\n    time.sleep(0.01)\n    st.empty()\nst.text('done')\n"
    at = AppTest.from_string(slow, default_timeout=60).run()
    assert not at.exception and [t.value for t in at.text] == ["done"]  # waited for the whole run
    assert len(checks) <= 2, len(checks)  # not once a millisecond over its 0.3 s or more
    endless = "import time\nimport streamlit as st\nwhile True:\n    time.sleep(0.01)\n    st.empty()\n"
    with pytest.raises(RuntimeError, match=r"AppTest script run timed out after 0\.5\(s\)"):
        AppTest.from_string(endless).run(timeout=0.5)


def test_the_shared_store_notices_a_write_and_hands_out_a_fresh_copy(demo_file, tmp_path, monkeypatch):
    """conftest.shared_store_path (one demo copy per module for the page tests that only read) fails a test
    that writes to it and gives the next tests a fresh copy: a page run, a read, then a write are told apart."""
    from tests.conftest import SharedStore

    shared = SharedStore(demo_file, tmp_path)
    first = shared.path
    with Store(first) as s:
        before = s.version()
        assert s.samples_for("demo-synthetic")
    monkeypatch.setenv("PREFDISSECT_STORE", str(first))
    open_page("profiles")  # a page that only reads writes nothing
    assert shared.data_version() == shared.version
    with Store(first) as s, s.writing():
        s.conn.execute("UPDATE revision SET n = n + 1")
    assert shared.data_version() != shared.version  # noticed
    shared.fresh()
    with Store(shared.path) as s:
        assert shared.path != first and s.version() == before  # a copy without the write
    shared.close()
