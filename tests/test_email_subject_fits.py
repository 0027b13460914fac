"""The default subject passes the preview's 60-character check and leads with the top comparison;
the preheader names what the subject leaves out."""

from __future__ import annotations

from digest.preview.checks import PASS, run_checks
from digest.render.issue_email import preheader_for, subject_for
from tests.support_email import config, five_item_issue


def test_subject_and_preheader_of_the_five_item_issue_pass_the_previews_checks() -> None:
    compiled, html, text = five_item_issue()
    assert compiled.subject == "Cursor Background Agents vs Mistral 3 Small + 4 more"
    checks = {
        c.name: c
        for c in run_checks(
            html=html,
            text=text,
            subject=compiled.subject,
            headers={},
            settings=config().settings,
            unsubscribe_url=None,
            needs_list_headers=False,
        )
    }
    assert checks["Subject"].status == PASS, checks["Subject"].summary
    assert checks["Preheader"].status == PASS, checks["Preheader"].summary
    for title in ("Cursor Background Agents vs SmolLM3", "Claude Code vs Aider", "Perplexity Labs vs Elicit"):
        assert title in compiled.preheader
    assert "Issue 12" in compiled.preheader


def test_a_long_top_title_is_shortened_at_a_word_and_the_rest_goes_to_the_preheader() -> None:
    items = [
        {
            "title": "Cursor Background Agents Enterprise Edition vs Copilot Workspace Pro Max",
            "verdict": "The panel ships both",
        },
        {"title": "Claude Code vs Aider", "verdict": "The panel ships both"},
    ]
    subject = subject_for("Weekly AI Tool Verdicts", 7, items)
    assert len(subject) <= 60 and subject.startswith("Cursor Background Agents") and subject.endswith("…")
    assert "Claude Code vs Aider" in preheader_for("Weekly AI Tool Verdicts", 7, items)
    one = [items[1]]
    assert subject_for("Weekly AI Tool Verdicts", 7, one) == "Claude Code vs Aider"
    assert len(preheader_for("Weekly AI Tool Verdicts", 7, one)) >= 40
