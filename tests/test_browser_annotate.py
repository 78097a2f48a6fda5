"""Browser: the Annotate & fit and Judges pages render in headless Chromium on a real `streamlit run`
(the shared demo-seeded server; these tests only read, so other browser modules see the same store)."""

from tests import browserkit
from tests.browserkit import wait_for_count, wait_for_text

pytestmark = browserkit.MARKS


def no_exception(browser) -> None:
    assert not browser.find_elements("css selector", "[data-testid='stException']")


def test_annotate_page_renders(streamlit_server, browser):
    url, _ = streamlit_server
    browserkit.open_page(browser, url + "/annotate")  # a page switch within the app where it can
    wait_for_text(browser, "Annotator")
    wait_for_text(browser, "Fit profiles")
    browserkit.assert_shown(browser, "Annotate & fit", "Job", "Fit profiles", "History", "Scenario groups")
    browserkit.wait_idle(browser)
    no_exception(browser)
    browserkit.screenshot(browser, "annotate")


def test_judges_page_renders_with_the_demo_judges(streamlit_server, browser):
    url, _ = streamlit_server
    browserkit.open_page(browser, url + "/judges")
    wait_for_text(browser, "Upload labels")  # near the end of the page: the run got there
    wait_for_text(browser, "Collect from a model")
    browserkit.assert_shown(browser, "Reference judge", "Position bias", "Agreement between every two judges",
                            "Add a judge")
    wait_for_count(browser, "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg", 2)
    browserkit.wait_idle(browser)
    no_exception(browser)
    browserkit.screenshot(browser, "judges")
