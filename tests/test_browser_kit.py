"""The browser tests' own check that a page shows a text (``browserkit.shown``, run in the page) says what
Selenium's text of the page says, on a page of every way a text can be hidden or shown: the browser tests
assert with it where they read Selenium's text before (0.5-1.4 CPU s of Chromium a read)."""

import base64

from tests import browserkit

pytestmark = browserkit.MARKS

#: text -> whether it is displayed
CASES = {
    "plain visible": True, "display none": False, "visibility hidden": False, "opacity zero": False,
    "zero height": False, "clipped away": False, "far down scrolled": True, "split across nodes": True,
    "svg label": True, "svg hidden": False, "outside the clip": True, "inside a canvas": False,
    "zero width space": True,
}

PAGE = """<html><body><div style='height:300px;overflow:hidden'><main style='height:300px;overflow:auto'>
<p>plain visible</p><p style='display:none'>display none</p><p style='visibility:hidden'>visibility hidden</p>
<div style='opacity:0'><span>opacity zero</span></div><div style='height:0;overflow:hidden'>zero height</div>
<div style='width:50px;overflow:hidden;white-space:nowrap'><span style='margin-left:100px'>clipped away</span></div>
<div style='height:2000px'></div><p>far down scrolled</p><p>split <b>across</b> nodes</p>
<svg width=100 height=40><text x=0 y=20>svg label</text><text x=0 y=20 opacity=0>svg hidden</text></svg>
<canvas width=10 height=10><table><tr><td>inside a canvas</td></tr></table></canvas><p>zero&#8203; width space</p>
</main></div><div style='position:absolute;top:400px'>outside the clip</div></body></html>"""


def test_shown_agrees_with_seleniums_text(browser):
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")  # the session's page stays open in its own tab for the next test
    try:
        browser.get("data:text/html;base64," + base64.b64encode(PAGE.encode()).decode())
        selenium = " ".join(browser.find_element("tag name", "body").text.split())
        assert {t: t in selenium for t in CASES} == CASES  # the cases are what they say, to Selenium
        missing = browserkit.shown(browser, *CASES)
        assert {t: t not in missing for t in CASES} == CASES
    finally:
        browser.close()
        browser.switch_to.window(first)
