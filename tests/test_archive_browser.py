"""The archive pages in headless Chromium: no console errors, no failed requests, no sideways scroll.

Screenshots at 375 px (phone) and 600 px land in test-output/archive/ for a person to look at.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import feedparser
import httpx
import pytest
import uvicorn

from digest.cli.serve_cmd import bind_socket
from digest.runtime import Runtime
from digest.web.app import create_app
from tests.conftest import CHROMIUM_ARGS, make_runtime, output_dir
from tests.support_serve import make_archive

pytestmark = pytest.mark.browser


@pytest.fixture
def archive_server(project, sqlite_url: str) -> Iterator[tuple[str, Runtime]]:
    rt = make_archive(make_runtime(project, sqlite_url))
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(rt), log_level="warning", lifespan="on", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        if server.started:
            break
        threading.Event().wait(0.05)
    yield base, rt
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    rt.close()


def test_archive_pages_render_in_chromium_without_errors(archive_server, chromium_path: str) -> None:
    from playwright.sync_api import sync_playwright

    base, rt = archive_server
    feed = feedparser.parse(httpx.get(base + "/archive.xml").content)
    public = rt.settings.site.public_url
    # The feed's links are public URLs; here they are served from the test server's address.
    pages = {"archive": "/archive", "missing": "/archive/2030-W01"}
    pages.update({f"issue-{e.link.rsplit('/', 1)[1]}": e.link.removeprefix(public) for e in feed.entries})
    assert "issue-2026-W47" in pages and "issue-2026-W46" in pages
    shots = output_dir("archive")
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            for width in (375, 600):
                for name, path in pages.items():
                    page = browser.new_page(viewport={"width": width, "height": 900})
                    page.on(
                        "console",
                        lambda m, n=name, w=width: (
                            problems.append(f"{n}@{w}: console {m.type}: {m.text}")
                            if m.type in ("error", "warning") and not (n == "missing" and "404" in m.text)
                            else None
                        ),
                    )
                    page.on("pageerror", lambda e, n=name, w=width: problems.append(f"{n}@{w}: page error {e}"))
                    page.on(
                        "requestfailed", lambda r, n=name, w=width: problems.append(f"{n}@{w}: request failed {r.url}")
                    )
                    page.on(
                        "request",
                        lambda r, n=name, w=width: (
                            problems.append(f"{n}@{w}: third-party {r.url}") if not r.url.startswith(base) else None
                        ),
                    )
                    resp = page.goto(base + path, wait_until="load")
                    assert resp is not None and resp.status == (404 if name == "missing" else 200), (name, path)
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    if overflow > 0:
                        problems.append(f"{name}@{width}: {overflow}px wider than the viewport")
                    if name.startswith("issue-"):
                        assert page.locator("text=All issues").count() >= 1
                        assert page.evaluate("document.title").startswith(rt.settings.site.name)
                        # An anonymous reader is offered the sign-up, not links tied to someone's subscription.
                        assert page.get_by_role("link", name="Subscribe", exact=True).last.is_visible()
                        assert page.get_by_role("link", name="Unsubscribe", exact=True).count() == 0
                        assert page.get_by_role("link", name="Manage subscription", exact=True).count() == 0
                    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
                    page.close()
        finally:
            browser.close()
    assert problems == []
