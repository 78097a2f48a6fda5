"""Browser tests: a real `streamlit run` on a free port, driven by headless Chromium.

The server and the browser are session fixtures in conftest.py, shared with the other
``test_browser_*`` modules."""

from tests import browserkit
from tests.browserkit import wait_for_count, wait_for_text

pytestmark = browserkit.MARKS


def test_overview_renders_in_chromium(streamlit_server, browser):
    url, _ = streamlit_server
    browser.get(url + "/")
    wait_for_text(browser, "Agreement between judges")
    browserkit.assert_shown(browser, "Overview", "Datasets", "Samples per scenario group", "synthetic")
    # both charts drawn, and the three tables (datasets, judges, agreement pairs)
    wait_for_count(browser, "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg", 2)
    wait_for_count(browser, "[data-testid='stDataFrame'] canvas", 3)
    browserkit.wait_idle(browser)  # the run over, the grids painted, before the screenshot
    browserkit.screenshot(browser, "overview")
