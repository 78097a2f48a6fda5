"""Browser tests of the Profiles and Similarity pages: a real `streamlit run` in headless Chromium.

Uses the session's shared server (demo store) and browser from conftest.py. Saves the screenshots
``profiles.png`` (the README's) and ``similarity.png`` to artifacts/screenshots/."""

import time
from urllib.parse import parse_qs, urlparse

from selenium.webdriver.common.by import By

from tests import browserkit
from tests.browserkit import wait_for_count, wait_for_text
from core.profile import profile_frame

pytestmark = browserkit.MARKS

CHARTS = "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"


def wait_for_url(driver, part: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if part in driver.current_url:
            return driver.current_url
        time.sleep(0.2)
    raise AssertionError(f"URL never contained {part!r}: {driver.current_url}")


def assert_contract(url, want: dict) -> None:
    """The Samples page's URL contract: /samples?dataset=D&attr=ATTR_KEY&judge=J&scope=S (the page may
    add parameters of its own once it has loaded)."""
    assert url.path.endswith("/samples"), url
    got = parse_qs(url.query)
    assert {k: got.get(k) for k in want} == {k: [v] for k, v in want.items()}, got


def test_profiles_page_draws_the_chart_and_an_attribute_link_opens_its_samples(streamlit_server, browser):
    url, _ = streamlit_server
    # a link can preselect judges: three demo judges with distinct tastes, for the README screenshot
    browserkit.open_page(browser, url + "/profiles?judge=demo-crowd&judge=demo-gpt-4-turbo&judge=demo-tulu-70b")
    wait_for_text(browser, "Held-out accuracy and fit diagnostics")  # the last section
    browserkit.assert_shown(browser, "Preference profiles", "Most and least rewarded", "Difference between two judges",
                            "demo-crowd", "demo-gpt-4-turbo", "demo-tulu-70b")
    wait_for_count(browser, CHARTS, 2)  # the profile chart and the difference chart
    size = browser.get_window_size()
    try:
        browserkit.set_window_size(browser, 1400, 1800)  # the whole chart in one screenshot, painted at that size
        browserkit.screenshot(browser, "profiles")
    finally:
        browserkit.set_window_size(browser, size["width"], size["height"])

    links = [a for a in browser.find_elements(By.CSS_SELECTOR, "a[href*='samples?']") if "attr=" in a.get_attribute("href")]
    assert len(links) == 29, [a.get_attribute("href") for a in links]
    link = next(a for a in links if a.text.startswith("lengthy"))
    browserkit.scroll_to(browser, link)
    link.click()
    got = urlparse(wait_for_url(browser, "/samples?"))
    assert_contract(got, {"dataset": "demo-synthetic", "attr": "lengthy", "judge": "demo-crowd", "scope": "all"})


def test_clicking_a_bar_of_the_profile_chart_opens_the_samples_of_that_attribute_and_judge(streamlit_server, browser):
    url, store_path = streamlit_server
    from core import compare
    from core.store import Store

    with Store(store_path) as s:  # a bar per estimated term (position + measured attributes) and judge
        rows = s.profiles(dataset="demo-synthetic", scope="Code", judges=["demo-gpt-4-turbo", "demo-crowd"], method="fast")
        bars_expected = int((profile_frame(rows)["status"] == "measured").sum())
    browserkit.open_page(browser, url + "/profiles?scope=Code&judge=demo-gpt-4-turbo&judge=demo-crowd")
    wait_for_text(browser, "Held-out accuracy and fit diagnostics")
    wait_for_count(browser, "[data-testid='stVegaLiteChart'] svg g.mark-rect path", bars_expected)
    browserkit.wait_idle(browser)
    bars = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] svg g.mark-rect path")
    # Vega labels each bar with its tooltip fields; pick the strict judge's "no severe errors" bar
    bar = next(b for b in bars if "label: no severe errors;" in (b.get_attribute("aria-label") or "")
               and "judge: demo-gpt-4-turbo;" in b.get_attribute("aria-label"))
    browserkit.scroll_to(browser, bar)
    bar.click()
    got = urlparse(wait_for_url(browser, "/samples?"))
    assert_contract(got, {"dataset": "demo-synthetic", "attr": "no_severe_errors", "judge": "demo-gpt-4-turbo",
                          "scope": "Code"})


def test_similarity_page_draws_the_heatmap_and_two_profiles(streamlit_server, browser):
    url, _ = streamlit_server
    browserkit.open_page(browser, url + "/similarity")
    wait_for_text(browser, "on the Profiles page")  # the last element
    browserkit.assert_shown(browser, "Judge similarity", "averaged over 11 scenario groups", "Groups of judges",
                            "Two profiles side by side", "Similarity of demo-")
    wait_for_count(browser, CHARTS, 3)  # heatmap + two profiles
    browserkit.wait_idle(browser)
    browserkit.screenshot(browser, "similarity")
    # a click on a cell (on its number, drawn over it) puts that pair side by side
    texts = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] svg g.mark-text text")
    cell = next(t for t in texts if "judge_a: demo-crowd;" in (t.get_attribute("aria-label") or "")
                and "judge_b: demo-gpt-4-turbo;" in t.get_attribute("aria-label"))
    browserkit.scroll_to(browser, cell)
    cell.click()
    wait_for_text(browser, "Similarity of demo-crowd and demo-gpt-4-turbo")
