"""Issue 12 in a real browser: no name from the data becomes a link on any page, and a signed-in
browser stays signed in across a reload and a shared link (a signed cookie, never the password)."""

from __future__ import annotations

import dataclasses
import time

import pytest
from selenium.webdriver.common.by import By

from core import demo, fit
from core.records import Dataset, ImportBatch
from core.store import Store
from tests import browserkit
from tests.browserkit import wait_for_text

pytestmark = browserkit.MARKS

#: every shape a markdown renderer links: a bare URL, www., a markdown link, an e-mail, mailto:
LINKY = "https://evil.example/a www.evil.example [x](https://evil.example/b) ops@evil.example mailto:x@evil.example"
PAGES = [("/", "Agreement between judges"), ("/samples?id={sid}", "Votes"), ("/profiles", "Most and least rewarded"),
         ("/similarity", "similarity"), ("/judges", "Position bias"), ("/simulate", "Attribute-controlled"),
         # the Simulator's analyses are lazy tabs: the leaderboard (model names) and calibration open by link
         ("/simulate?analysis=Attribute-controlled+win+rates", "Neutralise"),
         ("/simulate?analysis=Calibration", "Judges to calibrate")]
#: pages whose names sit only in widgets or data grids (canvas), not in the page's text
QUIET = [("/samples", "Showing"), ("/annotate", "History"), ("/data", "Your data")]


def _linky_batch() -> ImportBatch:
    """A dataset whose name, judges and models are all named with links, sorted before the demo's (and any
    other test's: "0 ..."), so every page that opens on the first dataset, judge or model shows them."""
    batch, _, _ = demo.generate(seed=5, n_per_group=6)
    ds = "0 dataset " + LINKY
    judges = {j.name: f"{i} judge {LINKY}" for i, j in enumerate(batch.judges)}
    models = {}
    samples, ids = [], {}
    for s in batch.samples:
        for m in (s.model_a, s.model_b):
            if m and m not in models:
                models[m] = f"{len(models)} model {LINKY}"
        new = dataclasses.replace(s, dataset=ds, id="", model_a=models.get(s.model_a), model_b=models.get(s.model_b))
        ids[s.id] = new.id
        samples.append(new)
    return ImportBatch(
        Dataset(ds, description=LINKY),
        samples,
        [dataclasses.replace(j, name=judges[j.name]) for j in batch.judges],
        [dataclasses.replace(l, sample_id=ids[l.sample_id], judge=judges[l.judge]) for l in batch.labels],
        [dataclasses.replace(f, sample_id=ids[f.sample_id]) for f in batch.features],
    )


@pytest.fixture
def linky_store(streamlit_server):
    """The linky dataset with its features and fitted profiles, written into the session server's store (the
    server reads it on the next run: no server of its own), and deleted with everything of it afterwards (its
    judges, labels, features, profiles), so the other browser tests' pages open on the store they know."""
    url, path = streamlit_server
    batch = _linky_batch()
    with Store(path) as s:
        before = (s.all_judge_names(), [d["name"] for d in s.datasets()])
        s.write_batch(batch)
        # the pages need profiles to show (the names are what is checked), not precise ones: a quarter of the
        # fast method's draws (1.1 CPU s for the fit, where 1.45)
        fit.dissect(s, batch.dataset.name, demo.FEATURE_SOURCE, scopes=["all"], folds=0, draws=250)
    yield url, batch.samples[0].id
    with Store(path) as s:
        s.delete("dataset", batch.dataset.name, backup=False)
        assert (s.all_judge_names(), [d["name"] for d in s.datasets()]) == before


def test_no_name_from_the_data_becomes_a_link(linky_store, browser):
    url, sid = linky_store
    for page, marker in PAGES + QUIET:
        browserkit.open_page(browser, url + page.format(sid=sid))  # a page switch within the app where it can
        wait_for_text(browser, marker)
        browserkit.wait_idle(browser)  # the run over, fragments and charts drawn: all a link could be in
        browserkit.assert_shown(browser, marker, context=page)  # still, once the page has settled
        # the names, displayed as text (else the test proves nothing)
        assert (page, marker) in QUIET or not browserkit.shown(browser, "https://ev"), \
            f"{page}: the names are not shown, so the test proves nothing"
        links = browser.execute_script(
            "return [...document.querySelectorAll('a')].map(a => new URL(a.href, location.href))"
            ".filter(u => u.host !== location.host).map(u => u.href).filter(h => h.includes('evil'))")
        assert links == [], (page, links)
    browserkit.screenshot(browser, "links_in_names")


@pytest.fixture(scope="module")
def password_server(tmp_path_factory):
    env = {"PREFDISSECT_SEED_DEMO": "0", "PREFDISSECT_PASSWORD": "viewer-pw-1", "PREFDISSECT_EDITOR_PASSWORD":
           "editor-pw-2", "PREFDISSECT_COOKIE_SECRET": "browser-test-secret"}
    proc, url = browserkit.start_streamlit(tmp_path_factory.mktemp("password") / "store.db", env=env)
    yield url
    browserkit.stop(proc)


def test_a_signed_in_browser_stays_signed_in_across_reloads_and_links(password_server, browser):
    url = password_server
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with browserkit.another_browser(browser) as other:  # the driver in a browser context of its own: its own cookies
        browser.get(url + "/")
        wait_for_text(browser, "Sign in with the password")
        WebDriverWait(browser, 60).until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[type='password']")))
        browser.find_element(By.CSS_SELECTOR, "input[aria-label='Your name']").send_keys("ann")
        browser.find_element(By.CSS_SELECTOR, "input[type='password']").send_keys("editor-pw-2")
        browser.find_element(By.XPATH, "//button[.//p[text()='Sign in']]").click()
        wait_for_text(browser, "Signed in as ann (editor)")
        deadline = time.time() + 20
        while time.time() < deadline and not browser.get_cookie("prefdissect_auth"):
            time.sleep(0.2)
        cookie = browser.get_cookie("prefdissect_auth")
        assert cookie and "editor-pw-2" not in cookie["value"] and cookie.get("sameSite") == "Strict"
        browser.refresh()  # a reload is a new session
        wait_for_text(browser, "Signed in as ann (editor)")
        browser.get(url + "/judges")  # a shared link, opened in the same browser
        wait_for_text(browser, "Signed in as ann (editor)")
        # another browser has no cookie and, while ann is signed in, is asked to sign in (the session's own
        # browser context, which never signed in anywhere)
        with other.first():
            assert not browser.get_cookie("prefdissect_auth")
            browser.get(url + "/judges")
            assert not browser.get_cookie("prefdissect_auth")
            wait_for_text(browser, "Sign in with the password")
        wait_for_text(browser, "Signed in as ann (editor)")  # ann still is
        browser.find_element(By.XPATH, "//button[.//p[text()='Sign out']]").click()
        wait_for_text(browser, "Sign in with the password")
        browser.refresh()
        wait_for_text(browser, "Sign in with the password")  # signed out stays signed out
