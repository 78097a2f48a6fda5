"""Helpers for the browser tests: a real `streamlit run` on a free port and headless Chromium.

The fixtures built on these live in ``conftest.py`` (``streamlit_server``, ``browser``), so every
browser test module shares one server and one Chromium per session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

#: put on every browser test module: ``pytestmark = browserkit.MARKS``
MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    proc.kill()
    out = proc.stdout.read().decode(errors="replace")[-2000:] if proc.stdout else ""
    pytest.fail("streamlit did not become healthy: " + out)


def start_streamlit(store: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None):
    """Start ``streamlit run dashboard/app.py`` on a free port; returns (process, url)."""
    port = free_port()
    full_env = {**os.environ, "PREFDISSECT_STORE": str(store), **(env or {})}
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", *(args or [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    return driver


def body_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def wait_for_text(driver, text, timeout=90) -> str:
    deadline = time.time() + timeout
    body = ""
    while time.time() < deadline:
        body = body_text(driver)
        if text in body:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared; page shows: {body[:1500]!r}")


def wait_for_count(driver, css, n, timeout=90) -> int:
    deadline = time.time() + timeout
    found = 0
    while time.time() < deadline:
        found = len(driver.find_elements("css selector", css))
        if found >= n:
            return found
        time.sleep(0.3)
    raise AssertionError(f"expected {n} elements matching {css!r}, found {found}")


def screenshot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
