"""The whole sign-up journey in headless Chromium against real uvicorn, from a second origin.

A page on http://localhost:<other port> embeds /embed.js (or, with JavaScript disabled, the
plain HTML snippet from the README); the visitor subscribes; the server's drainer puts the
confirmation in the outbox; the link confirms; the next issue reaches the reader; a
one-click POST to its List-Unsubscribe URL unsubscribes; the issue after does not.
"""

from __future__ import annotations

import http.server
import re
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from digest.storage.models import Event, SubscriberStatus
from subscribers.api import add_subscriber
from tests.conftest import apply_overrides, make_runtime, output_dir, write_project
from tests.support_subscribers import (
    LiveServer,
    bound_socket,
    issue_copy,
    link_in,
    outbox_messages,
    seed_comparisons,
    send_issue,
    subscriber,
    unsubscribe_url,
    wait_for,
)

pytestmark = pytest.mark.browser

W47 = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
W48 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def host_pages(app_url: str, site: str) -> dict[str, str]:
    """The second origin's pages: the README's embed snippets, verbatim apart from the host names."""
    return {
        "/js.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>A comparison page</title></head>
<body style="font-family: Georgia, serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem">
<h1>Cursor Background Agents vs SmolLM3</h1><p>Some article text on the site.</p>
<script src="{app_url}/embed.js" data-source="article-footer" data-name="true" async></script>
</body></html>""",
        "/nojs.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>No JS</title></head><body>
<form action="{app_url}/subscribe" method="post">
  <label for="nl-email">Email address</label>
  <input id="nl-email" type="email" name="email" required autocomplete="email">
  <input type="text" name="website" tabindex="-1" autocomplete="off" aria-hidden="true"
         style="position:absolute;left:-10000px">
  <input type="hidden" name="source" value="footer-snippet">
  <input type="hidden" name="next" value="{site}/thanks.html">
  <button type="submit">Subscribe</button>
</form></body></html>""",
        "/iframe.html": f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>iframe</title></head><body>
<iframe src="{app_url}/embed" title="Newsletter sign-up" referrerpolicy="no-referrer-when-downgrade" style="border:0;width:100%;max-width:32rem;height:230px"></iframe>
</body></html>""",
        "/thanks.html": "<!doctype html><html lang=en><head><title>Thanks</title></head>"
        "<body><h1>Thanks: please check your inbox</h1></body></html>",
    }


# Pages a test adds to the second origin while it runs (cleared after each test).
EXTRA_PAGES: dict[str, str] = {}


class _Site(http.server.BaseHTTPRequestHandler):
    pages: dict[str, str] = {}

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        body = self.pages.get(path) or EXTRA_PAGES.get(path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write((body or "not found").encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stack(tmp_path, db_url):
    """uvicorn (the app) + a plain HTTP server (the second origin) + a runtime on the same database."""
    app_sock, site_sock = bound_socket(), bound_socket()
    app_url = f"http://127.0.0.1:{app_sock.getsockname()[1]}"
    site = f"http://localhost:{site_sock.getsockname()[1]}"
    cfg = write_project(tmp_path / "p")
    cfg.write_text(apply_overrides(cfg.read_text(), {"site": {"public_url": app_url, "allowed_origins": [site]}}))
    rt = make_runtime(cfg, db_url)  # migrates before uvicorn starts
    server = LiveServer(app_sock, cfg, db_url)
    handler = type("Site", (_Site,), {"pages": host_pages(app_url, site)})
    httpd = http.server.ThreadingHTTPServer(site_sock.getsockname(), handler, bind_and_activate=False)
    httpd.socket.close()
    httpd.socket = site_sock
    site_sock.listen()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        server.wait_ready()
        yield rt, app_url, site
    finally:
        EXTRA_PAGES.clear()
        httpd.shutdown()
        log = server.stop()
        rt.close()
        assert "Traceback" not in log, log


def _journey(rt, browser, site: str, *, javascript: bool) -> None:
    address = f"reader-{uuid.uuid4().hex[:6]}@example.com"
    with rt.sessions.begin() as s:
        add_subscriber(s, "regular@example.com", confirmed=True)  # someone who keeps getting issues
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 600, "height": 900})
    page = context.new_page()
    if javascript:
        page.goto(f"{site}/js.html")
        page.get_by_label("First name (optional)").fill("Robin")
        page.get_by_label("Email address").fill(address)
        page.get_by_role("button", name="Subscribe").click()
        page.get_by_text("Almost there").wait_for(timeout=15000)
        assert page.url == f"{site}/js.html"  # no navigation: fetch + inline answer
    else:
        page.goto(f"{site}/nojs.html")
        page.get_by_label("Email address").fill(address)
        page.get_by_role("button", name="Subscribe").click()
        page.wait_for_url(f"{site}/thanks.html", timeout=15000)  # 303 to the safe `next`
        assert "check your inbox" in page.content()

    confirm_mail = wait_for(lambda: outbox_messages(rt, to=address), timeout=20)
    assert confirm_mail, "the drainer did not send the confirmation"
    sub = subscriber(rt, address)
    assert sub.consent_source.startswith("web:article-footer on " if javascript else "web:footer-snippet on ")
    page.goto(link_in(confirm_mail[0], "/confirm/"))
    assert (
        subscriber(rt, address).status == SubscriberStatus.PENDING
    )  # opening the link (as a scanner would) is not enough
    page.get_by_role("button", name="Confirm my subscription").click()
    page.get_by_text("You’re in!").wait_for(timeout=15000)
    assert subscriber(rt, address).status == SubscriberStatus.ACTIVE
    assert wait_for(lambda: len(outbox_messages(rt, to=address)) == 2, timeout=20), "no welcome mail"

    seed_comparisons(rt, W47.replace(day=17))
    issue_id = send_issue(rt, "2026-W47", W47)
    copy = issue_copy(rt, "2026-W47", address)
    assert copy is not None, "the next issue did not reach the new reader"

    one_click = httpx.post(unsubscribe_url(copy), data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert one_click.status_code == 200 and "set-cookie" not in one_click.headers
    assert subscriber(rt, address).status == SubscriberStatus.UNSUBSCRIBED
    with rt.sessions() as s:
        assert s.scalar(select(Event.issue_id).where(Event.kind == "unsubscribed")) == issue_id

    seed_comparisons(rt, W48.replace(day=24), tag="II")
    send_issue(rt, "2026-W48", W48)
    assert issue_copy(rt, "2026-W48", "regular@example.com") is not None
    assert issue_copy(rt, "2026-W48", address) is None
    context.close()


def test_embed_js_journey_from_a_second_origin(stack, browser) -> None:
    rt, _, site = stack
    _journey(rt, browser, site, javascript=True)


def test_no_javascript_snippet_journey(stack, browser) -> None:
    rt, _, site = stack
    _journey(rt, browser, site, javascript=False)


def test_embed_js_shows_errors_inline_and_iframe_embed_works(stack, browser) -> None:
    rt, app_url, site = stack
    page = browser.new_page()
    page.goto(f"{site}/js.html")
    page.get_by_label("Email address").fill("no-at-sign")
    page.get_by_role("button", name="Subscribe").click()
    page.get_by_text("Please enter a valid email address").wait_for()
    page.get_by_label("Email address").fill("x@exa mple.com")  # passes the browser, refused by the server
    page.evaluate("""() => { const f = document.querySelector('[data-digest-signup]').shadowRoot.querySelector('form');
                               f.querySelector('[name=email]').type = 'text'; }""")
    with page.expect_response(lambda r: r.url.endswith("/subscribe") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Subscribe").click()
    assert answer.value.status == 400
    page.get_by_text("valid email address, like").wait_for()
    assert page.get_by_label("Email address").get_attribute("aria-invalid") == "true"
    page.goto(f"{site}/iframe.html")
    frame = page.frame_locator("iframe")
    frame.get_by_label("Email address").fill("framed@example.com")
    frame.get_by_role("button", name="Subscribe").click()
    frame.get_by_text("Almost there").wait_for()
    assert subscriber(rt, "framed@example.com").consent_source.startswith("web:embed")


SHOTS = [
    "/subscribe",
    "/subscribe/thanks",
    "/embed",
    "site:/js.html",
    "confirm",
    "confirm-expired",
    "unsubscribe",
    "unsubscribed",
    "error",
]


def test_pages_fit_small_screens_and_are_screenshotted(stack, browser) -> None:
    """Every page at 375 and 600 px: no sideways scrolling; screenshots in test-output/signup/."""
    from digest.links import Tokens

    rt, app_url, site = stack
    with rt.sessions.begin() as s:
        sub = add_subscriber(s, "shot@example.com", name="Shot", confirmed=False).subscriber
        sid = sub.id
    tokens = Tokens(rt.secret_key)
    urls = {
        "confirm": f"{app_url}/confirm/{tokens.confirm(sid, 'shot@example.com')}",
        "unsubscribe": f"{app_url}/u/{tokens.unsubscribe(sid, 'shot@example.com')}",
        "error": f"{app_url}/u/forged-token",
        "confirm-expired": None,
    }
    out = output_dir("signup")
    for width in (320, 375, 600):
        context = browser.new_context(viewport={"width": width, "height": 800}, device_scale_factor=1)
        page = context.new_page()
        for name in SHOTS:
            if name == "confirm-expired":
                continue
            if name == "unsubscribed":
                page.goto(urls["unsubscribe"])
                page.get_by_role("button", name="Unsubscribe").click()
                page.get_by_text("You’re unsubscribed").wait_for()
            else:
                url = urls.get(name) or (site + name[5:] if name.startswith("site:") else app_url + name)
                page.goto(url)
            if name == "site:/js.html":
                page.get_by_label("Email address").wait_for()
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{name} scrolls sideways at {width}px"
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "root"
            page.screenshot(path=str(out / f"{slug}-{width}.png"), full_page=True)
            if name == "unsubscribed":  # back to subscribed for the other width
                page.get_by_role("button", name="Resubscribe").click()
                page.get_by_text("Welcome back").wait_for()
        context.close()
    assert len(list(Path(out).glob("*.png"))) >= 16
