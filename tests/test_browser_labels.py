"""Every label of every chart readable (issue 17): on the demo, in a real `streamlit run` and headless
Chromium, the rendered SVG of each page's charts names every judge and every attribute in full, and no
axis or legend label is cut short by Vega's ellipsis.

Uses the session's shared server (demo store) and browser from conftest.py; screenshots of each page
go to artifacts/screenshots/labels_*.png."""

import pytest
from selenium.webdriver.common.by import By

from core import catalogue
from core.demo import JUDGES
from tests import browserkit
from tests.browserkit import wait_for_count

pytestmark = browserkit.MARKS

SVG = "[data-testid='stVegaLiteChart'] svg"
JUDGE_NAMES = sorted(JUDGES)  # the demo's four judges
ATTRIBUTES = [a.label for a in catalogue.attributes()]


def chart_texts(driver) -> list[list[str]]:
    """Per chart on the page: the text of its axis labels, legend labels and titles, as drawn (Vega keeps a
    label it hides for overlap in the SVG with opacity 0: those are left out)."""
    out = []
    for svg in driver.find_elements(By.CSS_SELECTOR, SVG):
        texts = driver.execute_script(
            "return Array.from(arguments[0].querySelectorAll("
            "'g.role-axis-label text, g.role-legend-label text, g.role-title-text text, g.role-legend-title text'"
            ")).filter(t => t.getAttribute('opacity') !== '0' && t.parentElement.getAttribute('opacity') !== '0')"
            ".map(t => t.textContent);", svg)
        out.append(texts)
    return out


def settle(driver, path: str, charts: int, shot: str) -> list[list[str]]:
    """The page's chart texts once it has settled (its run over, every chart drawn: ``wait_idle``), read at
    the test window's size; then a tall screenshot of it."""
    browserkit.open_page(driver, driver.base + path)  # a page switch within the app where it can
    wait_for_count(driver, SVG, charts, timeout=120)
    browserkit.wait_idle(driver)
    texts = chart_texts(driver)
    size = driver.get_window_size()
    try:
        browserkit.set_window_size(driver, 1400, 2400)
        browserkit.screenshot(driver, f"labels_{shot}")
    finally:
        browserkit.set_window_size(driver, size["width"], size["height"])
    assert chart_texts(driver) == texts, "the charts drew other labels after a resize and back"
    return texts


def assert_readable(texts: list[list[str]]) -> None:
    cut = [t for chart in texts for t in chart if "…" in t]
    assert not cut, f"labels cut short: {cut}"


@pytest.fixture
def page(streamlit_server, browser):
    browser.base = streamlit_server[0]
    return browser


def test_overview_agreement_heatmap_names_every_judge_on_both_axes(page):
    texts = settle(page, "/", 2, "overview")
    # a team tool: Streamlit's deploy button is not offered to the people reading it (client.toolbarMode)
    assert not page.find_elements(By.CSS_SELECTOR, "[data-testid='stAppDeployButton']")
    assert "Deploy" not in browserkit.page_text(page)  # innerText: all that is shown, and more
    assert_readable(texts)
    heat = next(t for t in texts if sum(j in t for j in JUDGE_NAMES) >= 2)
    for judge in JUDGE_NAMES:
        assert heat.count(judge) >= 2, (judge, heat)  # on the x axis and on the y axis


def test_profiles_chart_and_difference_chart_label_every_attribute(page):
    query = "&".join(f"judge={j}" for j in JUDGE_NAMES)
    texts = settle(page, f"/profiles?{query}", 2, "profiles")
    assert_readable(texts)
    with_attrs = [t for t in texts if "no severe errors" in t]
    assert len(with_attrs) >= 2, texts  # the profile chart and the difference chart
    for chart in with_attrs:
        missing = [a for a in ATTRIBUTES if a not in chart]
        assert not missing, f"attributes without a label: {missing}"
    profile = with_attrs[0]
    for judge in JUDGE_NAMES:
        assert judge in profile, (judge, profile)  # the legend, in full


def test_similarity_heatmap_names_every_judge(page):
    texts = settle(page, "/similarity", 3, "similarity")
    assert_readable(texts)
    heat = texts[0]
    for judge in JUDGE_NAMES:
        assert heat.count(judge) >= 2, (judge, heat)


def test_judges_page_charts_name_every_judge(page):
    # the demo's dataset and a demo reference, named in the link: other browser tests of the session
    # add datasets and judges to the shared store (a human judge of its own data would become the
    # default reference and share no samples with the demo's judges, leaving no agreement chart)
    from core.demo import DEMO_DATASET

    texts = settle(page, f"/judges?dataset={DEMO_DATASET}&reference={JUDGE_NAMES[0]}", 2, "judges")
    assert_readable(texts)
    every = [t for chart in texts for t in chart]
    for judge in JUDGE_NAMES:
        assert judge in every, (judge, texts)
    heat = next(t for t in texts if sum(t.count(j) >= 2 for j in JUDGE_NAMES) >= 2)
    for judge in JUDGE_NAMES:
        assert heat.count(judge) >= 2, (judge, heat)


def test_simulator_charts_name_their_judges_and_stages(page):
    query = "&".join(f"judge={j}" for j in JUDGE_NAMES)
    texts = settle(page, f"/simulate?{query}", 3, "simulate")
    assert_readable(texts)
    rates = next(t for t in texts if "predicted after" in t)
    for stage in ("observed", "predicted before", "predicted after"):
        assert stage in rates, (stage, rates)
    assert sum(j in rates for j in JUDGE_NAMES) >= 2, rates
