"""Every call-to-action names its comparison, so no two link texts in the issue are the same."""

from __future__ import annotations

from tests.support_email import Texts, five_item_issue


def test_every_call_to_action_has_its_own_text_naming_the_comparison() -> None:
    compiled, html, text = five_item_issue()
    links = Texts.of(html, "cta").links
    ctas = [t for href, t in links if "utm_campaign" in href and t.startswith("Read ")]
    assert len(ctas) == 5 and len(set(ctas)) == 5
    assert "Read Cursor Background Agents vs SmolLM3 →" in ctas
    assert "Read the full comparison" not in html
    assert "Read Cursor Background Agents vs SmolLM3:" in text
