"""The editor's note of a week's issue: set, replace or clear it on the draft, never on a sent issue.

Shared by `digest note` and the preview's note field, so both check and store it the same way.
The note is Markdown (paragraphs, links, emphasis; see digest.render.note) stored as typed.
"""

from __future__ import annotations

from sqlalchemy import select

from digest.cycle.week import get_or_create_issue, lock_issue
from digest.errors import UserError
from digest.render.note import check_note
from digest.runtime import Runtime
from digest.storage.models import Issue, IssueStatus
from digest.weeks import Week


def current_note(rt: Runtime, week: Week) -> str | None:
    with rt.sessions() as session:
        return session.scalar(select(Issue.editor_note).where(Issue.week == week.key))


def set_note(rt: Runtime, week: Week, text: str | None) -> str:
    """Store `text` (None clears it) on the week's issue; returns what changed, in words."""
    note = None
    if text is not None:
        try:
            note = check_note(text)
        except ValueError as exc:
            raise UserError(f"note: {exc}") from None
    with rt.sessions() as session:
        stored = session.scalar(select(Issue).where(Issue.week == week.key))
        if stored is None and note is None:
            return f"issue {week.key} has no note"
    issue_id = get_or_create_issue(rt, week)
    with rt.sessions.begin() as session:
        issue = lock_issue(session, rt, issue_id)
        if issue.status in (IssueStatus.SENDING, IssueStatus.SENT):
            raise UserError(f"week: issue {week.key} is already {issue.status}; its note can no longer change")
        if issue.editor_note == note:
            return f"issue {week.key}: note unchanged"
        had = issue.editor_note is not None
        issue.editor_note = note
    if note is None:
        return f"issue {week.key}: note cleared"
    return f"issue {week.key}: note {'replaced' if had else 'saved'} ({len(note)} characters)"
