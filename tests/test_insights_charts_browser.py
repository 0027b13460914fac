"""The preview's History and issue pages draw the insights as charts: SVG from the server, a title,
a text alternative and the numbers beside each, at desktop and phone widths, with no script and
nothing fetched from elsewhere."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from digest.cycle.send import send_week
from digest.storage.models import Click, Delivery, Event, Issue
from digest.weeks import Week, utcnow
from tests.conftest import CHROMIUM_ARGS, output_dir
from tests.support_delivery import add_readers
from tests.support_preview import preview_runtime, seed_samples

pytestmark = pytest.mark.browser


def _history(rt, week: str) -> int:
    """A sent issue with readers' clicks (a few per comparison), a scanner's burst, and ten weeks of the list."""
    add_readers(rt, 40)
    result = send_week(rt, Week.parse(week), manual=True)
    assert result.summary is not None and result.summary.sent == 40
    now = utcnow()
    with rt.sessions.begin() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week))
        assert issue is not None and issue.main_edition is not None and issue.main_edition.links
        links = issue.main_edition.links
        deliveries = list(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue.id).order_by(Delivery.id)))
        rows = []
        for n, d in enumerate(deliveries[:18]):  # readers: one click each, on earlier comparisons more often
            link = [1, 1, 0, 4, 1, 7, 4, 1, 10, 2][n % 10] % len(links)
            rows.append(
                {
                    "issue_id": issue.id,
                    "delivery_id": d,
                    "reader": d,
                    "kind": "click",
                    "link": link,
                    "method": "GET",
                    "agent": None,
                    "at": now + timedelta(minutes=n),
                }
            )
        burst = deliveries[-1]
        rows += [
            {
                "issue_id": issue.id,
                "delivery_id": burst,
                "reader": burst,
                "kind": "click",
                "link": i,
                "method": "GET",
                "agent": None,
                "at": now,
            }
            for i in range(len(links))
        ]
        s.execute(insert(Click), rows)
        events = []
        for w in range(10, 0, -1):
            at = now - timedelta(weeks=w)
            events += [{"kind": "subscribed", "created_at": at, "detail": {}}] * (3 + w % 4)
            events += [{"kind": "confirmed", "created_at": at, "detail": {}}] * (2 + w % 3)
            events += [{"kind": "unsubscribed", "created_at": at, "detail": {}}] * (w % 2)
        s.execute(insert(Event), events)
        return issue.id


def test_history_and_issue_pages_show_charts_with_text_alternatives(tmp_path, sqlite_url, chromium_path) -> None:
    from playwright.sync_api import sync_playwright

    from digest.preview.server import PreviewServer

    rt = preview_runtime(tmp_path / "project", sqlite_url, ["me@example.com"])
    seed_samples(rt)
    week = Week.of(utcnow()).key
    issue_id = _history(rt, week)
    with rt.sessions() as s:
        items = s.scalar(select(Issue).where(Issue.id == issue_id)).main_edition.items
    server = PreviewServer(rt, port=0)
    url = server.start()
    shots = output_dir("insights")
    requests: list[str] = []
    problems: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            try:
                for width in (1280, 375):
                    page = browser.new_page(viewport={"width": width, "height": 900})
                    page.on("request", lambda r: requests.append(r.url))
                    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                    page.goto(url + "/history")
                    for key, title in (("list", "The list over time"), ("categories", "Click-through by category")):
                        fig = page.locator(f"[data-testid=chart-{key}]")
                        assert fig.locator("h3").inner_text() == title
                        svg = fig.locator("svg[role=img]")
                        assert svg.count() == 1 and svg.get_attribute("aria-label").startswith(title + ": ")
                        assert fig.locator("figcaption").inner_text().strip()
                        assert fig.locator("table tbody tr").count() >= 1
                    list_alt = page.locator("[data-testid=chart-list] figcaption").inner_text()
                    assert "The list went from" in list_alt
                    assert page.evaluate("document.documentElement.scrollWidth") <= width
                    page.screenshot(path=str(shots / f"history-{width}.png"), full_page=True)
                    page.locator("[data-testid=charts]").screenshot(path=str(shots / f"history-charts-{width}.png"))

                    page.goto(url + f"/?week={week}")
                    funnel = page.locator("[data-testid=chart-funnel]")
                    assert funnel.locator("svg[role=img]").count() == 1
                    assert "40 sent" in funnel.locator("figcaption").inner_text()
                    ctr = page.locator("[data-testid=chart-ctr]")
                    assert "drew the most readers" in ctr.locator("figcaption").inner_text()
                    assert "set aside" in ctr.locator("figcaption").inner_text()  # the burst is not counted
                    rows = ctr.locator("table tbody tr")
                    assert rows.count() == len(items)
                    assert page.evaluate("document.documentElement.scrollWidth") <= width
                    ctr.scroll_into_view_if_needed()
                    page.screenshot(path=str(shots / f"issue-{width}.png"), full_page=True)
                    page.locator("[data-testid=charts]").screenshot(path=str(shots / f"issue-charts-{width}.png"))
                    page.close()
            finally:
                browser.close()
    finally:
        server.stop()
        rt.close()
    assert all(r.startswith(url) or r.startswith("data:") or r.startswith("about:") for r in requests), [
        r for r in requests if not r.startswith(url)
    ]
    assert not problems, problems
