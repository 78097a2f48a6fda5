"""Browser tests of the Samples page: a real `streamlit run` in headless Chromium.

A stored response carrying a script tag, a markdown image and an HTML image pointing at a local
HTTP server must show as text, run nothing and fetch nothing. Then a demo sample with a judge's
contributions, and previous / next in the browser. Screenshots: ``samples.png`` and
``samples_inert.png`` in artifacts/screenshots/."""

import http.server
import threading
import time
from urllib.parse import parse_qs, urlparse

from selenium.webdriver.common.by import By

from core import demo
from core.records import Dataset, ImportBatch, Sample
from core.store import SampleFilter, Store
from tests import browserkit
from tests.browserkit import wait_for_count, wait_for_text

pytestmark = browserkit.MARKS

CHARTS = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"


class PixelServer:
    """An HTTP server on a free loopback port that records every request it gets."""

    def __init__(self):
        hits = self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", browserkit.free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for_query(driver, key: str, value: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    got = {}
    while time.time() < deadline:
        got = parse_qs(urlparse(driver.current_url).query)
        if got.get(key) == [value]:
            return got
        time.sleep(0.2)
    raise AssertionError(f"URL never had {key}={value}: {driver.current_url}")


def test_a_hostile_response_shows_as_text_runs_nothing_and_loads_nothing(streamlit_server, browser):
    url, store_path = streamlit_server
    pixel = PixelServer()
    try:
        base = f"http://127.0.0.1:{pixel.port}"
        script = "<script>window.__pwned=1</script>"
        image = f"![x]({base}/pixel.png)"
        tag = f"<img src={base}/img.png onerror=window.__pwned=2>"
        sample = Sample("zz-inert-text-check", "Is this response safe to show?",
                        f"Hello {script} then {image} and {tag} and [link](javascript:window.__pwned=3).",
                        f"Plain answer with a reference ![logo][r]\n\n[r]: {base}/ref.png")
        with Store(store_path) as s:
            s.write_batch(ImportBatch(dataset=Dataset("zz-inert-text-check"), samples=[sample]))
        browserkit.open_page(browser, url + f"/samples?id={sample.id}")  # a page switch within the app where it can
        wait_for_text(browser, "window.__pwned=1")
        browserkit.assert_shown(browser, script, image, tag, "[link](javascript:window.__pwned=3)", "![logo][r]")
        browserkit.wait_idle(browser)  # the run over and every image loaded or failed: any script or handler ran
        assert browser.execute_script("return typeof window.__pwned") == "undefined"
        assert browser.execute_script(f"return document.querySelectorAll('img[src*=\"{pixel.port}\"]').length") == 0
        assert not [a for a in browser.find_elements(By.CSS_SELECTOR, "a[href^='javascript']")]
        assert pixel.hits == [], pixel.hits
        browserkit.screenshot(browser, "samples_inert")
    finally:
        pixel.close()


def test_a_sample_with_a_judges_contributions_and_previous_next(streamlit_server, browser):
    url, store_path = streamlit_server
    f = SampleFilter(dataset=demo.DEMO_DATASET, scenario="Code", judge="demo-crowd")
    with Store(store_path) as s:
        rows, total = s.browse(f, offset=2, limit=3)  # the demo's Code pairs: N_PER_GROUP
    browserkit.open_page(browser, url + f"/samples?id={rows[1]['id']}&judge=demo-crowd&scope=Code")
    wait_for_text(browser, "Predicted P(A | not a tie)")  # the demo's crowd ties: its profile has Davidson's term
    browserkit.assert_shown(browser, "Query", "Response A", "Response B", "Votes", "Why this choice", "Attributes",
                            "Query analysis", f"4 of {total} in this list")
    wait_for_count(browser, CHARTS, 1)  # the waterfall
    size = browser.get_window_size()
    try:
        browserkit.set_window_size(browser, 1400, 2200)  # the chart and the grids painted at that size
        browserkit.screenshot(browser, "samples")  # filters, list, the sample's texts
        heading = next(h for h in browser.find_elements(By.CSS_SELECTOR, "h3") if h.text.startswith("Votes"))
        browser.execute_script("arguments[0].scrollIntoView({block: 'start', behavior: 'instant'});", heading)
        browserkit.wait_idle(browser)  # the grids scrolled into view paint
        browserkit.screenshot(browser, "samples_contributions")  # votes, the waterfall, the attributes
    finally:
        browserkit.set_window_size(browser, size["width"], size["height"])
    for label, want in (("Next", rows[2]["id"]), ("Previous", rows[1]["id"]), ("Previous", rows[0]["id"])):
        browserkit.wait_idle(browser)  # the last click's run is over: its buttons, not the ones it replaces
        # the shown button whose text ends with the label, found in one call (Selenium's text of each button
        # of the page, one WebDriver round trip and a walk of its styles each, cost more than the page's run)
        button = browser.execute_script(
            "return [...document.querySelectorAll('button')].find(b => b.checkVisibility({opacityProperty: true, "
            "visibilityProperty: true}) && b.innerText.trim().endsWith(arguments[0]))", label)
        assert button is not None, label
        browserkit.scroll_to(browser, button)
        button.click()
        got = wait_for_query(browser, "id", want)
        assert got["judge"] == ["demo-crowd"] and got["scenario"] == ["Code"]
    wait_for_text(browser, f"3 of {total} in this list")
