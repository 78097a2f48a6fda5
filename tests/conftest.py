"""Fixtures shared by every test module."""

from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Python's bytecode caches (``__pycache__``, git-ignored) are written for the repo's modules even where
#: PYTHONDONTWRITEBYTECODE is set (this machine, CI and many container images set it): then every one of the
#: suite's processes (the workers, and the Streamlit servers, job workers and commands they start, which read
#: what the workers wrote) compiled the same modules again, and each worker rewrote the asserts of every test
#: module again (collecting took 12.3 s instead of 6.6). Set before the store's import below, so that the
#: modules the suite imports first are kept too.
sys.dont_write_bytecode = False

from core.store import Store  # noqa: E402

#: Environment variable pointing at the real test data (default: ../shared/data beside the repo).
SHARED_DATA_ENV = "PREFDISSECT_SHARED_DATA"

#: How many samples the default demo generates: its design (pairs per group times the groups), which
#: tests compare with what the store and the pages count.
def demo_samples() -> int:
    from core import catalogue, demo

    return len(catalogue.group_keys()) * demo.N_PER_GROUP


def shared_data_path() -> Path:
    override = os.environ.get(SHARED_DATA_ENV, "").strip()
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "shared" / "data"


#: The xdist groups that take longest, longest first (worker seconds, measured on the whole suite with
#: ``--durations``). Handing them out first lets the many short modules fill the other worker meanwhile,
#: instead of one long group starting last and running alone at the end (pytest.ini turns off xdist's
#: own order, by count of tests). The real-server tests (about 9 minutes on one worker where CI installs
#: llama-cpp-python; skipped at once elsewhere) come first of all. ``test_fit-nuts`` (154 worker-s when it ran the
#: long NUTS references, 108 at load ~6.5 on 2 cores since they are stored: about 55 quiet) now comes after the
#: browser tests (137-190).
LONGEST_GROUPS = ("test_realserver", "browser", "test_fit-nuts", "test_fit-coverage", "test_deploy",
                  "test_dissect-autoj", "test_app", "test_dissect-pandalm", "test_experiment", "test_dissect",
                  "test_app_annotate")

#: Long tests of a long module given a group of their own, so they run beside the rest of it: they need
#: none of its costly module fixtures (test -> group, every parametrization of the test with it; or one
#: parametrization -> group).
OWN_GROUPS = {
    # Every NUTS test in ONE group (one process): nutpie's compiled models (one per model shape, hard and soft
    # labels alike, kept per process in core.fit) cannot be cached across processes, and a process's first
    # compile pays numba's one-time costs too (~4 CPU-s compiling the error path of nutpie's `out[...] = grad`,
    # numba's string machinery), besides importing PyMC and nutpie (~5 CPU-s) and warming PyTensor's C backend
    # for the model checks (~4 CPU-s). Measured (load ~5 on 2 cores): a first compile 14-18 CPU-s, a second
    # shape in the same process 7-10. The binary and tie-model tests ran in two groups and paid all of it twice:
    # the 12 tests took 171.7 / 175.5 CPU-s as two processes, 152.1 / 131.4 as one (-n 0, A/B/A/B, load 5-7).
    # Since the long NUTS references are stored (tests/nuts_references.py), nutpie compiles one shape here (the
    # binary one: the exact-profile test and the live check against a stored reference share it); the reference
    # tests still build and compile PyMC's model (PyTensor's C backend) to verify what they read, as the model
    # test does, so they stay beside them.
    "tests/test_fit.py::test_fast_sampler_matches_long_nuts": "test_fit-nuts",
    "tests/test_fit.py::test_exact_lands_on_its_stored_reference": "test_fit-nuts",
    "tests/test_fit.py::test_exact_falls_back_to_pymcs_own_nuts": "test_fit-nuts",
    "tests/test_fit.py::test_exact_profiles_agree_with_fast_ones": "test_fit-nuts",
    "tests/test_fit.py::test_fast_tie_model_with_position_matches_nuts": "test_fit-nuts",
    "tests/test_fit.py::test_fast_soft_labels_match_nuts": "test_fit-nuts",
    # the closed-form model against PyMC's distributions: beside the NUTS tests, which import PyMC anyway
    "tests/test_fit.py::test_nuts_model_is_pymcs_bernoulli_and_categorical": "test_fit-nuts",
    "tests/test_fit.py::test_intervals_cover_true_weights_at_the_nominal_rate": "test_fit-coverage",
    "tests/test_fit.py::test_position_and_ties_cover_the_truth_at_the_nominal_rate": "test_fit-coverage",
    "tests/test_dissect.py::test_real_judges_of_pandalm_on_heuristic_features": "test_dissect-pandalm",
    "tests/test_dissect.py::test_autoj_both_orders_and_ties_on_real_data": "test_dissect-autoj",
}


def xdist_group(nodeid: str) -> str:
    """The worker group of a test, from its node id alone (the xdist controller sees nothing else): its
    module's name, ``browser`` for every browser test (files ``test_browser*.py``: they share one
    `streamlit run` and one Chromium, conftest's session fixtures, a session per worker), or its
    ``OWN_GROUPS`` entry (one parametrization's, else the test's)."""
    path, _, name = nodeid.partition("::")
    test = f"{path}::{name.split('[')[0]}"
    for key in (f"{path}::{name}", test):  # one parametrization's entry, else the test's
        if key in OWN_GROUPS:
            return OWN_GROUPS[key]
    stem = Path(path).stem
    return "browser" if stem.startswith("test_browser") else stem


#: Workers per core for ``-n auto`` (pytest.ini): one more worker than cores. About a fifth of the suite's worker
#: time is spent waiting on other processes (the Streamlit servers, Chromium, job workers, the CLI): with one
#: worker per core a core idles meanwhile; a third worker fills it. Measured on 2 cores, quiet: see README.
EXTRA_WORKERS = 1


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: the cores this process may use, plus ``EXTRA_WORKERS``; ``PYTEST_XDIST_AUTO_NUM_WORKERS``
    still overrides it, as it does xdist's own count."""
    override = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
    if override.isdigit():
        return int(override)
    return len(os.sched_getaffinity(0)) + EXTRA_WORKERS


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` (pytest.ini) by ``xdist_group``: xdist's own loadgroup reads ``xdist_group``
    marks by rewriting each test's node id, which pytest 9 no longer lets it do (every test was its own
    group, so module fixtures, the demo build and the browser tests' server were set up on both workers)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ByGroup(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(config, items):
    """The longest groups first (``LONGEST_GROUPS``), each keeping its own order; the rest keep the
    collection order (xdist hands groups out in the order of their first test)."""
    rank = {group: i for i, group in enumerate(LONGEST_GROUPS)}
    order = {item: rank.get(xdist_group(item.nodeid), len(rank)) for item in items}
    items.sort(key=order.__getitem__)  # stable


def pytest_collection_finish(session):
    """Where a collected module imported Streamlit (the page tests, AppTest), its scan of the installed
    packages for components runs once per process instead of once per AppTest, each script is compiled
    once per process instead of once per AppTest run, and a run is waited for by joining its thread instead of
    polling its events every millisecond (``stsession``)."""
    if "streamlit" in sys.modules:
        from tests.stsession import compile_scripts_once, scan_components_once, wait_for_runs_without_polling

        scan_components_once()
        compile_scripts_once()
        wait_for_runs_without_polling()


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Streamlit's script runner (AppTest) installs its page as ``sys.modules["__main__"]`` and never
    puts the old one back; a later test in the same worker that spawns processes (the paid-request
    engine's shards) would then have each child re-run that page script as its main module."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (see its README.md); tests that need it skip when it is absent."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path} (set {SHARED_DATA_ENV} to its folder)")
    return path


@pytest.fixture(scope="session")
def migrated_store_file(tmp_path_factory) -> Path:
    """An empty store with every migration applied, made once per process: copy it, never write to it."""
    path = tmp_path_factory.mktemp("migrated") / "store.db"
    Store(path).close()
    return path


@pytest.fixture
def store(migrated_store_file, tmp_path):
    """A fresh, migrated store file in the test's temporary folder: a copy of an empty migrated store
    (a millisecond of CPU, where migrating a new file costs ~30 ms)."""
    s = Store(copy_store(migrated_store_file, tmp_path / "store.db"))
    yield s
    s.close()


def built_once(tmp_path_factory, name: str, build):
    """(path, result) of ``build(path)``, run once per test run: under pytest-xdist the first worker to ask
    builds into the folder the workers share (the session's base temporary folder) while the others wait on
    a file lock, then all read the same file (a worker builds nothing twice, and two workers never spend
    the machine's cores on the same build at once). ``result`` is pickled beside the file."""
    import fcntl
    import pickle

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        path = tmp_path_factory.mktemp(name) / "demo.db"
        return path, build(path)
    folder = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    folder.mkdir(exist_ok=True)
    path, done = folder / "demo.db", folder / "result.pickle"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            done.write_bytes(pickle.dumps(build(path)))
        return path, pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def _demo_build(tmp_path_factory):
    """(path, (build result, the fit's DissectionReport)) of the demo with its fitted profiles, built once
    per test run by ``core.demo``'s own builder, so the tests follow the demo's contents (its data is copied
    from the prebuilt file, as on a first start, which tests/test_demo.py holds to a fresh generation and
    write), then fitted as ``build_demo``'s own fit step fits it (``fit.dissect`` of the demo's dataset and
    feature set), its report kept: copy the file, never write to it."""
    from core import demo, fit

    def build(path):
        with Store(path) as s:
            result = demo.build_demo(s, fit=False)
            return result, fit.dissect(s, demo.DEMO_DATASET, demo.FEATURE_SOURCE)

    path, (result, report) = built_once(tmp_path_factory, "demo", build)
    return path, result, report


@pytest.fixture(scope="session")
def demo_built(_demo_build):
    """(path, build result) of the demo with its fitted profiles, built once per test run: copy it, never
    write to it."""
    return _demo_build[:2]


@pytest.fixture(scope="session")
def demo_dissection(_demo_build):
    """The report (``fit.DissectionReport``) of the fit that made the session demo's profiles (``demo_file``):
    what it fitted, skipped and why."""
    return _demo_build[2]


@pytest.fixture(scope="session")
def demo_file(demo_built) -> Path:
    """The demo with its fitted profiles, built once per test session: copy it, never write to it."""
    return demo_built[0]


@pytest.fixture(scope="session")
def unfitted_demo_file(tmp_path_factory) -> Path:
    """The demo without fitted profiles (for tests that fit, or count what a job writes), built once per
    test run."""
    from core import demo

    def build(path):
        with Store(path) as s:
            demo.build_demo(s, fit=False)

    return built_once(tmp_path_factory, "demo-unfitted", build)[0]


def copy_store(src: Path, dst: Path) -> Path:
    """A private copy of a closed store file (closing folds its WAL in, so the file is the whole store)."""
    import shutil

    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)
    return dst


@pytest.fixture
def demo_copy(demo_file, tmp_path) -> Path:
    """A private copy of the fitted demo store (milliseconds, where building it takes many seconds)."""
    return copy_store(demo_file, tmp_path / "store.db")


@pytest.fixture
def unfitted_demo_copy(unfitted_demo_file, tmp_path) -> Path:
    """A private copy of the demo store without fitted profiles."""
    return copy_store(unfitted_demo_file, tmp_path / "store.db")


@dataclass
class CLIResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, store: Path | str | None = None) -> CLIResult:
    """``python -m core [--store STORE] ARGS`` in this process: ``core.cli.main`` with its output captured,
    argparse's exits (usage errors: 2, --help: 0) taken as return codes. The environment is the test's
    (use ``monkeypatch.setenv``). tests/test_cli.py keeps one real subprocess run as a smoke test."""
    import contextlib
    import io

    from core import cli

    argv = (["--store", str(store)] if store is not None else []) + [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    return CLIResult(code or 0, out.getvalue(), err.getvalue())


def wait_until(condition, what: str, timeout: float = 300):
    """``condition()``'s first true value, polled every 50 ms; past ``timeout`` seconds fail saying ``what``."""
    import time

    deadline = time.time() + timeout
    while not (value := condition()):
        assert time.time() < deadline, f"{what}: not after {timeout} s"
        time.sleep(0.05)
    return value


def store_sha256(path: Path) -> str:
    """The store file's sha256 after folding the WAL in, so the file alone holds every committed write."""
    import hashlib

    with Store(path) as s:
        s.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store_path(demo_file, tmp_path, monkeypatch) -> Path:
    """A private copy of the demo store, made the app's store (``PREFDISSECT_STORE``)."""
    import shutil

    path = tmp_path / "store.db"
    shutil.copy(demo_file, path)
    monkeypatch.setenv("PREFDISSECT_STORE", str(path))
    return path


class SharedStore:
    """A copy of the fitted demo shared by one module's page tests that only read (``shared_store_path``),
    watched for writes: ``PRAGMA data_version`` on a connection of its own changes when any other
    connection commits to the file (the app's, a worker's, a test's)."""

    def __init__(self, src: Path, folder: Path):
        self.src, self.folder, self.copies = src, folder, 0
        self.path = self.watch = None
        self.fresh()

    def fresh(self) -> None:
        """A new copy under a new name (so no cached read of the old one is taken for it)."""
        if self.watch is not None:
            self.watch.close()
        self.copies += 1
        self.path = copy_store(self.src, self.folder / f"store-{self.copies}.db")
        self.watch = sqlite3.connect(self.path)  # held open: the file's -wal stays, its version counts
        self.version = self.data_version()

    def data_version(self) -> int:
        return self.watch.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        self.watch.close()


@pytest.fixture(scope="module")
def _module_store(demo_file, tmp_path_factory):
    shared = SharedStore(demo_file, tmp_path_factory.mktemp("shared-store"))
    yield shared
    shared.close()


@pytest.fixture
def shared_store_path(_module_store, monkeypatch, request) -> Path:
    """The fitted demo, made the app's store, shared by the module's tests that take this fixture instead of
    ``store_path`` (one copy per module, not per test, so Streamlit's cached reads, keyed by the store's
    path and version, serve every test after the first). For tests that only read: one that writes to it
    fails (at its teardown, naming itself), and the module's later tests get a fresh copy, so no test ever
    sees another's writes. A test that writes takes ``store_path``."""
    monkeypatch.setenv("PREFDISSECT_STORE", str(_module_store.path))
    yield _module_store.path
    if _module_store.data_version() != _module_store.version:
        _module_store.fresh()
        pytest.fail(f"{request.node.nodeid} wrote to the module's shared demo store (shared_store_path, for tests "
                    "that only read): give it a private copy (store_path)", pytrace=False)


@pytest.fixture
def unfitted_store_path(unfitted_demo_file, tmp_path, monkeypatch) -> Path:
    """A private copy of the unfitted demo store, made the app's store (``PREFDISSECT_STORE``)."""
    path = copy_store(unfitted_demo_file, tmp_path / "store.db")
    monkeypatch.setenv("PREFDISSECT_STORE", str(path))
    return path


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory, demo_file):
    """One real `streamlit run` for every browser test, on a copy of the fitted demo of its own (a first
    start on an empty store fits the demo in the background, and these tests read its profiles at once).

    Yields (url, store_path). Tests that need special data write it into that store first."""
    from tests import browserkit

    if not (browserkit.CHROMIUM and browserkit.CHROMEDRIVER):
        pytest.skip(browserkit.MARKS[1].kwargs["reason"])
    path = copy_store(demo_file, tmp_path_factory.mktemp("browser") / "store.db")
    proc, url = browserkit.start_streamlit(path)
    yield url, path
    browserkit.stop(proc)


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for every browser test."""
    from tests import browserkit

    if not (browserkit.CHROMIUM and browserkit.CHROMEDRIVER):
        pytest.skip(browserkit.MARKS[1].kwargs["reason"])
    driver = browserkit.chrome()
    yield driver
    driver.quit()


def loopback_settings(server, **kw):
    """The one ``LLMSettings`` the tests build for a loopback server: its URL, model loopback-1, a test
    key, a 5 s timeout and 2 retries; ``kw`` override (a test module passes its own defaults once)."""
    from core.llm import LLMSettings

    base = dict(model="loopback-1", base_url=server.url, api_key="test-key", timeout_s=5.0, max_retries=2)
    return LLMSettings(**{**base, **kw})


@pytest.fixture(scope="session")
def pandalm_file(tmp_path_factory, shared_data) -> Path:
    """PandaLM's test set (999 real pairs) imported into a store once per test run: copy it, never write to it."""
    from core.importers import import_file

    def build(path):
        with Store(path) as s:
            import_file(s, "pandalm", shared_data / "pandalm" / "testset-v1.json")

    return built_once(tmp_path_factory, "pandalm", build)[0]


@pytest.fixture(scope="session")
def pandalm_heuristic_file(tmp_path_factory, pandalm_file) -> Path:
    """PandaLM's test set with its offline heuristic features (``heuristic:v1``), made once per test run from
    the session's import: copy it, never write to it (two dissection tests fit it; rating its 1,998 responses
    took 2-3 CPU-s each time)."""
    from core import annotate

    def build(path):
        copy_store(pandalm_file, path)
        with Store(path) as s:
            annotate.run_heuristics(s, s.samples_for("pandalm-test"))

    return built_once(tmp_path_factory, "pandalm-heuristic", build)[0]


@pytest.fixture
def pandalm_store(pandalm_file, tmp_path):
    """PandaLM's test set (999 real pairs) in a private store (a copy of the session's import: the import
    took 0.4-1 s a test)."""
    store = Store(copy_store(pandalm_file, tmp_path / "store.db"))
    yield store
    store.close()


@pytest.fixture
def team(tmp_path, monkeypatch):
    """A team deployment in password mode (viewer and editor passwords) on an empty store, with a
    fresh count of failed sign-ins (the web process's throttle is shared by every session)."""
    from dashboard import auth

    monkeypatch.setenv("PREFDISSECT_STORE", str(tmp_path / "store.db"))
    monkeypatch.setenv("PREFDISSECT_SEED_DEMO", "0")
    monkeypatch.setenv("PREFDISSECT_PASSWORD", "viewer-pass-123")
    monkeypatch.setenv("PREFDISSECT_EDITOR_PASSWORD", "editor-pass-456")
    monkeypatch.delenv("PREFDISSECT_EDITORS", raising=False)
    auth._throttle.clear()
    yield
    auth._throttle.clear()
