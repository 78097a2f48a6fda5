"""Secrets stay secret: an API key used for annotation and judge collection appears nowhere in
the store file, the job logs, the CLI's output, the pages or an export."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import demo
from core.loopback import LoopbackServer
from core.store import Store
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-SECRET-a8f3c2e91b7d4f60"
# AppTest resolves pages against dashboard/, where app.py lives
PAGES = [f"../pages/{name}.py" for name in ("overview", "samples", "profiles", "similarity", "judges", "annotate",
                                            "simulate")]

pytestmark = pytest.mark.slow


def cli(store: Path, *args: str):
    """``python -m core --store STORE ARGS`` in this process, with the test's environment (the key in it)."""
    return run_cli(*args, store=store)


def every_value(at: AppTest) -> str:
    """The text of every element the page produced (main area and sidebar, widgets included)."""
    out = []

    def walk(node):
        for attr in ("value", "label", "body", "help", "placeholder", "options"):
            v = getattr(node, attr, None)
            if v is not None and not callable(v):
                out.append(str(v))
        for child in getattr(node, "children", {}).values() if hasattr(node, "children") else []:
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def test_the_key_is_nowhere(tmp_path, monkeypatch, demo_copy):
    store = demo_copy  # a copy of the session's fitted demo, tmp_path / "store.db"
    monkeypatch.setenv("PREFDISSECT_LLM_API_KEY", KEY)
    with LoopbackServer(latency=0.0, api_key=KEY) as llm:
        # the operator configured this server for the key (else the key is not sent: tests/test_security.py)
        monkeypatch.setenv("PREFDISSECT_LLM_ALLOWED_BASE_URLS", llm.url)
        common = ["--dataset", demo.DEMO_DATASET, "--limit", "6", "--model", "loopback-1", "--base-url", llm.url]
        runs = [cli(store, "annotate", *common, "--both-orders"),
                cli(store, "judge", *common, "--judge", "loopback-judge")]
        # the dashboard's way: a queued job run by a detached worker that inherits the environment
        from core import jobs

        with Store(store) as s:
            job = jobs.submit(s, "judge", {"dataset": demo.DEMO_DATASET, "scenario": None, "limit": 8,
                                           "judge": "loopback-judge-2", "both_orders": True,
                                           "llm": {"model": "loopback-1", "base_url": llm.url}})
        jobs.start_worker(store, job.id, env={"PREFDISSECT_LLM_API_KEY": KEY,
                                              "PREFDISSECT_LLM_ALLOWED_BASE_URLS": llm.url})
        for _ in range(2400):  # 2 minutes
            with Store(store) as s:
                if jobs.get(s, job.id).status not in ("queued", "running"):
                    break
            import time
            time.sleep(0.05)
        assert llm.stats.completions > 0
    for r in runs:
        assert r.returncode == 0, r.stderr
    with Store(store) as s:
        assert jobs.get(s, job.id).status == "done"
        assert s.scalar("SELECT COUNT(*) FROM labels WHERE judge = 'loopback-judge-2'") == 8
    export = tmp_path / "export.db"
    assert cli(store, "export", str(export)).returncode == 0

    # pages: every page, rendered with the key in the environment
    monkeypatch.setenv("PREFDISSECT_STORE", str(store))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    shown = []
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        shown.append(every_value(at))
    page_text = "\n".join(shown)
    assert "loopback-judge" in page_text  # the pages did show the new judge's data

    haystacks = {
        "store": b"".join(p.read_bytes() for p in tmp_path.glob("store.db*") if p.is_file()),
        "export": export.read_bytes(),
        "job logs": b"".join(p.read_bytes() for p in jobs.log_dir(store).glob("*")),
        "cli output": "".join(r.stdout + r.stderr for r in runs).encode(),
        "pages": page_text.encode(),
    }
    for where, data in haystacks.items():
        assert KEY.encode() not in data, f"the API key leaked into the {where}"
        assert KEY[3:].encode() not in data, f"the API key leaked into the {where}"
