"""Honest verdicts: a community vote that disagrees with the panel is in the verdict line; the
issue says once what "Panel ship" and "Community" mean, in the HTML and in the text."""

from __future__ import annotations

from digest.render.issue_email import verdict
from tests.support_email import Texts, five_item_issue, squash

LEGEND = "Panel ship is the share of our reviewers who would ship the tool; Community is the share of readers"


def test_disagreement_is_said_in_the_same_line() -> None:
    copilot = {"name": "Copilot Workspace", "panel_ship": 50, "community": 64}
    devin = {"name": "Devin", "panel_ship": 100, "community": 41}
    assert verdict(copilot, devin) == (
        "The panel favours Devin (100% vs 50%); the community prefers Copilot Workspace (64% vs 41%)"
    )


def test_agreement_ties_and_missing_votes_say_nothing_more() -> None:
    a = {"name": "A", "panel_ship": 80, "community": 70}
    assert verdict(a, {"name": "B", "panel_ship": 60, "community": 30}) == "The panel favours A (80% vs 60%)"
    assert verdict(a, {"name": "B", "panel_ship": 60, "community": None}) == "The panel favours A (80% vs 60%)"
    assert verdict(a, {"name": "B", "panel_ship": 60, "community": 70}) == "The panel favours A (80% vs 60%)"
    assert (
        verdict({"name": "A", "panel_ship": 80, "community": 10}, {"name": "B", "panel_ship": 80, "community": 90})
        == "The panel ships both"
    )


def test_the_issue_shows_the_disagreement_and_one_legend() -> None:
    _, html, text = five_item_issue()
    verdicts = [squash(v) for v in Texts.of(html, "vd").found["vd"]]
    assert (
        "Verdict: The panel favours Elicit (80% vs 40%); the community prefers Perplexity Labs (64% vs 41%)" in verdicts
    )
    flat_text = squash(text)
    assert "the community prefers Perplexity Labs (64% vs 41%)" in flat_text
    seen_html = squash(" ".join(Texts.of(html, "c-muted").found["c-muted"]))
    assert seen_html.count(LEGEND) == 1
    assert flat_text.count(LEGEND) == 1
