"""The preview's editor's-note field in Chromium against a real uvicorn: typing a note and saving it
stores it on the week's draft and the email shows it; a note with a bad link is refused and nothing
changes; a form without the preview's token is refused."""

from __future__ import annotations

import httpx
import pytest

from digest.cycle.note import current_note
from digest.weeks import current_week
from tests.conftest import output_dir
from tests.test_preview_browser import WAIT_MS, frame_html, served  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def test_note_field_saves_the_note_and_the_email_shows_it(served, browser) -> None:  # noqa: F811
    rt, url = served
    week = current_week(rt.settings.schedule)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(url + "/")
    page.fill("#note-text", "Agents lead *this* week. See [the method](https://verdicts.example.com/method).")
    page.click("[data-testid=save-note]")
    page.wait_for_selector("#notice", timeout=WAIT_MS)
    assert "note saved" in page.locator("#notice").inner_text()
    assert current_note(rt, week) == "Agents lead *this* week. See [the method](https://verdicts.example.com/method)."
    assert page.input_value("#note-text").startswith("Agents lead *this* week.")
    html = frame_html(page)
    assert "Agents lead <em>this</em> week." in html and 'href="https://verdicts.example.com/method"' in html
    page.locator("[data-testid=editor-note]").screenshot(path=str(output_dir("preview") / "editor-note.png"))

    page.fill("#note-text", "[bad](javascript:alert(1))")
    page.click("[data-testid=save-note]")
    page.wait_for_selector("#notice", timeout=WAIT_MS)
    assert "not an http(s) URL" in page.locator("#notice").inner_text()
    assert current_note(rt, week).startswith("Agents lead")

    forged = httpx.post(
        url + "/note", data={"csrf": "forged", "week": week.key, "note": "Hijacked."}, follow_redirects=True
    )
    assert "out of date" in forged.text and current_note(rt, week).startswith("Agents lead")

    page.fill("#note-text", "")
    page.click("[data-testid=save-note]")
    page.wait_for_selector("#notice", timeout=WAIT_MS)
    assert current_note(rt, week) is None
    page.close()
