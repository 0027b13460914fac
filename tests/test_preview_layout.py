"""The preview's page layout at the widths operators use, in real Chromium.

At 1280 px (a laptop) the checks panel must be in the first screenful, not below an empty
gap; at 375 px (a phone) nothing may scroll sideways. Screenshots at 375, 1280 and 1440 px
go to test-output/preview-layout/ to be looked at.
"""

from __future__ import annotations

import pytest

from tests.conftest import output_dir
from tests.test_preview_browser import browser, served  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

HEIGHT = 800


def _shot(browser, url: str, width: int, name: str):  # type: ignore[no-untyped-def]  # noqa: F811
    context = browser.new_context(viewport={"width": width, "height": HEIGHT}, device_scale_factor=1)
    page = context.new_page()
    page.goto(url)
    page.get_by_test_id("checks").wait_for()
    page.screenshot(path=str(output_dir("preview-layout") / f"{name}-{width}.png"), full_page=True)
    return context, page


def _top(page, test_id: str) -> float:  # type: ignore[no-untyped-def]
    return page.get_by_test_id(test_id).evaluate("el => el.getBoundingClientRect().top + window.scrollY")


def _sideways(page) -> int:  # type: ignore[no-untyped-def]
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")


@pytest.mark.parametrize("width", [1000, 1280, 1360])
def test_checks_panel_is_in_the_first_screenful_on_a_laptop(served, browser, width) -> None:  # noqa: F811
    _, url = served
    context, page = _shot(browser, url + "/", width, "issue")
    checks_top = _top(page, "checks")
    assert checks_top < HEIGHT - 100, f"checks start at {checks_top:.0f}px at {width}px wide (viewport {HEIGHT})"
    assert _top(page, "test-send") > checks_top
    assert _sideways(page) <= 0
    context.close()


@pytest.mark.parametrize("path", ["/", "/outbox", "/history", "/emails/confirm"])
def test_no_sideways_scrolling_on_a_phone(served, browser, path) -> None:  # noqa: F811
    _, url = served
    context = browser.new_context(viewport={"width": 375, "height": HEIGHT}, device_scale_factor=1)
    page = context.new_page()
    response = page.goto(url + path)
    assert response is not None and response.status < 500
    name = path.strip("/").replace("/", "-") or "issue"
    page.screenshot(path=str(output_dir("preview-layout") / f"{name}-375.png"), full_page=True)
    assert _sideways(page) <= 0, f"{path} is {_sideways(page) + 375}px wide at 375px"
    context.close()


def test_screenshots_at_375_1280_1440(served, browser) -> None:  # noqa: F811
    _, url = served
    for width in (375, 1280, 1440):
        context, page = _shot(browser, url + "/", width, "issue")
        if width >= 1280:
            assert _top(page, "checks") < HEIGHT - 100
        else:
            assert _sideways(page) <= 0
            page.screenshot(path=str(output_dir("preview-layout") / f"issue-{width}-top.png"))
            page.get_by_test_id("checks").scroll_into_view_if_needed()
            page.screenshot(path=str(output_dir("preview-layout") / f"issue-{width}-checks.png"))
        context.close()
    assert len(list(output_dir("preview-layout").glob("issue-*.png"))) >= 3
