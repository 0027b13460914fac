"""The emails as a reader sees them: headless Chromium at phone (375 px) and desktop (600 px) widths.

Screenshots (light and dark mode) go to test-output/email-screens/ for a person to look at;
the assertions check what a screenshot would show wrong: horizontal scrolling on a phone,
a card cut off or missing, the two tools not stacking on a phone or not side by side on a desktop.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from digest.config import load_config
from digest.render.personalize import Personalizer
from digest.render.transactional import render_transactional
from tests.conftest import CHROMIUM_ARGS, ROOT, output_dir, require_or_skip
from tests.support_render import compile_sample, sample_issue

WIDTHS = (375, 600)
PERSONAL = {
    "unsubscribe_url": "http://127.0.0.1:8000/u/WzEsMSwiYWJjIl0.sig",
    "view_url": "http://127.0.0.1:8000/archive/2026-W47",
    "manage_url": "http://127.0.0.1:8000/u/WzEsMSwiYWJjIl0.sig?manage=1",
    "name": "Ada Lovelace",
    "greeting": "Hi Ada,",
}


def rendered_emails() -> dict[str, str]:
    config = load_config(ROOT / "config.toml", env={"DIGEST_SECRET_KEY": "test-secret-key-0123456789"})
    note = (
        "Two coding agents top this week's list, and the panel split on the research assistants. "
        "As always: the verdicts are the panel's, the votes are yours."
    )
    compiled = compile_sample(config, sample_issue(5, editor_note=note))
    digest_html, _ = Personalizer.build(compiled.html, compiled.text, compiled.nonce).fill(PERSONAL)
    person = {"email": "ada@example.com", "name": "Ada"}
    confirm = render_transactional(
        config,
        "confirm",
        {"subscriber": person, "confirm_url": "http://127.0.0.1:8000/confirm/WzEsImFiYyJd.ZxY.sig", "expiry_days": 7},
    )
    welcome = render_transactional(
        config,
        "welcome",
        {
            "subscriber": person,
            "unsubscribe_url": PERSONAL["unsubscribe_url"],
            "manage_url": PERSONAL["manage_url"],
            "archive_url": "http://127.0.0.1:8000/archive",
        },
    )
    return {"digest": digest_html, "confirm": confirm.html, "welcome": welcome.html}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One Chromium for the module (conftest's `chromium_path` is per test, so the same check is made here)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    require_or_skip(None if os.path.exists(path) else "no /usr/bin/chromium (apt-get install chromium)", "Chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def emails() -> dict[str, str]:
    return rendered_emails()


# Every box inside the email body (cards, tools, buttons, text): its right edge and the page's scroll width.
LAYOUT_JS = """
() => {
  const vw = document.documentElement.clientWidth;
  const boxes = [...document.querySelectorAll('.item')].map(el => {
    const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, top: r.top + scrollY, height: r.height,
            text: el.innerText.length};
  });
  const tools = [...document.querySelectorAll('.item')].map(el =>
    [...el.querySelectorAll('.tool')].map(t => { const r = t.getBoundingClientRect(); return {left: r.left, top: r.top, bottom: r.bottom}; }));
  const overflowing = [...document.querySelectorAll('body *')].filter(el => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && (r.right > vw + 0.5 || r.left < -0.5);
  }).map(el => el.tagName + '.' + el.className + ': ' + (el.innerText || '').slice(0, 40));
  return {vw, scrollWidth: document.scrollingElement.scrollWidth, cards: boxes, tools, overflowing,
          buttons: [...document.querySelectorAll('.item a.cta')]
                     .map(a => { const r = a.getBoundingClientRect(); return {right: r.right, height: r.height}; })};
}
"""


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["digest", "confirm", "welcome"])
def test_email_renders_without_horizontal_scroll_and_shows_every_card(browser, emails, name: str, width: int) -> None:
    out = output_dir("email-screens")
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
        try:
            page.set_content(emails[name], wait_until="load")
            page.screenshot(path=str(out / f"{name}-{width}-{scheme}.png"), full_page=True)
            layout = page.evaluate(LAYOUT_JS)
        finally:
            page.close()
        assert layout["scrollWidth"] <= width, f"{name} scrolls sideways at {width}px: {layout['scrollWidth']}"
        assert layout["overflowing"] == [], layout["overflowing"]
        if name != "digest":
            continue
        cards = layout["cards"]
        assert len(cards) == 5
        for card in cards:
            assert card["left"] >= 0 and card["right"] <= width and card["height"] > 200 and card["text"] > 200
        assert [c["top"] for c in cards] == sorted(c["top"] for c in cards)
        assert len(layout["buttons"]) == 5 and all(b["right"] <= width and b["height"] >= 40 for b in layout["buttons"])
        for a, b in layout["tools"]:
            if width < 480:  # a phone: the two tools are stacked, each the full width
                assert b["top"] >= a["bottom"] - 1 and abs(a["left"] - b["left"]) < 1
            else:  # a desktop: side by side
                assert abs(a["top"] - b["top"]) < 1 and b["left"] > a["left"]


def test_dark_mode_changes_the_colours(browser, emails) -> None:
    """Clients that honour prefers-color-scheme get the dark palette, not an inverted light one."""
    colours = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport={"width": 600, "height": 900}, color_scheme=scheme)
        try:
            page.set_content(emails["digest"])
            colours[scheme] = page.evaluate("""() => {
              const item = document.querySelector('.item');
              const card = item.closest('.card');
              const h2 = item.querySelector('h2');
              return [getComputedStyle(card).backgroundColor, getComputedStyle(h2).color,
                      getComputedStyle(document.body).backgroundColor];
            }""")
        finally:
            page.close()
    assert colours["light"][0] == "rgb(255, 255, 255)"
    assert colours["dark"][0] != colours["light"][0] and colours["dark"][1] != colours["light"][1]
    assert colours["dark"][2] != colours["light"][2]
