"""The preview's History page says how many readers a paused send still owes, and why."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from digest.cycle.freeze import prepare
from digest.cycle.week import resolve_week
from digest.delivery.completion import record_pause
from digest.preview.server import PreviewServer
from tests.conftest import CHROMIUM_ARGS, output_dir
from tests.support_delivery import add_readers
from tests.support_preview import preview_runtime, seed_samples

pytestmark = pytest.mark.browser


def test_history_shows_readers_still_owed_by_a_paused_send(tmp_path, sqlite_url, chromium_path) -> None:
    from playwright.sync_api import sync_playwright

    rt = preview_runtime(tmp_path / "project", sqlite_url, ["me@example.com"])
    seed_samples(rt)
    add_readers(rt, 120)
    prepared = prepare(rt, resolve_week(rt, None), manual=True)
    assert prepared.issue_id is not None and prepared.recipients == 120
    since = datetime(2026, 11, 23, 9, 2, tzinfo=UTC)
    record_pause(rt, prepared.issue_id, since, "provider unreachable since 2026-11-23 09:02 UTC")
    server = PreviewServer(rt, port=0)
    url = server.start()
    shots = output_dir("history")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
            try:
                for width in (1280,):  # an operator page on a desktop
                    page = browser.new_page(viewport={"width": width, "height": 800})
                    page.goto(url + "/history")
                    owed = page.locator("[data-testid=owed]")
                    assert owed.inner_text() == "120 owed · paused"
                    assert owed.get_attribute("title") == "provider unreachable since 2026-11-23 09:02 UTC"
                    page.screenshot(path=str(shots / f"history-owed-{width}.png"), full_page=True)
                    page.close()
            finally:
                browser.close()
    finally:
        server.stop()
        rt.close()
