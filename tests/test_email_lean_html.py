"""A 5-item issue is at most 40 KB of HTML, with its Outlook fallbacks and dark mode kept
(how it looks is checked in Chromium by tests/test_email_screens.py)."""

from __future__ import annotations

import re

from tests.support_email import five_item_issue

LIMIT = 40 * 1024


def test_five_item_issue_is_at_most_40_kb() -> None:
    compiled, html, _ = five_item_issue(
        editor_note="A short note from the editor, with a [link](https://verdicts.example.com)."
    )
    assert len(compiled.html.encode()) <= LIMIT
    assert len(html.encode()) <= LIMIT  # filled for a reader (real links instead of markers)


def test_outlook_fallbacks_and_dark_mode_are_kept() -> None:
    _, html, _ = five_item_issue()
    assert html.count("<!--[if mso]><table") == 5  # the two tools as a two-cell table, per card
    assert html.count("mso-padding-alt:13px 22px") == 5 and html.count('bgcolor="#14233f"') >= 5  # buttons
    assert re.search(r'class="bf"[^>]*bgcolor=', html)  # bars keep a colour without <style>
    assert "@media (prefers-color-scheme: dark)" in html and "[data-ogsc]" in html
    assert "max-width:275px" in html  # the stacking layout stays inline (clients that drop <style>)


def test_no_indentation_or_line_breaks_between_tags() -> None:
    _, html, _ = five_item_issue()
    assert not re.search(r">\s*\n\s*<", html)
    assert html.count("\n") < 5


def test_the_cards_classes_sit_in_a_style_block_gmail_keeps() -> None:
    """Gmail drops a whole <style> it does not understand (attribute selectors, some media features):
    the cards' looks are in a block of plain class rules, dark mode in another."""
    _, html, _ = five_item_issue()
    blocks = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S)
    [cards] = [b for b in blocks if ".item {" in b]
    assert "[" not in cards and "prefers-color-scheme" not in cards and ".cta" not in cards
    assert any("prefers-color-scheme" in b and ".item" in b for b in blocks if b is not cards)
