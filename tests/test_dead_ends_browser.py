"""Every dead end has a way forward, in Chromium against real uvicorn: the confirm page asks for
the click, a bad or expired confirm link offers a new confirmation, and after "Resubscribe" the
page says you are back (unsubscribe is a secondary link). Screenshots at 375 and 1280 px in
test-output/dead-ends/."""

from __future__ import annotations

import pytest

from digest.links import Tokens
from digest.storage.models import SubscriberStatus
from subscribers.api import add_subscriber
from tests.conftest import apply_overrides, make_runtime, output_dir, write_project
from tests.support_subscribers import LiveServer, bound_socket, subscriber

pytestmark = pytest.mark.browser
WIDTHS = (375, 1280)


@pytest.fixture
def app(tmp_path, sqlite_url):
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = write_project(tmp_path / "p")
    cfg.write_text(apply_overrides(cfg.read_text(), {"site": {"public_url": url}}))
    rt = make_runtime(cfg, sqlite_url)
    server = LiveServer(sock, cfg, sqlite_url)
    try:
        server.wait_ready()
        yield rt, url
    finally:
        log = server.stop()
        rt.close()
        assert "Traceback" not in log, log


def _expired_token(rt, sid: int, address: str, monkeypatch) -> str:
    import itsdangerous.timed

    real = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() - 30 * 86400)
    token = Tokens(rt.secret_key).confirm(sid, address)
    monkeypatch.undo()
    return token


def _shoot(page, name: str, width: int) -> None:
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} scrolls sideways at {width}px"
    page.screenshot(path=str(output_dir("dead-ends") / f"{name}-{width}.png"), full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_confirm_page_needs_the_click_and_bad_links_offer_a_new_confirmation(app, browser, width, monkeypatch) -> None:
    rt, url = app
    address = f"c{width}@example.com"
    with rt.sessions.begin() as s:
        sid = add_subscriber(s, address).subscriber.id
    tokens = Tokens(rt.secret_key)
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()

    page.goto(f"{url}/confirm/{tokens.confirm(sid, address)}")
    button = page.get_by_role("button", name="Confirm my subscription")
    assert button.is_visible() and subscriber(rt, address).status == SubscriberStatus.PENDING
    _shoot(page, "confirm-ask", width)
    button.click()
    page.get_by_role("heading", name="You’re in!").wait_for()
    assert subscriber(rt, address).status == SubscriberStatus.ACTIVE
    _shoot(page, "confirm-done", width)

    for name, token in (
        ("confirm-invalid", "garbled-token"),
        ("confirm-expired", _expired_token(rt, sid, address, monkeypatch)),
    ):
        page.goto(f"{url}/confirm/{token}")
        assert page.get_by_role("heading").first.inner_text() in ("This link doesn’t work", "This link has expired")
        _shoot(page, name, width)
    page.get_by_label("Email address").fill(f"again{width}@example.com")
    page.get_by_role("button", name="Send me a new link").click()
    page.get_by_text("Check your inbox").wait_for()  # the same neutral answer as any sign-up
    assert subscriber(rt, f"again{width}@example.com").status == SubscriberStatus.PENDING


@pytest.mark.parametrize("width", WIDTHS)
def test_after_resubscribe_the_page_says_you_are_back(app, browser, width) -> None:
    rt, url = app
    address = f"r{width}@example.com"
    with rt.sessions.begin() as s:
        sid = add_subscriber(s, address, confirmed=True).subscriber.id
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{url}/u/{Tokens(rt.secret_key).unsubscribe(sid, address)}")
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You’re unsubscribed").wait_for()
    assert subscriber(rt, address).status == SubscriberStatus.UNSUBSCRIBED
    page.get_by_role("button", name="Resubscribe").click()
    page.get_by_role("heading", name="Welcome back!").wait_for()
    assert subscriber(rt, address).status == SubscriberStatus.ACTIVE
    assert page.get_by_role("button", name="Unsubscribe").count() == 0  # no big red button any more
    link = page.get_by_role("link", name="Unsubscribe")
    assert link.is_visible()
    _shoot(page, "resubscribed", width)
    link.click()
    page.get_by_role("heading", name="Unsubscribe from").wait_for()  # still asks first
    assert subscriber(rt, address).status == SubscriberStatus.ACTIVE
