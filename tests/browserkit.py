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


#: ``wait_for_text``'s wait in the page: its rendered text (``innerText``, whitespace collapsed) read every
#: 100 ms until it holds the text (true) or ``arguments[1]`` seconds have passed (false).
WAIT_TEXT_JS = """
const [text, timeout, done] = [arguments[0].replace(/\\s+/g, " "), arguments[1] * 1000, arguments[arguments.length - 1]];
const start = performance.now();
const tick = () => {
  if (document.body && document.body.innerText.replace(/\\s+/g, " ").includes(text)) return done(true);
  if (performance.now() - start >= timeout) return done(false);
  setTimeout(tick, 100);
};
tick();
"""


def _text_in_page(driver, text, seconds: float) -> bool:
    """``WAIT_TEXT_JS``: whether the body's rendered text holds ``text`` within ``seconds`` (False also
    where the document went away under the wait)."""
    from selenium.common.exceptions import JavascriptException, TimeoutException

    try:
        driver.set_script_timeout(max(seconds, 0) + 30)
        return bool(driver.execute_async_script(WAIT_TEXT_JS, text, max(seconds, 0)))
    except (JavascriptException, TimeoutException):  # the document went away under the wait
        return False


def wait_for_rendered_text(driver, text, timeout=90) -> None:
    """Wait until the body's rendered text (``innerText``, whitespace collapsed) holds ``text``, in the page
    (``WAIT_TEXT_JS``), without reading Selenium's text: for a caller that reads that text itself once the
    page has settled (``wait_idle``) and asserts ``text`` is in it."""
    deadline = time.time() + timeout
    while not _text_in_page(driver, text, deadline - time.time()):
        if time.time() >= deadline:
            raise AssertionError(f"{text!r} never appeared; page shows: {body_text(driver)[:1500]!r}")
        time.sleep(0.1)


def wait_for_text(driver, text, timeout=90) -> str:
    """Wait until the page shows ``text`` (Selenium's text of the body: what is displayed) and return that
    text. The wait itself runs in the page (``WAIT_TEXT_JS``: the body's ``innerText``, a few ms) and
    Selenium's text is read once it holds the text, and at least every 5 s: that read walks every element
    with its computed style (0.1-1 CPU s of Chromium on a page of ours), where a poll of it every 0.3 s
    cost more CPU than the pages themselves."""
    deadline = time.time() + timeout
    body = ""
    while True:
        _text_in_page(driver, text, min(5.0, deadline - time.time()))
        body = body_text(driver)
        if text in body:
            return body
        if time.time() >= deadline:
            raise AssertionError(f"{text!r} never appeared; page shows: {body[:1500]!r}")
        time.sleep(0.1)


def wait_for_count(driver, css, n, timeout=90) -> int:
    deadline = time.time() + timeout
    found = 0
    while time.time() < deadline:
        found = len(driver.find_elements("css selector", css))
        if found >= n:
            return found
        time.sleep(0.3)
    raise AssertionError(f"expected {n} elements matching {css!r}, found {found}")


#: What the page shows of its state, read in one go (``wait_idle``): the script run's state on ``stApp``
#: ("initial" before the first run, "running", "notRunning" once a run has finished), elements left over from
#: an earlier run (stale), Vega charts and how many of them have drawn their marks, images still loading (a
#: lazy one off screen never loads: the negative checks look for the element itself),
#: web fonts (Vega measures its labels with them), and the size of the page (elements, text).
PAGE_STATE_JS = """
const app = document.querySelector("[data-testid='stApp']");
const charts = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")];
return JSON.stringify({
  run: app ? app.getAttribute("data-test-script-state") : null,
  connection: app ? app.getAttribute("data-test-connection-state") : null,
  stale: document.querySelectorAll("[data-stale='true']").length,
  charts: charts.length,
  drawn: charts.filter(c => c.querySelector("svg.marks, canvas.marks")).length,
  loading: [...document.images].filter(i => !i.complete && i.loading !== "lazy").length,
  skeletons: document.querySelectorAll("[data-testid='stSkeleton']").length,
  fonts: document.fonts.status,
  elements: document.getElementsByTagName("*").length,
  text: document.body.innerText.length,
  width: window.innerWidth, height: window.innerHeight,
});
"""


#: ``wait_idle`` run in the page: ``PAGE_STATE_JS``'s state read every 100 ms, and the wait's answer once the
#: state has been idle and unchanged for ``quiet`` seconds (then two animation frames) or at ``timeout``.
WAIT_IDLE_JS = """
const [quiet, timeout, done] = [arguments[0] * 1000, arguments[1] * 1000, arguments[arguments.length - 1]];
const read = () => JSON.parse((() => { %s })());
const idle = s => s.run === "notRunning" && s.stale === 0 && s.drawn === s.charts && s.loading === 0
  && s.skeletons === 0 && s.fonts === "loaded";
const start = performance.now();
let last = null, since = null;
const tick = () => {
  const now = performance.now(), state = read();
  if (last === null || JSON.stringify(state) !== JSON.stringify(last)) since = null;
  last = state;
  if (idle(state)) {
    since = since ?? now;
    if (now - since >= quiet)
      return requestAnimationFrame(() => requestAnimationFrame(() => done(JSON.stringify({idle: true, state}))));
  } else {
    since = null;
  }
  if (now - start >= timeout) return done(JSON.stringify({idle: false, state}));
  setTimeout(tick, 100);
};
tick();
""" % PAGE_STATE_JS


def wait_idle(driver, timeout: float = 90, quiet: float = 0.3) -> dict:
    """Wait until the page has finished: its script run is over (Streamlit's own run state, not a guess),
    nothing stale is left from an earlier run, every Vega chart has drawn its marks, every image has
    loaded or failed (so any ``onerror`` has fired), the web fonts are in, and all of that has held, with
    the page's elements and text unchanged, for ``quiet`` seconds (a rerun that a widget asks for as it
    mounts, or a fragment's poll, shows up as a run or as a change). Then two animation frames, so canvases
    (data grids) are painted. A check that something is absent, made after this, sees everything the page
    draws. Returns the page's state; fails with it after ``timeout`` seconds.

    The page watches itself (``WAIT_IDLE_JS``, one WebDriver call), where a poll from here every 100 ms cost
    a WebDriver round trip each (Python, chromedriver and Chromium's CPU). A full load that replaces the
    document during the wait ends that call; the wait then goes on in the new document."""
    import json

    from selenium.common.exceptions import JavascriptException, TimeoutException

    deadline = time.time() + timeout
    while True:
        left = deadline - time.time()
        try:
            driver.set_script_timeout(max(left, 0) + 30)
            got = json.loads(driver.execute_async_script(WAIT_IDLE_JS, quiet, max(left, 0)))
        except (JavascriptException, TimeoutException):  # the document went away under the wait
            if time.time() >= deadline:
                raise
            time.sleep(0.1)
            continue
        if got["idle"]:
            return got["state"]
        raise AssertionError(f"the page never settled in {timeout} s: {got['state']}")


#: Streamlit's own back/forward (its ``popstate`` handler reruns the page the address names, with the address's
#: query), counting the app's script runs that start from here on in ``window.__runsSince``.
SWITCH_PAGE_JS = """
const app = document.querySelector("[data-testid='stApp']");
window.__runsSince = 0;
// a record per change, read from its old value (a run can start and end before the observer hears of it)
new MutationObserver(records => records.forEach(r => {
  if (r.oldValue !== "running") window.__runsSince += 1;
})).observe(app, {attributes: true, attributeOldValue: true, attributeFilter: ["data-test-script-state"]});
history.pushState({}, "", arguments[0]);
window.dispatchEvent(new PopStateEvent("popstate", {state: {}}));
"""


#: how long ``open_page`` waits to see the app start the switched-to page's run before it loads the address in full
SWITCH_SEEN_S = 20


def open_page(driver, url: str, timeout: float = 90) -> None:
    """Open ``url`` in the window. Where the window already shows the same app, connected, at another page,
    this is Streamlit's client-side page switch (what its back and forward buttons do: a new history entry, and
    the app reruns the page the address names with the address's query), which spares Chromium a fresh load of
    the app (about half its CPU for a page) and the server a new session; it returns once the new page's run
    is over and the old page's elements are gone (``wait_idle``), so what the window shows is the new page. The same
    page with another query switches too: that is the browser's back and forward within a page, and our pages
    apply a query that changed (``dashboard/viewurl.py``, ``dashboard/sampleurl.py``). Else a full load
    (``driver.get``): the first page, another server, or the very address the window shows (a reload); and when
    the app is not seen to start a run within ``SWITCH_SEEN_S`` of the switch."""
    from urllib.parse import urlsplit

    want, now = urlsplit(url), urlsplit(driver.current_url)
    state = driver.execute_script(
        "const a = document.querySelector(\"[data-testid='stApp']\");"
        "return a ? a.getAttribute('data-test-connection-state') : null;")
    if (want.scheme, want.netloc) != (now.scheme, now.netloc) \
            or (want.path.rstrip("/"), want.query) == (now.path.rstrip("/"), now.query) or state != "CONNECTED":
        driver.get(url)
        return
    driver.execute_script(SWITCH_PAGE_JS, want.path + (f"?{want.query}" if want.query else ""))
    start = time.time()
    deadline = start + timeout
    while not driver.execute_script("return window.__runsSince"):
        if time.time() > start + min(SWITCH_SEEN_S, timeout):
            # no run seen (once, on a loaded machine, from the Simulator to the Samples list: likely a short run
            # whose "running" came and went within one render, so the attribute never changed): load the address
            driver.get(url)
            return
        time.sleep(0.05)
    wait_idle(driver, timeout=max(1.0, deadline - time.time()))  # the new page's run over, the old page's elements gone


def scroll_to(driver, element) -> None:
    """Scroll ``element`` to the middle of the window and wait until it is what a click at its centre hits
    (itself, a child, or for a chart's mark, the chart's own drawing: not Streamlit's header or a toast),
    where it stays, so a click lands on it."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
    deadline, last = time.time() + 30, None
    while time.time() < deadline:
        at = driver.execute_script(
            "const e = arguments[0], r = e.getBoundingClientRect();"
            "const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
            "const own = e.closest('svg') || e;"
            "return r.width > 0 && !!top && (own === top || own.contains(top)) ? [r.left, r.top] : null;", element)
        if at is not None and at == last:
            return
        last = at
        time.sleep(0.1)
    raise AssertionError(f"{element.tag_name} never came to rest on top at its place in the window")


def set_window_size(driver, width: int, height: int) -> None:
    """Resize the window and wait until the page has drawn itself at the new size (``wait_idle``: charts
    redraw for their container's width)."""
    driver.set_window_size(width, height)
    wait_idle(driver)


def screenshot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
