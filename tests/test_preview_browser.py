"""The preview in headless Chromium against a real uvicorn: frames, pinning, live reload after a
template edit, a template error shown with its line, a test send found in the outbox browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest.preview.server import PreviewServer
from digest.runtime import Runtime
from tests.conftest import output_dir
from tests.support_preview import preview_runtime, seed_samples

pytestmark = pytest.mark.browser

MARKER = "LIVE-EDIT-7f3a"
WAIT_MS = 15_000


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[tuple[Runtime, str]]:
    rt = preview_runtime(tmp_path / "project", db_url, ["me@example.com"])
    seed_samples(rt)
    server = PreviewServer(rt, port=0)
    url = server.start()
    try:
        yield rt, url
    finally:
        server.stop()
        rt.close()


def mark_template(folder: Path) -> Path:
    """Put MARKER next to the first rendered value found in the digest's MJML templates (the copy)."""
    files = sorted(folder.glob("*.mjml.j2"), key=lambda p: (p.name != "digest.mjml.j2", p.name))
    for needle in ("{{ site.name }}", "{{ issue.date }}", "{{ preheader }}", "{{ subject }}"):
        for f in files:
            text = f.read_text()
            if needle in text:
                f.write_text(text.replace(needle, f"{needle} {MARKER}", 1))
                return f
    raise AssertionError("no template value to mark in " + str(folder))


def frame_html(page) -> str:  # type: ignore[no-untyped-def]
    frame = page.frame_locator("[data-testid=email-frame]")
    return frame.locator("html").inner_html(timeout=WAIT_MS)


def wait_until(page, js: str, timeout_ms: int = WAIT_MS) -> None:  # type: ignore[no-untyped-def]
    """Poll `js` with page.evaluate (the page's CSP forbids the eval that wait_for_function uses)."""
    import time

    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            if page.evaluate(js):
                return
        except Error:  # the document is being replaced by the live reload
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {js}")
        page.wait_for_timeout(50)


def picks(page) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator("[data-testid=picks] > li.pick").evaluate_all("els => els.map(e => e.dataset.slug)")


def test_preview_end_to_end(served: tuple[Runtime, str], browser) -> None:  # type: ignore[no-untyped-def]
    rt, url = served
    shots = output_dir("preview")
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("#live[data-state=on]", timeout=WAIT_MS)  # the event stream is connected
    frame = page.locator("[data-testid=email-frame]")
    assert frame.evaluate("f => f.clientWidth") == 600
    page.screenshot(path=str(shots / "issue-desktop.png"), full_page=True)

    # Mobile frame: 375 px wide, inside and out.
    page.click("button[data-frame=mobile]")
    wait_until(page, "document.querySelector('[data-testid=email-frame]').clientWidth === 375")
    assert page.frame_locator("[data-testid=email-frame]").locator("body").evaluate("b => window.innerWidth") == 375
    page.click("button[data-scheme=dark]")
    wait_until(page, "document.querySelector('[data-testid=email-frame]').src.includes('scheme=dark')")
    page.screenshot(path=str(shots / "issue-mobile-dark.png"))
    page.click("button[data-scheme=light]")

    # Pin the second comparison: it moves to the top, in the list and in the email.
    before = picks(page)
    assert len(before) == 2
    first, second = before
    page.click(f"button[data-action=pin][data-slug='{second}']")
    page.wait_for_selector("#notice", timeout=WAIT_MS)
    assert picks(page) == [second, first]
    assert page.locator(f"li.pick[data-slug='{second}'] .pill-pin").count() == 1
    with rt.sessions() as s:
        from sqlalchemy import select

        from digest.storage.models import Issue

        issue = s.scalar(select(Issue))
        assert issue is not None and issue.pins == [second] and issue.status == "draft"
    titles = [rt_title for rt_title in page.locator("[data-testid=picks] .pick-title").all_inner_texts()]
    body = page.frame_locator("[data-testid=email-frame]").locator("body").inner_text(timeout=WAIT_MS)
    assert body.index(titles[0]) < body.index(titles[1])
    # The frame choice survives the reload the pin caused.
    assert page.locator("button[data-frame=mobile]").get_attribute("aria-pressed") == "true"

    # Edit a template (the project's copy): the open page reloads by itself and shows the change.
    templates = rt.config.templates_dir
    assert templates.is_relative_to(rt.config.base_dir)
    page.evaluate("window.__before_edit = true")
    mark_template(templates)
    wait_until(page, "window.__before_edit === undefined")  # a new document
    page.wait_for_selector("#live[data-state=on]", timeout=WAIT_MS)
    assert MARKER in frame_html(page)
    page.screenshot(path=str(shots / "issue-after-edit.png"))

    # config.toml is watched too: a new test address shows up without a restart.
    cfg = rt.config.path
    page.evaluate("window.__before_edit = true")
    cfg.write_text(
        cfg.read_text().replace(
            'test_recipients = ["me@example.com"]', 'test_recipients = ["me@example.com", "second@example.com"]'
        )
    )
    wait_until(page, "window.__before_edit === undefined")
    page.wait_for_selector("input[name=to][value='second@example.com']", timeout=WAIT_MS)

    # A template error: shown with its file and line; the preview keeps running.
    digest_tpl = templates / "digest.mjml.j2"
    good = digest_tpl.read_text()
    lines = good.splitlines()
    lines.insert(4, "{% if %}")
    page.evaluate("window.__before_edit = true")
    digest_tpl.write_text("\n".join(lines) + "\n")
    wait_until(page, "window.__before_edit === undefined")
    problem = page.locator("[data-testid=template-error]")
    problem.wait_for(timeout=WAIT_MS)
    assert "digest.mjml.j2" in problem.inner_text()
    assert re.search(r"line\s+5\b", problem.locator(".problem-where").inner_text())
    assert page.locator(".excerpt-line.is-error").inner_text().strip().startswith("5")
    assert page.locator("[data-check=Template][data-status=fail]").count() == 1
    page.screenshot(path=str(shots / "template-error.png"), full_page=True)
    page.evaluate("window.__before_edit = true")
    digest_tpl.write_text(good)
    wait_until(page, "window.__before_edit === undefined")
    page.locator("[data-testid=email-frame]").wait_for(timeout=WAIT_MS)
    assert MARKER in frame_html(page)

    # Send a test, then find it in the outbox browser.
    page.click("[data-testid=send-test]")
    page.wait_for_selector("#notice", timeout=WAIT_MS)
    assert "Test sent to me@example.com, second@example.com" in page.locator("#notice").inner_text()
    page.click("nav.tabs-nav a[href='/outbox']")
    page.wait_for_selector("[data-testid=outbox-list]", timeout=WAIT_MS)
    page.click("a.folder[data-folder=test]")
    row = page.locator("[data-testid=outbox-list] tbody tr").filter(has_text="me@example.com").first
    assert "me@example.com" in row.inner_text() and "[TEST]" in row.inner_text()
    page.screenshot(path=str(shots / "outbox.png"))
    row.locator("a").click()
    page.wait_for_selector("[data-testid=email-frame]", timeout=WAIT_MS)
    assert page.locator("[data-testid=subject]").inner_text().startswith("[TEST] ")
    page.click("button[data-tab=headers]")
    headers = page.locator("[data-testid=headers]").inner_text()
    assert "List-Unsubscribe-Post" in headers and "List-Unsubscribe=One-Click" in headers
    assert MARKER in frame_html(page)
    page.click("button[data-tab=raw]")
    raw = page.locator("[data-testid=raw-eml]")
    page.wait_for_selector("[data-testid=raw-eml]:has-text('List-Unsubscribe-Post:')", timeout=WAIT_MS)
    assert "Subject: [TEST]" in raw.inner_text()
    page.click("button[data-tab=headers]")
    page.screenshot(path=str(shots / "outbox-message.png"), full_page=True)

    # The test send was not the issue's send.
    with rt.sessions() as s:
        from sqlalchemy import func, select

        from digest.storage.models import Delivery, Issue

        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
        assert s.scalar(select(Issue.status)) == "draft"
    assert errors == []
