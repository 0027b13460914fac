"""The preview's issue page shows click-through per edition when an issue went out in several:
a chart of each edition's click-through with its numbers, and each edition's comparisons as a table."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from digest.cycle.send import send_week
from digest.storage.models import Click, Delivery, Edition, Issue
from digest.weeks import Week, utcnow
from tests.conftest import CHROMIUM_ARGS, output_dir
from tests.support_delivery import add_readers
from tests.support_editions import seed_categories, set_choice
from tests.support_preview import preview_runtime

pytestmark = pytest.mark.browser


def _two_editions(rt, week: str) -> dict[str, tuple[str, int]]:
    """An issue sent to 10 all-topics readers and 10 Open Models readers; 1 and 4 of them clicked, 3 and 6
    opened (the pixel). Returns edition key -> (label, id)."""
    now = utcnow()
    seed_categories(rt, published=now - timedelta(days=1))
    add_readers(rt, 10, prefix="every")
    set_choice(rt, add_readers(rt, 10, prefix="models"), topics="open-models")
    result = send_week(rt, Week.parse(week), manual=True)
    assert result.summary is not None and result.summary.sent == 20
    with rt.sessions.begin() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week))
        assert issue is not None
        editions = {e.key: e for e in s.scalars(select(Edition).where(Edition.issue_id == issue.id))}
        rows = []
        slug = next(link["slug"] for link in editions["weekly/open-models"].links or [] if link["place"] == "card")
        for key, clickers in (("weekly/all", 1), ("weekly/open-models", 4)):  # the same comparison in both
            ed = editions[key]
            card = next(i for i, link in enumerate(ed.links or []) if link["place"] == "card" and link["slug"] == slug)
            for n, d in enumerate(
                s.scalars(select(Delivery.id).where(Delivery.edition_id == ed.id).order_by(Delivery.id).limit(clickers))
            ):
                rows.append(
                    {
                        "issue_id": issue.id,
                        "edition_id": ed.id,
                        "delivery_id": d,
                        "reader": d,
                        "kind": "click",
                        "link": card,
                        "method": "GET",
                        "agent": None,
                        "at": now + timedelta(minutes=n),
                    }
                )
        for key, openers in (("weekly/all", 3), ("weekly/open-models", 6)):
            for n, d in enumerate(
                s.scalars(
                    select(Delivery.id)
                    .where(Delivery.edition_id == editions[key].id)
                    .order_by(Delivery.id)
                    .limit(openers)
                )
            ):
                rows.append(
                    {
                        "issue_id": issue.id,
                        "edition_id": editions[key].id,
                        "delivery_id": d,
                        "reader": d,
                        "kind": "open",
                        "link": -1,
                        "method": "GET",
                        "agent": None,
                        "at": now + timedelta(minutes=30 + n),
                    }
                )
        s.execute(insert(Click), rows)
        return {k: (e.label, e.id) for k, e in editions.items()}


def test_the_issue_page_shows_click_through_per_edition(tmp_path, sqlite_url, chromium_path) -> None:
    from playwright.sync_api import sync_playwright

    from digest.preview.server import PreviewServer

    rt = preview_runtime(tmp_path / "project", sqlite_url, ["me@example.com"])
    week = Week.of(utcnow()).key
    editions = _two_editions(rt, week)
    models_label = editions["weekly/open-models"][0]
    server = PreviewServer(rt, port=0)
    url = server.start()
    shots = output_dir("insights")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            try:
                for width in (1280, 375):
                    page = browser.new_page(viewport={"width": width, "height": 900})
                    page.goto(url + f"/?week={week}")
                    per = page.locator("[data-testid=chart-ctr-editions]")
                    svg = per.locator("svg[role=img]")
                    assert svg.count() == 1
                    assert svg.get_attribute("aria-label").startswith("Click-through per edition: ")
                    assert (
                        f"{models_label} drew the most readers: 4 of 10 (40.0%)"
                        in per.locator("figcaption").inner_text()
                    )
                    rows = [r.inner_text().split("\t") for r in per.locator("table tbody tr").all()]
                    assert [[c.strip() for c in r] for r in rows] == [
                        [editions["weekly/all"][0], "10", "3", "1", "10.0%"],
                        [models_label, "10", "6", "4", "40.0%"],
                    ]
                    tables = {
                        page.locator(f"[data-testid=chart-ctr-edition-{i}] h3").inner_text(): page.locator(
                            f"[data-testid=chart-ctr-edition-{i}] table tbody tr"
                        )
                        for i in (1, 2)
                    }
                    models = tables[f"Click-through per comparison: {models_label}"]
                    first = [c.strip() for c in models.first.inner_text().split("\t")]
                    assert first[2:] == ["4", "40.0%"]  # its most clicked comparison, of its own 10 emails
                    total = [
                        c.strip()
                        for c in page.locator("[data-testid=chart-ctr] table tbody tr").first.inner_text().split("\t")
                    ]
                    assert total[1:] == ["20", "5", "25.0%"]  # the issue's total: readers in both editions, of 20
                    assert page.evaluate("document.documentElement.scrollWidth") <= width
                    per.scroll_into_view_if_needed()
                    page.screenshot(path=str(shots / f"issue-editions-{width}.png"), full_page=True)
                    page.locator("[data-testid=charts]").screenshot(
                        path=str(shots / f"issue-editions-charts-{width}.png")
                    )
                    page.close()
            finally:
                browser.close()
    finally:
        server.stop()
        rt.close()
