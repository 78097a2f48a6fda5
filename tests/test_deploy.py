"""Team deployment: the Procfile command serves the app on $PORT, and the store can be exported
(a consistent copy while it is written) and restored (checked first, previous contents kept)."""

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from core import cli
from core.demo import PREBUILT
from core.records import Dataset, ImportBatch, Judge, Label, Sample
from core.store import RestoreError, Store, check_export, export_store, restore_store
from tests import browserkit
from tests.conftest import demo_samples, store_sha256
from tests.stsession import Session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store_file(unfitted_demo_file, tmp_path):
    path = tmp_path / "store.db"
    shutil.copy(unfitted_demo_file, path)
    return path


def test_procfile_command_serves_health_and_the_overview_on_port(store_file):
    line = (ROOT / "Procfile").read_text().strip()
    command = line.removeprefix("web:").strip()
    port = browserkit.free_port()
    env = {**os.environ, "PORT": str(port), "PREFDISSECT_STORE": str(store_file),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        browserkit.wait_healthy(url, proc)
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            assert r.status == 200 and r.read().strip() == b"ok"
        with urllib.request.urlopen(url + "/", timeout=5) as r:
            assert r.status == 200 and b'id="root"' in r.read()
        with Session(url) as session:  # the Overview page itself, as a browser tab would run it
            run = session.run("")
        assert run.status == "ok" and not run.exceptions
        assert "Overview" in run.texts and "Samples per scenario group" in run.texts
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(15)


def test_export_while_writing_is_a_consistent_snapshot(store_file, tmp_path):
    """A writer commits 50 labels per transaction while we export: every copy holds whole
    transactions only, and passes SQLite's integrity check."""
    with Store(store_file) as s:
        ids = s.sample_ids("demo-synthetic")
    base = len(ids) * 4
    stop = threading.Event()

    def write() -> None:
        with Store(store_file) as s:
            n = 0
            while not stop.is_set() and n < 40:
                judge = f"writer-{n}"
                s.write_labels([Judge(judge, "llm")], [Label(i, judge, "A") for i in ids[:50]])
                n += 1

    t = threading.Thread(target=write)
    t.start()
    copies = []
    try:
        for k in range(5):
            copies.append(export_store(store_file, tmp_path / f"copy-{k}.db"))
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    for c in copies:
        counts = check_export(c)
        assert (counts["labels"] - base) % 50 == 0
        assert counts["judges"] - 4 == (counts["labels"] - base) // 50
        assert not Path(str(c) + "-wal").exists()


def test_restore_brings_back_the_export_and_keeps_the_previous_contents(store_file, tmp_path):
    with Store(store_file) as s:
        n = s.scalar("SELECT COUNT(*) FROM samples")
    export = export_store(store_file, tmp_path / "export.db")
    with Store(store_file) as s:
        s.write_batch(ImportBatch(Dataset("added-later"), samples=[Sample("added-later", "q", "a", "b")]))
        assert s.scalar("SELECT COUNT(*) FROM samples") == n + 1
    counts, safety = restore_store(export, store_file)
    assert counts["samples"] == n
    with Store(store_file) as s:
        assert s.scalar("SELECT COUNT(*) FROM samples") == n
        assert s.scalar("PRAGMA journal_mode") == "wal"
    with Store(safety) as s:
        assert s.scalar("SELECT COUNT(*) FROM samples WHERE dataset = 'added-later'") == 1


def test_restore_on_an_open_store_is_seen_by_its_other_connections(store_file, tmp_path):
    reader = Store(store_file)
    assert reader.scalar("SELECT COUNT(*) FROM samples") == demo_samples()
    empty = tmp_path / "empty.db"
    Store(empty).close()
    restore_store(empty, store_file)
    assert reader.scalar("SELECT COUNT(*) FROM samples") == 0
    reader.close()


def bad_exports(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("not a database")
    other = tmp_path / "other.db"
    import sqlite3
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    newer = tmp_path / "newer.db"
    Store(newer).close()
    c = sqlite3.connect(newer)
    c.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES ('prefdissect', 'm999_future', 'x')")
    c.commit()
    c.close()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes((tmp_path / "newer.db").read_bytes()[:3000])
    return {"no such file": tmp_path / "missing.db", "not an SQLite database": text,
            "not a prefdissect store": other, "newer version": newer, "truncated": truncated}


def test_restore_refuses_bad_files_and_changes_nothing(store_file, tmp_path):
    before = store_sha256(store_file)
    for what, path in bad_exports(tmp_path).items():
        with pytest.raises(RestoreError) as err:
            restore_store(path, store_file)
        assert path.name in str(err.value), what
        if what != "truncated":
            assert what in str(err.value)
    assert store_sha256(store_file) == before
    assert not list(store_file.parent.glob("*.before-restore-*"))


def test_cli_export_and_restore(store_file, tmp_path, capsys):
    out = tmp_path / "snap.db"
    assert cli.main(["--store", str(store_file), "export", str(out)]) == 0
    assert "consistent snapshot" in capsys.readouterr().out
    assert cli.main(["--store", str(store_file), "export", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["--store", str(store_file), "restore", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"samples {demo_samples()}" in printed and re.search(r"before-restore-\d{8}T\d{6}Z\.db", printed)


# ---------------------------------------------------------------- the platform files (issue 20)


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, argument) per Dockerfile instruction, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_one_python_version_everywhere():
    pinned = (ROOT / ".python-version").read_text().strip()
    assert pinned == f"{sys.version_info.major}.{sys.version_info.minor}"  # what CI and this venv run
    base = next(arg for ins, arg in _dockerfile() if ins == "FROM")
    assert base == f"python:{pinned}-slim"
    assert f"Python {pinned}" in (ROOT / "README.md").read_text()


def test_runtime_requirements_hold_no_test_tools():
    runtime = (ROOT / "requirements.txt").read_text().lower()
    for tool in ("pytest", "selenium", "websockets=="):
        assert tool not in runtime, tool
    test = (ROOT / "requirements-test.txt").read_text()
    assert "-r requirements.txt" in test and "pytest==" in test and "selenium==" in test


def test_dockerfile_is_slim_unprivileged_with_a_volume_a_port_and_a_health_check():
    steps = _dockerfile()
    kinds = [ins for ins, _ in steps]
    arg = {ins: a for ins, a in steps}  # the last of each
    assert arg["USER"] not in ("root", "0") and kinds.index("USER") < kinds.index("CMD")
    assert "/data" in arg["VOLUME"] and "PREFDISSECT_STORE=/data/store.db" in " ".join(a for i, a in steps if i == "ENV")
    assert "/_stcore/health" in arg["HEALTHCHECK"] and "PORT" in arg["HEALTHCHECK"]
    assert "${PORT}" in arg["CMD"] and "0.0.0.0" in arg["CMD"] and "preflight" in arg["CMD"]
    installs = [a for i, a in steps if i == "RUN" and "pip install" in a]
    assert installs and all("requirements.txt" in a and "requirements-test" not in a for a in installs)
    for ins, a in steps:  # everything the image copies exists
        if ins == "COPY":
            for src in a.split()[:-1]:
                assert (ROOT / src).exists(), src
    ignored = (ROOT / ".dockerignore").read_text().split()
    for never in (".venv", "*.db", ".streamlit/secrets.toml", ".git"):
        assert never in ignored, never


def test_the_image_carries_the_prebuilt_demo():
    """A first start copies the default demo from core/data/demo-prebuilt.sqlite.gz (core.demo.PREBUILT) instead
    of generating it: the image must hold it. A COPY of one of its folders takes it, and no .dockerignore
    pattern leaves it out (matched from the right, so stricter than Docker's root-anchored patterns)."""
    from pathlib import PurePosixPath

    rel = PREBUILT.relative_to(ROOT).as_posix()
    copied = [src for ins, a in _dockerfile() if ins == "COPY" for src in a.split()[:-1]]
    assert any(rel == src or rel.startswith(src.rstrip("/") + "/") for src in copied), (rel, copied)
    patterns = [p for p in (ROOT / ".dockerignore").read_text().split() if not p.startswith("#")]
    parts = rel.split("/")
    for pattern in patterns:
        for i in range(1, len(parts) + 1):
            assert not PurePosixPath(*parts[:i]).match(pattern.strip("/").replace("**/", "")), (pattern, rel)


def test_render_blueprint_declares_the_disk_the_health_check_and_the_secrets():
    import yaml

    spec = yaml.safe_load((ROOT / "render.yaml").read_text())
    (web,) = [s for s in spec["services"] if s["type"] == "web"]
    assert web["runtime"] == "docker" and (ROOT / web["dockerfilePath"]).exists()
    assert web["healthCheckPath"] == "/_stcore/health"
    assert web["disk"]["mountPath"] == "/data" and web["disk"]["sizeGB"] >= 1
    env = {e["key"]: e for e in web["envVars"]}
    assert env["PREFDISSECT_STORE"]["value"].startswith(web["disk"]["mountPath"] + "/")
    for secret in ("PREFDISSECT_PASSWORD", "PREFDISSECT_EDITOR_PASSWORD", "PREFDISSECT_LLM_API_KEY"):
        assert env[secret].get("sync") is False and "value" not in env[secret], secret  # never committed
    assert env["PREFDISSECT_COOKIE_SECRET"].get("generateValue") is True


def test_fly_config_declares_the_volume_the_port_and_the_health_check():
    import tomllib

    spec = tomllib.loads((ROOT / "fly.toml").read_text())
    (mount,) = spec["mounts"]
    assert mount["destination"] == "/data"
    assert spec["env"]["PREFDISSECT_STORE"].startswith("/data/")
    svc = spec["http_service"]
    assert str(svc["internal_port"]) == spec["env"]["PORT"]
    assert [c["path"] for c in svc["checks"]] == ["/_stcore/health"]
    assert svc["min_machines_running"] >= 1 and svc["auto_stop_machines"] in ("off", False)


def test_preflight_refuses_an_unwritable_store_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli.main(["--store", str(blocker / "store.db"), "preflight"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the store") and "cannot be written" in err[0]
    assert not (blocker / "store.db").exists()


def test_preflight_warns_about_stores_that_will_not_last(tmp_path, monkeypatch, capsys):
    from core import config

    assert config.check_store_location(Path("/tmp/x/store.db")).warnings  # a temporary folder
    monkeypatch.setenv("DYNO", "web.1")
    loc = config.check_store_location(ROOT / "store-check" / "store.db")
    assert loc.error is None and any("Heroku" in w for w in loc.warnings)
    monkeypatch.delenv("DYNO")
    monkeypatch.setenv("RENDER", "true")
    assert any("same filesystem as the code" in w for w in config.check_store_location(
        ROOT / "store-check" / "store.db").warnings)  # not on a mounted disk
    (ROOT / "store-check").rmdir()
    monkeypatch.delenv("RENDER")
    assert cli.main(["--store", str(tmp_path / "ok.db"), "preflight"]) == 0
    assert "writable" in capsys.readouterr().out


def test_the_dashboard_refuses_to_start_on_an_unwritable_store(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("PREFDISSECT_STORE", str(blocker / "store.db"))
    from dashboard import data

    data.store_location.clear()
    try:
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
        at.run()
        assert not at.exception
        assert [e.value for e in at.error][0].startswith("Cannot start: the store")
        assert not at.metric  # no page ran
    finally:
        data.store_location.clear()


#: Where the fresh-environment test keeps the wheels of requirements.txt between runs (one folder per
#: content of the file); ``PREFDISSECT_WHEELHOUSE`` overrides the parent folder.
WHEELHOUSE_ENV = "PREFDISSECT_WHEELHOUSE"


def wheelhouse(requirements: Path) -> Path:
    """A folder holding a wheel for every package ``requirements`` resolves to, filled once per content of
    the file by ``pip wheel`` (from the index pip is configured with, sdists built), then reused: the
    fresh-environment install resolves and installs from it offline instead of downloading about 320 MB
    again (minutes of network wait, a few CPU seconds). A run cut short leaves no ``complete`` mark, so
    the next one fills the folder again."""
    import hashlib

    parent = Path(os.environ.get(WHEELHOUSE_ENV, "").strip() or Path.home() / ".cache" / "prefdissect-wheelhouse")
    folder = parent.expanduser() / hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    if not (folder / "complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-r", str(requirements), "-w", str(folder)],
                             capture_output=True, text=True, timeout=1500)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        (folder / "complete").write_text(requirements.read_text())
    return folder


def _pins(requirements: Path) -> dict[str, str]:
    """{normalised name: version} of every ``name[extras]==version`` line of a requirements file."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = (part.strip() for part in line.split("==", 1))
            pins[re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).lower()] = version
    return pins


def _installed(venv: Path) -> dict[str, str]:
    """{normalised name: version} of every distribution installed in a virtual environment (its
    ``*.dist-info`` folders: no interpreter started)."""
    out = {}
    for info in venv.glob("lib/python*/site-packages/*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


@contextlib.contextmanager
def installed_environment(install: str, requirements: Path, wheels: Path, cwd: Path):
    """The virtual environment the Dockerfile's install command makes from ``requirements`` (offline, from
    ``wheels``), made once per (command, content of the file, Python, pip) and kept beside the wheelhouse;
    held (a shared lock) while the ``with`` block uses it.

    ``install`` names the environment ``{venv}`` and the test environment's Python, whose pip runs it,
    ``{python}``. What the command makes is a function of those inputs: installing the same ones again, as
    every run did, rebuilt the same environment (about 20 CPU seconds of pip unpacking 1.3 GB, and each
    start then compiled the libraries from source, where the image's install has compiled them). A change
    to any of them is a new environment, installed from scratch (and the environments of other inputs that
    no run is using are removed: about 1.2 GB each); one whose install was cut short (no ``complete``
    mark), or whose installed versions no longer match the pins, is installed again. Checked either way:
    every pinned requirement is installed at its pinned version."""
    import fcntl
    import hashlib
    from importlib.metadata import version as dist_version

    inputs = [install, requirements.read_text(), sys.version, dist_version("pip")]
    key = hashlib.sha256("\0".join(inputs).encode()).hexdigest()[:16]
    venv = wheels.parent / f"venv-{key}"
    pins = _pins(requirements)

    def drift() -> dict[str, tuple[str, str | None]]:
        have = _installed(venv)
        return {name: (pinned, have.get(name)) for name, pinned in pins.items() if have.get(name) != pinned}

    def ready() -> bool:
        return (venv / "complete").exists() and not drift()

    with open(wheels.parent / f"venv-{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # runs that use it share it
        if not ready():
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_EX)  # one run makes it, when no run uses it
        if not ready():
            shutil.rmtree(venv, ignore_errors=True)
            for other in wheels.parent.glob("venv-*.lock"):  # environments of other inputs, unused
                if other.name != f"venv-{key}.lock":
                    with open(other, "a") as held:
                        try:
                            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        except BlockingIOError:
                            continue  # in use by another run
                        shutil.rmtree(other.with_suffix(""), ignore_errors=True)
                        other.unlink()
            offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
            command = install.replace("{venv}", str(venv)).replace("{python}", shlex.quote(sys.executable))
            res = subprocess.run(["sh", "-c", command], cwd=cwd, env=offline, capture_output=True, text=True,
                                 timeout=1500)
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
            (venv / "complete").write_text(install)
        fcntl.flock(lock, fcntl.LOCK_SH)  # made: others may use it too, none may remove it
        assert pins and not drift(), f"pinned, installed: {drift()}"
        yield venv


def stop_job_workers(store_path: Path) -> list[int]:
    """Stop the worker processes the store's jobs record (each leads a session of its own, detached from the
    app that started it) and wait until they are gone; their pids."""
    import signal

    from core import jobs

    with Store(store_path) as s:
        pids = sorted({j.worker_pid for j in jobs.list_jobs(s, limit=100) if j.worker_pid})
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 30
    for pid in pids:
        while jobs._alive(pid) and time.time() < deadline:  # gone, or a zombie waiting for its reaper
            time.sleep(0.1)
        if jobs._alive(pid):
            os.killpg(pid, signal.SIGKILL)
    return pids


@pytest.mark.slow
def test_the_image_steps_run_in_a_fresh_environment(tmp_path):
    """The Dockerfile's build and start, without Docker: its pip install into a fresh virtual
    environment from the requirements file it copies, the files it copies laid out as in /app, and
    its CMD run there with PORT and the store on a 'volume' folder. Checks the health endpoint and
    the Overview page, as the image's health check and a browser would.

    The install command is the Dockerfile's, verbatim: pip resolves requirements.txt and installs it into
    the new environment (and byte-compiles it, as the image's build does), but from a wheelhouse of that
    file's wheels (``wheelhouse``, kept between runs) with the index off, so a package missing from
    requirements.txt still fails the install or the start. The environment is made ``--without-pip`` and
    installed into by the test environment's pip (``pip --python``; pip 22.3 or later): the app never uses
    pip. It is made once per (install command, content of requirements.txt, Python, pip) and kept
    (``installed_environment``): the same inputs make the same environment, and a run that installed it
    again spent some 20 CPU seconds on that, and its start another few compiling the libraries from source
    (the install ran ``--no-compile`` to save more). Every pinned requirement is checked to be installed
    at its version.

    The first start on the empty volume writes the demo and starts its background fit (a worker process
    of its own session, which outlives the app): the test checks that it started and then stops it; it
    used to go on fitting for about 15 CPU seconds after the test had ended."""
    steps = _dockerfile()
    app = tmp_path / "app"
    app.mkdir()
    for ins, a in steps:
        if ins == "COPY":
            *srcs, dest = a.split()
            for src in srcs:
                target = app / dest if dest != "." else app / Path(src).name
                if (ROOT / src).is_dir():
                    shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(ROOT / src, target)
    assert (app / PREBUILT.relative_to(ROOT)).is_file()  # the image holds the prebuilt demo a first start copies
    install = next(a for i, a in steps if i == "RUN" and "pip install" in a).replace("/venv", "{venv}")
    assert install.count("pip install ") == 1
    make, pip = "-m venv {venv} ", "{venv}/bin/pip install "
    assert install.count(make) == 1 and install.count(pip) == 1, install
    install = install.replace(make, "-m venv --without-pip {venv} ").replace(
        pip, "{python} -m pip --python {venv}/bin/python install ")
    with installed_environment(install, app / "requirements.txt", wheelhouse(app / "requirements.txt"), app) as venv:
        start_the_image(steps, app, venv, tmp_path)


def start_the_image(steps: list[tuple[str, str]], app: Path, venv: Path, tmp_path: Path) -> None:
    """The image's CMD run in ``app`` with ``venv`` first on the PATH, PORT and the store on a 'volume'
    folder: the health endpoint, the Overview with the demo built on the volume, and the demo fit's worker
    started (then stopped)."""
    argv = json.loads(next(a for i, a in steps if i == "CMD"))
    port = browserkit.free_port()
    data = tmp_path / "data"
    data.mkdir()
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "PORT": str(port), "PREFDISSECT_STORE": str(data / "store.db"),
           "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(argv, cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        browserkit.wait_healthy(url, proc, timeout=120)
        with Session(url) as session:
            run = session.run("")
        assert run.status == "ok" and not run.exceptions, run.exceptions
        assert "Samples per scenario group" in run.texts  # the demo was built on the volume
        assert (data / "store.db").exists()
        from core import demo, jobs

        deadline = time.time() + 60  # its profiles' fit goes to a worker as the first run ends
        while True:
            with Store(data / "store.db") as s:
                fits = [j for j in jobs.list_jobs(s) if j.kind == "fit" and j.params.get("dataset") == demo.DEMO_DATASET]
            if (len(fits) == 1 and fits[0].worker_pid) or time.time() > deadline:
                break
            time.sleep(0.2)
        assert len(fits) == 1 and fits[0].worker_pid, fits
    finally:
        if (data / "store.db").exists():
            stop_job_workers(data / "store.db")
        os.killpg(proc.pid, 15)
        proc.wait(15)
