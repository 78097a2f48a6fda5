"""Issue 12 in a real browser: no name from the data becomes a link on any page, and a signed-in
browser stays signed in across a reload and a shared link (a signed cookie, never the password)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from core import demo, fit
from core.records import Dataset, ImportBatch, Judge
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


def _linky_store(path: Path) -> str:
    """A store whose dataset, judges and models are all named with links (sorted first, so every
    page shows them by default), with features and fitted profiles."""
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
    out = ImportBatch(
        Dataset(ds, description=LINKY),
        samples,
        [dataclasses.replace(j, name=judges[j.name]) for j in batch.judges],
        [dataclasses.replace(l, sample_id=ids[l.sample_id], judge=judges[l.judge]) for l in batch.labels],
        [dataclasses.replace(f, sample_id=ids[f.sample_id]) for f in batch.features],
    )
    with Store(path) as s:
        s.write_batch(out)
        fit.dissect(s, ds, demo.FEATURE_SOURCE, scopes=["all"], folds=0)
    return samples[0].id


def test_no_name_from_the_data_becomes_a_link(tmp_path, browser):
    path = tmp_path / "store.db"
    sid = _linky_store(path)
    proc, url = browserkit.start_streamlit(path, env={"PREFDISSECT_SEED_DEMO": "0"})
    try:
        for page, marker in PAGES + QUIET:
            browserkit.open_page(browser, url + page.format(sid=sid))  # a page switch within the app where it can
            browserkit.wait_for_rendered_text(browser, marker)
            browserkit.wait_idle(browser)  # the run over, fragments and charts drawn: all a link could be in
            body = browserkit.body_text(browser)  # what the page shows, read once it has settled
            assert marker in body, (page, marker)
            assert "https://ev" in body or (page, marker) in QUIET, f"{page}: the names are not shown, so the test proves nothing"
            links = browser.execute_script(
                "return [...document.querySelectorAll('a')].map(a => new URL(a.href, location.href))"
                ".filter(u => u.host !== location.host).map(u => u.href).filter(h => h.includes('evil'))")
            assert links == [], (page, links)
        browserkit.screenshot(browser, "links_in_names")
    finally:
        browserkit.stop(proc)


@pytest.fixture
def password_server(tmp_path):
    env = {"PREFDISSECT_SEED_DEMO": "0", "PREFDISSECT_PASSWORD": "viewer-pw-1", "PREFDISSECT_EDITOR_PASSWORD":
           "editor-pw-2", "PREFDISSECT_COOKIE_SECRET": "browser-test-secret"}
    proc, url = browserkit.start_streamlit(tmp_path / "store.db", env=env)
    yield url
    browserkit.stop(proc)


def test_a_signed_in_browser_stays_signed_in_across_reloads_and_links(password_server, browser):
    url = password_server
    driver = browserkit.chrome()  # its own cookie jar
    try:
        driver.get(url + "/")
        wait_for_text(driver, "Sign in with the password")
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 60).until(ec.element_to_be_clickable((By.CSS_SELECTOR, "input[type='password']")))
        driver.find_element(By.CSS_SELECTOR, "input[aria-label='Your name']").send_keys("ann")
        driver.find_element(By.CSS_SELECTOR, "input[type='password']").send_keys("editor-pw-2")
        driver.find_element(By.XPATH, "//button[.//p[text()='Sign in']]").click()
        wait_for_text(driver, "Signed in as ann (editor)")
        deadline = time.time() + 20
        while time.time() < deadline and not driver.get_cookie("prefdissect_auth"):
            time.sleep(0.2)
        cookie = driver.get_cookie("prefdissect_auth")
        assert cookie and "editor-pw-2" not in cookie["value"] and cookie.get("sameSite") == "Strict"
        driver.refresh()  # a reload is a new session
        wait_for_text(driver, "Signed in as ann (editor)")
        driver.get(url + "/judges")  # a shared link, opened in the same browser
        wait_for_text(driver, "Signed in as ann (editor)")
        driver.find_element(By.XPATH, "//button[.//p[text()='Sign out']]").click()
        wait_for_text(driver, "Sign in with the password")
        driver.refresh()
        wait_for_text(driver, "Sign in with the password")  # signed out stays signed out
    finally:
        driver.quit()
    # another browser has no cookie: asked to sign in (the session's Chromium, which never signed in anywhere)
    assert not browser.get_cookie("prefdissect_auth")
    browser.get(url + "/judges")
    assert not browser.get_cookie("prefdissect_auth")
    wait_for_text(browser, "Sign in with the password")
