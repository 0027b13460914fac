"""Topic boxes on the sign-up forms in real Chromium: embed.js `data-topics` from another origin, and
the hosted page (its form upgraded to fetch by embed.js); the ticked topics travel with the sign-up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from digest.storage.models import Event
from digest.weeks import utcnow
from tests.conftest import output_dir
from tests.support_editions import seed_categories
from tests.support_subscribers import subscriber, wait_for
from tests.test_embed_visitor import _host, _serve
from tests.test_signup_browser import EXTRA_PAGES, stack  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def asked_topics(rt, email: str) -> list[str] | None:
    sub = subscriber(rt, email)
    if sub is None:
        return None
    with rt.sessions() as s:
        detail = s.scalar(select(Event.detail).where(Event.subscriber_id == sub.id, Event.kind == "subscribed"))
    return (detail or {}).get("topics")


def test_embed_js_with_data_topics_offers_the_topics_and_sends_the_ticked_ones(stack, browser) -> None:  # noqa: F811
    rt, app_url, site = stack
    seed_categories(rt, published=utcnow() - timedelta(days=1))
    _serve(f"{site}/topics.html", _host(app_url, 'data-topics="true" data-source="topics-test"'))
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(f"{site}/topics.html")
    page.get_by_label("Open Models").wait_for()
    assert page.get_by_label("Developer Tools").is_visible() and page.get_by_label("Image Generation").is_visible()
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the embed scrolls sideways at 375px"
    page.screenshot(path=str(output_dir("preferences") / "embed-topics-375.png"), full_page=True)
    page.get_by_label("Open Models").check()
    page.get_by_label("Email address").fill("embedded@example.com")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("Almost there").wait_for(timeout=15000)
    assert wait_for(lambda: asked_topics(rt, "embedded@example.com") == ["open-models"])


def test_the_hosted_page_sends_the_ticked_topics_with_javascript_on(stack, browser) -> None:  # noqa: F811
    rt, app_url, _ = stack
    seed_categories(rt, published=utcnow() - timedelta(days=1))
    page = browser.new_page(viewport={"width": 375, "height": 900})
    page.goto(f"{app_url}/subscribe")
    page.get_by_label("Developer Tools").check()
    page.get_by_label("Image Generation").check()
    page.get_by_label("Email address").fill("hosted@example.com")
    page.screenshot(path=str(output_dir("preferences") / "hosted-topics-375.png"), full_page=True)
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("Almost there").wait_for(timeout=15000)
    assert wait_for(lambda: asked_topics(rt, "hosted@example.com") == ["developer-tools", "image-generation"])
