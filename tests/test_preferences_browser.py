"""The preference centre in headless Chromium against real uvicorn, then the week's send by edition.

A reader signs up on the hosted page, confirms, opens the welcome email's "Manage subscription"
link, ticks one topic and saves; the week's send gives them an issue with only that topic's
comparisons while another reader gets the all-topics edition. A reader who picks "monthly" in the
same page gets nothing in a week that is not the month's first slot, and the monthly edition on
the first (fixed clocks). Screenshots of the page at 375, 600 and 1280 px go to
test-output/preferences/.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from digest.cycle.send import send_week
from digest.links import Tokens, personal_links
from digest.storage.models import Frequency, SubscriberStatus
from digest.weeks import Week
from tests.conftest import apply_overrides, make_runtime, output_dir, write_project
from tests.support_editions import DEV, IMAGES, MODELS, add_reader, seed_categories
from tests.support_subscribers import LiveServer, bound_socket, link_in, outbox_messages, subscriber, text_of, wait_for

pytestmark = pytest.mark.browser

W49_NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # slot Monday 30 November: not a month's first
W50_NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)  # slot Monday 7 December: December's first


@pytest.fixture
def stack(tmp_path, db_url):
    sock = bound_socket()
    app_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = write_project(tmp_path / "p")
    cfg.write_text(apply_overrides(cfg.read_text(), {"site": {"public_url": app_url}}))
    rt = make_runtime(cfg, db_url)
    server = LiveServer(sock, cfg, db_url)
    try:
        server.wait_ready()
        yield rt, app_url
    finally:
        log = server.stop()
        rt.close()
        assert "Traceback" not in log, log


def only_copy(rt, week: str, to: str):
    found = outbox_messages(rt, week, to=to)
    assert len(found) == 1, f"{to}: {len(found)} copies of {week}"
    return text_of(found[0])


def test_pick_a_topic_in_the_browser_then_get_only_that_topic(stack, browser) -> None:
    rt, app_url = stack
    seed_categories(rt, published=W49_NOW - timedelta(days=1))
    add_reader(rt, "everything@example.com")
    address = "robin@example.com"
    page = browser.new_context(viewport={"width": 375, "height": 800}, java_script_enabled=False).new_page()
    page.goto(f"{app_url}/subscribe")
    page.get_by_label("Email address").fill(address)
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("check your inbox", exact=False).first.wait_for()
    confirm = wait_for(lambda: outbox_messages(rt, to=address), timeout=20)
    assert confirm, "no confirmation mail"
    page.goto(link_in(confirm[0], "/confirm/"))
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_text("You’re in!").wait_for()
    welcome = wait_for(lambda: outbox_messages(rt, to=address)[1:], timeout=20)
    assert welcome, "no welcome mail"
    manage = link_in(welcome[0], "/preferences/")

    page.goto(manage)
    assert page.get_by_role("checkbox", name="Open Models").is_visible()
    assert page.get_by_role("radio", name=re.compile("^Weekly")).is_checked()
    page.get_by_role("checkbox", name="Open Models").check()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    assert page.get_by_role("checkbox", name="Open Models").is_checked()
    assert page.get_by_role("link", name="Unsubscribe").is_visible()  # a secondary link, not a button
    sub = subscriber(rt, address)
    assert sub is not None and sub.status == SubscriberStatus.ACTIVE and sub.topics == "open-models"

    result = send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    assert result.summary is not None and result.summary.sent == 2
    mine = only_copy(rt, "2026-W49", address)
    assert all(t in mine for t in MODELS) and not any(t in mine for t in DEV + IMAGES)
    everything = only_copy(rt, "2026-W49", "everything@example.com")
    assert all(t in everything for t in MODELS[:1] + DEV[:1])


def test_a_monthly_reader_gets_nothing_until_the_months_first_slot(stack, browser) -> None:
    rt, app_url = stack
    seed_categories(rt, published=W49_NOW - timedelta(days=1))
    seed_categories(rt, published=W50_NOW - timedelta(days=1), tag=" (December)")
    sid = add_reader(rt, "monthly@example.com")
    add_reader(rt, "weekly@example.com")
    manage = personal_links(rt.settings, Tokens(rt.secret_key), sid, "monthly@example.com", None, None)["manage_url"]
    page = browser.new_context(viewport={"width": 600, "height": 900}, java_script_enabled=False).new_page()
    page.goto(manage)
    page.get_by_role("radio", name=re.compile("^Monthly")).check()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    sub = subscriber(rt, "monthly@example.com")
    assert sub is not None and sub.frequency == Frequency.MONTHLY

    w49 = send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    assert w49.prepared.plan is not None and w49.prepared.plan.monthly_waiting == 1
    assert not outbox_messages(rt, "2026-W49", to="monthly@example.com")
    only_copy(rt, "2026-W49", "weekly@example.com")
    send_week(rt, Week.parse("2026-W50"), manual=True, now=W50_NOW)
    monthly = only_copy(rt, "2026-W50", "monthly@example.com")
    assert "the best of the month" in monthly


def test_the_preference_centre_fits_phones_and_desktops(stack, browser) -> None:
    """375, 600 and 1280 px: no sideways scrolling; screenshots (plain, saved, paused) to look at."""
    rt, app_url = stack
    seed_categories(rt, published=W49_NOW)
    sid = add_reader(rt, "shot@example.com", topics="open-models")
    links = personal_links(rt.settings, Tokens(rt.secret_key), sid, "shot@example.com", None, None)
    out = output_dir("preferences")
    for width in (375, 600, 1280):
        page = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1).new_page()
        page.goto(links["manage_url"])
        shots = {"page": None, "saved": "4", "paused": None}
        for name, pause in shots.items():
            if pause:
                page.get_by_role("radio", name="Pause for 4 weeks").check()
                page.get_by_role("button", name="Save").click()
                page.get_by_text("Saved.").wait_for()
            if name == "paused":
                page.goto(links["manage_url"])
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} scrolls sideways at {width}px"
            page.screenshot(path=str(out / f"{name}-{width}.png"), full_page=True)
        page.get_by_role("radio", name="Resume now").check()
        page.get_by_role("button", name="Save").click()
        page.get_by_text("Saved.").wait_for()
        page.goto(links["unsubscribe_url"])
        page.screenshot(path=str(out / f"unsubscribe-{width}.png"), full_page=True)
        page.get_by_role("button", name="Switch to monthly").click()
        page.get_by_text("Monthly it is").wait_for()
        page.screenshot(path=str(out / f"monthly-{width}.png"), full_page=True)
        web_back_to_weekly(rt, sid)
        page.context.close()


def web_back_to_weekly(rt, sid: int) -> None:
    from sqlalchemy import update

    from digest.storage.models import Subscriber

    with rt.sessions.begin() as s:
        s.execute(update(Subscriber).where(Subscriber.id == sid).values(frequency=Frequency.WEEKLY))


def test_a_filled_up_edition_email_reads_well_on_phones(stack, browser) -> None:
    """The topic edition with the overall best under its own heading, at 375 and 600 px."""
    rt, _ = stack
    seed_categories(rt, published=W49_NOW - timedelta(days=1))
    add_reader(rt, "images@example.com", topics="image-generation")
    send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    copy = outbox_messages(rt, "2026-W49", to="images@example.com")[0]
    html = copy.get_body(("html",)).get_content()
    out = output_dir("preferences")
    for width in (375, 600):
        page = browser.new_context(viewport={"width": width, "height": 900}, java_script_enabled=False).new_page()
        page.set_content(html)
        heading = page.get_by_text("Also worth a look: this week’s best overall")
        assert heading.is_visible()
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the edition scrolls sideways at {width}px"
        page.screenshot(path=str(out / f"edition-email-{width}.png"), full_page=True)
        page.context.close()
