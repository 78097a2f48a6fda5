"""Helpers for the browser tests: a real `streamlit run` on a free port and headless Chromium.

The fixtures built on these live in ``conftest.py`` (``streamlit_server``, ``browser``), so every
browser test module shares one server and one Chromium per session.
"""

from __future__ import annotations

import contextlib
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


#: The browser's own services that a test has no use for, off (what Puppeteer turns off): none of them changes
#: what a page renders. Measured with ``benchmarks/tree_cpu.py`` over one Chromium's full load and a sweep of
#: eight pages of the demo, five rounds interleaved with the flags left out (load 6-9 on 2 cores): 19.1 CPU s
#: against 21.1 (Chromium, chromedriver and the client together), four rounds of five lower.
QUIET_FLAGS = ("--disable-ipc-flooding-protection", "--disable-hang-monitor", "--disable-breakpad",
               "--disable-client-side-phishing-detection", "--disable-default-apps", "--disable-domain-reliability",
               "--metrics-recording-only", "--mute-audio", "--password-store=basic", "--use-mock-keychain",
               "--no-default-browser-check", "--disable-extensions",
               "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,"
               "InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater,AutofillServerCommunication,"
               "OptimizationGuideModelDownloading")


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000", *QUIET_FLAGS):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    return driver


class AnotherBrowser:
    """A window of the session's Chromium in a browser context of its own (DevTools' ``Target.createBrowserContext``,
    what an incognito window is): its own cookie jar, storage and cache, so to the server it is another browser,
    without starting a second Chromium (about 1 CPU s and the first page's full load). Made by ``another_browser``,
    which switches the driver to this window; ``first()`` switches back to the window the driver had, for a
    while. The context lives as long as the DevTools connection that made it (``disposeOnDetach``)."""

    def __init__(self, driver):
        import json
        import urllib.request

        import websocket  # websocket-client, which Selenium itself depends on

        self.driver, self.first_window, self._n = driver, driver.current_window_handle, 0
        # the browser's own DevTools endpoint: Selenium's execute_cdp_cmd talks to the page, which may not make contexts
        address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        with urllib.request.urlopen(f"http://{address}/json/version", timeout=10) as r:
            endpoint = json.load(r)["webSocketDebuggerUrl"]
        self._ws = websocket.create_connection(endpoint, timeout=30, suppress_origin=True)
        self.context = self.cdp("Target.createBrowserContext", disposeOnDetach=True)["browserContextId"]
        size = driver.get_window_size()
        self.window = self.cdp("Target.createTarget", url="about:blank", browserContextId=self.context,
                               width=size["width"], height=size["height"])["targetId"]
        driver.switch_to.window(self.window)

    def cdp(self, method: str, **params) -> dict:
        import json

        self._n += 1
        self._ws.send(json.dumps({"id": self._n, "method": method, "params": params}))
        while True:
            got = json.loads(self._ws.recv())
            if got.get("id") == self._n:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got["result"]

    @contextlib.contextmanager
    def first(self):
        """The driver in the window it had before (the session's own browser context), then back in this one."""
        self.driver.switch_to.window(self.first_window)
        try:
            yield self.driver
        finally:
            self.driver.switch_to.window(self.window)

    def close(self) -> None:
        try:
            if self.window in self.driver.window_handles:
                self.driver.switch_to.window(self.window)
                self.driver.close()
        finally:
            self.driver.switch_to.window(self.first_window)
            try:
                self.cdp("Target.disposeBrowserContext", browserContextId=self.context)
            finally:
                self._ws.close()


@contextlib.contextmanager
def another_browser(driver):
    """The driver switched to a window of ``AnotherBrowser`` (its own cookie jar) for the block; then that
    window and its context are gone and the driver is back in its own window."""
    other = AnotherBrowser(driver)
    try:
        yield other
    finally:
        other.close()


def page_text(driver) -> str:
    """The body's ``innerText``: what the page renders, with every element hidden by ``display`` or
    ``visibility`` left out, and no more than a few ms of Chromium to read. A superset of what is shown
    (it keeps an element at opacity 0 or clipped away), so the right read for a check that a text is
    absent, and for a failure message; a check that a text is shown asks ``shown`` (or waits for it:
    ``wait_for_text``)."""
    return driver.execute_script("return document.body ? document.body.innerText : ''")


#: ``shown``'s check in the page: ``SHOWN(text)`` is whether the page displays ``text`` (whitespace collapsed),
#: as Selenium's text of the body would (which drops zero-width spaces, as this does: our pages put one inside
#: each would-be autolink of a name, ``dashboard/render.py``): the deepest elements whose rendered text (``innerText``; an SVG text's
#: ``textContent``) holds it, found from the body down through the children that hold it, and one of them
#: displayed (``checkVisibility`` with opacity and visibility: not hidden by display, visibility or opacity 0,
#: its own or an ancestor's) with an area left once every ancestor that hides its overflow has clipped it (an
#: ancestor that scrolls can bring it into its own box, which the ancestors above it then clip: Streamlit's
#: main section scrolls within a box that hides its overflow).
#: Where Selenium's text walks every element of the page with its computed style (0.5-1.4 CPU s of Chromium a
#: read on our pages with charts), this reads the styles of the few elements on the way to the text (a few ms).
SHOWN_JS = r"""
const norm = s => (s || "").replace(/\u200b/g, "").replace(/\s+/g, " ");
const rendered = e => norm(e.innerText ?? e.textContent);
const area = e => {
  const r = e.getBoundingClientRect();
  let [left, top, right, bottom] = [r.left, r.top, r.right, r.bottom];
  for (let a = e.parentElement; a && a !== document.documentElement; a = a.parentElement) {
    const s = getComputedStyle(a), c = a.getBoundingClientRect();
    // clipped by a box that hides its overflow; one that scrolls it can bring it into its own box
    if (/hidden|clip/.test(s.overflowX)) [left, right] = [Math.max(left, c.left), Math.min(right, c.right)];
    else if (/auto|scroll/.test(s.overflowX) && right > left) [left, right] = [c.left, c.right];
    if (/hidden|clip/.test(s.overflowY)) [top, bottom] = [Math.max(top, c.top), Math.min(bottom, c.bottom)];
    else if (/auto|scroll/.test(s.overflowY) && bottom > top) [top, bottom] = [c.top, c.bottom];
  }
  return right > left && bottom > top;
};
const displayed = e => e.checkVisibility({opacityProperty: true, visibilityProperty: true}) && area(e);
const holds = (e, text) => {
  const inner = [...e.children].filter(c => rendered(c).includes(text));
  return inner.length ? inner.some(c => holds(c, text)) : displayed(e);
};
const SHOWN = text => !!document.body && rendered(document.body).includes(norm(text)) && holds(document.body, norm(text));
"""


def shown(driver, *texts) -> list:
    """Of ``texts``, those the page does not display (``SHOWN_JS``), checked in one WebDriver call."""
    return driver.execute_script(SHOWN_JS + "return arguments[0].filter(t => !SHOWN(t));", list(texts))


def assert_shown(driver, *texts, context=None) -> None:
    """Every one of ``texts`` is displayed on the page (``shown``); else fail naming the missing ones,
    with ``context`` and the page's text."""
    missing = shown(driver, *texts)
    assert not missing, f"{context or ''} not shown: {missing}; page shows: {page_text(driver)[:1500]!r}"


#: ``wait_for_text``'s wait in the page: ``SHOWN(text)`` checked every 100 ms until it holds (true) or
#: ``arguments[1]`` seconds have passed (false); ``SHOWN``'s walk runs only once the body's text holds the text.
WAIT_TEXT_JS = SHOWN_JS + """
const [text, timeout, done] = [arguments[0], arguments[1] * 1000, arguments[arguments.length - 1]];
const start = performance.now();
const tick = () => {
  if (SHOWN(text)) return done(true);
  if (performance.now() - start >= timeout) return done(false);
  setTimeout(tick, 100);
};
tick();
"""


def _wait_in_page(driver, script: str, args: tuple, ready, timeout: float):
    """Run ``script``, an in-page wait given ``args`` and the seconds left (it returns once its condition holds
    or those seconds have passed), until ``ready(result)`` or ``timeout`` seconds; the last result, None where
    the document went away under the wait (a full load replacing it ends the call: the wait then goes on in
    the new document)."""
    from selenium.common.exceptions import JavascriptException, TimeoutException

    deadline = time.time() + timeout
    while True:
        left = max(deadline - time.time(), 0)
        result = None
        try:
            driver.set_script_timeout(left + 30)
            result = driver.execute_async_script(script, *args, left)
        except (JavascriptException, TimeoutException):  # the document went away under the wait
            pass
        if ready(result) or time.time() >= deadline:
            return result
        time.sleep(0.1)


def wait_for_text(driver, text, timeout=90) -> None:
    """Wait until the page displays ``text`` (``SHOWN_JS``: what Selenium's text of the body would hold), in
    the page (``WAIT_TEXT_JS``, one WebDriver call at a time: ``_wait_in_page``). Check further texts of the
    page with ``assert_shown``."""
    if not _wait_in_page(driver, WAIT_TEXT_JS, (text,), bool, timeout):
        raise AssertionError(f"{text!r} never appeared; page shows: {page_text(driver)[:1500]!r}")


#: ``wait_for_count``'s wait in the page: the elements matching ``arguments[0]`` counted every 100 ms until there
#: are ``arguments[1]`` or ``arguments[2]`` seconds have passed; the last count.
WAIT_COUNT_JS = """
const [css, n, timeout, done] = [arguments[0], arguments[1], arguments[2] * 1000, arguments[arguments.length - 1]];
const start = performance.now();
const tick = () => {
  const found = document.querySelectorAll(css).length;
  if (found >= n || performance.now() - start >= timeout) return done(found);
  setTimeout(tick, 100);
};
tick();
"""


def wait_for_count(driver, css, n, timeout=90) -> int:
    """Wait until the page has at least ``n`` elements matching ``css`` and return how many, counted in the
    page (``WAIT_COUNT_JS``, one WebDriver call at a time: ``_wait_in_page``), where a poll from here cost a
    round trip every 0.3 s."""
    found = _wait_in_page(driver, WAIT_COUNT_JS, (css, n), lambda got: (got or 0) >= n, timeout) or 0
    if found < n:
        raise AssertionError(f"expected {n} elements matching {css!r}, found {found}")
    return found


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
