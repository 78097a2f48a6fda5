"""Untrusted text stays inert on every page (issue 7): queries, responses, model and judge names
carrying script tags, iframes, event handlers, remote images and javascript: links. In headless
Chromium nothing executes and no request leaves the page (a local server records any fetch)."""

from selenium.webdriver.common.by import By

from core.records import Dataset, ImportBatch, Judge, Label, Sample
from core.store import Store
from tests import browserkit
from tests.browserkit import wait_for_text
from tests.test_browser_samples import PixelServer

pytestmark = browserkit.MARKS


def hostile(base: str, n: int) -> str:
    return (f"<script>window.__pwned={n}</script> <iframe src='{base}/frame{n}.html'></iframe> "
            f"<img src=x onerror='window.__pwned={n}'> <svg onload='window.__pwned={n}'></svg> "
            f"![pixel]({base}/md{n}.png) <img src='{base}/img{n}.png'> [click](javascript:window.__pwned={n}) "
            f"<a href='javascript:window.__pwned={n}'>a</a> <object data='{base}/obj{n}'></object> "
            f"<link rel=stylesheet href='{base}/css{n}.css'> <style>body{{background:url({base}/bg{n}.png)}}</style>")


def test_hostile_text_is_inert_on_every_page(streamlit_server, browser):
    url, store_path = streamlit_server
    pixel = PixelServer()
    try:
        base = f"http://127.0.0.1:{pixel.port}"
        judge = "<b onmouseover=window.__pwned=9>judge</b>"
        samples = [Sample("zz-hostile", f"HOSTILEQUERY {i} " + hostile(base, 10 + i), hostile(base, 20 + i),
                          hostile(base, 30 + i), model_a=f"<img src='{base}/model{i}.png'>", model_b="plain-model")
                   for i in range(3)]
        batch = ImportBatch(dataset=Dataset("zz-hostile", description=hostile(base, 40)), samples=samples,
                            judges=[Judge(judge, "human")],
                            labels=[Label(s.id, judge, "A") for s in samples])
        with Store(store_path) as s:
            s.write_batch(batch)
        # the lists are data grids drawn on a canvas: their rows are not in the page's text
        visits = [("/", "Agreement between judges"), ("/samples?dataset=zz-hostile", "Showing 1–3 of 3"),
                  (f"/samples?id={samples[0].id}", "window.__pwned=20"),  # the sample: screenshot hostile.png
                  ("/samples?dataset=zz-hostile&q=HOSTILEQUERY", "of 3"),
                  ("/judges", "Judges"), ("/simulate", "Simulator")]
        sample_page = f"/samples?id={samples[0].id}"
        for path, marker in visits:
            browserkit.open_page(browser, url + path)  # a page switch within the app where it can (a script
            # that ran on an earlier page stays caught: window.__pwned outlives a switch)
            wait_for_text(browser, marker)
            browserkit.wait_idle(browser)  # the run over, charts drawn, every image loaded or failed
            if path == sample_page:
                browserkit.assert_shown(browser, "<iframe src=", "onerror=")  # shown as the text it is
                browserkit.screenshot(browser, "hostile")
            assert browser.execute_script("return typeof window.__pwned") == "undefined", path
            for tag in ("iframe", "img", "object", "link", "svg"):
                n = browser.execute_script(
                    f"return [...document.querySelectorAll('{tag}')].filter("
                    f"e => (e.src || e.data || e.href || '').toString().includes('{pixel.port}')).length")
                assert n == 0, (path, tag)
            assert not browser.find_elements(By.CSS_SELECTOR, "a[href^='javascript']"), path
            # nor a style sheet that could fetch from it later
            assert browser.execute_script(
                f"return [...document.querySelectorAll('style')].filter(e => e.textContent.includes('{pixel.port}'))"
                ".length") == 0, path
        assert pixel.hits == [], pixel.hits
    finally:
        pixel.close()
