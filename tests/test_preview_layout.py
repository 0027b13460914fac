"""The preview's page layout at the widths operators use, in real Chromium.

At 1280 px (a laptop) the checks panel must be in the first screenful, not below an empty
gap; at 375 px (a phone) nothing may scroll sideways. The History table is read in place at 375,
600 and 1280 px: no cell cut off, hidden behind an ellipsis or outside the window. Screenshots at
375, 600, 1280 and 1440 px go to test-output/preview-layout/ to be looked at.
"""

from __future__ import annotations

import pytest

from tests.conftest import output_dir
from tests.test_preview_browser import served  # noqa: F401 - fixtures

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


@pytest.fixture
def history_served(tmp_path, sqlite_url):  # type: ignore[no-untyped-def]
    """The preview with a History of three issues: two sent (one long subject), one paused and owed."""
    from datetime import UTC, datetime

    from digest.cycle.freeze import prepare
    from digest.cycle.week import resolve_week
    from digest.delivery.completion import record_pause
    from digest.preview.server import PreviewServer
    from digest.storage.models import MAIN_EDITION_KEY, Edition, Frequency, Issue, IssueStatus
    from tests.support_delivery import add_readers
    from tests.support_preview import preview_runtime, seed_samples

    rt = preview_runtime(tmp_path / "project", sqlite_url, ["me@example.com"])
    seed_samples(rt)
    add_readers(rt, 120)
    with rt.sessions.begin() as s:
        for n, (week, subject) in enumerate(
            [
                ("2026-W45", "Cursor vs Windsurf vs Zed: which AI editor keeps up with a monorepo of 4 million lines"),
                ("2026-W46", "Claude Code vs Aider"),
            ],
            start=1,
        ):
            issue = Issue(
                week=week, number=n, status=IssueStatus.SENT, sent_at=datetime(2026, 11, 3 + 7 * n, 9, 0, tzinfo=UTC)
            )
            s.add(issue)
            s.flush()
            s.add(
                Edition(
                    issue_id=issue.id,
                    key=MAIN_EDITION_KEY,
                    label="All topics, weekly",
                    frequency=Frequency.WEEKLY,
                    topics=[],
                    subject=subject,
                )
            )
    prepared = prepare(rt, resolve_week(rt, None), manual=True)
    assert prepared.issue_id is not None
    record_pause(
        rt,
        prepared.issue_id,
        datetime(2026, 11, 23, 9, 2, tzinfo=UTC),
        "provider unreachable since 2026-11-23 09:02 UTC",
    )
    server = PreviewServer(rt, port=0)
    url = server.start()
    try:
        yield rt, url
    finally:
        server.stop()
        rt.close()


# Every history cell whose text does not fit in its box (cut off, or hidden behind an ellipsis), and every
# cell that lies even partly outside the viewport: on a phone the whole row must be readable in place.
_CLIPPED_CELLS = """() => [...document.querySelectorAll('[data-testid=history] td')]
  .filter(td => td.scrollWidth > td.clientWidth + 1 || td.getBoundingClientRect().right > window.innerWidth + 0.5
                || td.getBoundingClientRect().left < -0.5)
  .map(td => `${td.dataset.label || '?'}: ${td.innerText.trim()} (${td.scrollWidth}/${td.clientWidth}px,`
             + ` right edge ${Math.round(td.getBoundingClientRect().right)})`)"""


@pytest.mark.parametrize("width", [375, 600, 1280])
def test_history_is_readable_on_a_phone_and_a_laptop(history_served, browser, width) -> None:  # noqa: F811
    _, url = history_served
    context = browser.new_context(viewport={"width": width, "height": HEIGHT}, device_scale_factor=1)
    page = context.new_page()
    page.goto(url + "/history")
    table = page.get_by_test_id("history")
    table.wait_for()
    page.screenshot(path=str(output_dir("preview-layout") / f"history-{width}.png"), full_page=True)
    assert _sideways(page) <= 0, f"/history is {_sideways(page) + width}px wide at {width}px"
    assert page.evaluate(_CLIPPED_CELLS) == []
    # Still the same table (other views build on it): a row per issue, every number labelled.
    assert table.locator("tbody tr").count() == 3
    assert page.locator("[data-testid=owed]").inner_text() == "120 owed · paused"
    assert table.locator("td[data-label=Recipients]").count() == 3
    context.close()
