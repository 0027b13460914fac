"""Past issues for the History page, with the same numbers `digest stats` prints
(digest.delivery.stats.issue_stats: deliveries and the unsubscribes attributed to each issue)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from digest.delivery.stats import issue_stats as delivery_stats
from digest.runtime import Runtime
from digest.storage.models import ISSUE_DRAFT, Issue

COUNTED = ("recipients", "sent", "failed", "delivered", "opened", "clicked", "unsubscribed")


@dataclass
class IssueStats:
    id: int
    week: str
    number: int | None
    status: str
    subject: str | None
    sent_at: datetime | None
    skip_reason: str | None
    recipients: int = 0
    sent: int = 0
    failed: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    rates: dict[str, float | None] = field(default_factory=dict)

    def rate(self, what: str) -> str:
        """The share `digest stats` gives (of the emails sent), as a whole percentage."""
        value = self.rates.get(what)
        return f"{100 * value:.0f}%" if value else ""


def _row(issue: Issue, numbers: dict[str, Any] | None) -> IssueStats:
    row = IssueStats(issue.id, issue.week, issue.number, issue.status, issue.subject, issue.sent_at,
                     issue.skip_reason)
    if numbers:
        for key in COUNTED:
            setattr(row, key, int(numbers.get(key) or 0))
        row.rates = dict(numbers.get("rates") or {})
    return row


def issue_history(rt: Runtime, limit: int = 200) -> list[IssueStats]:
    """Issues, newest week first; drafts have nothing to count."""
    with rt.sessions() as session:
        issues = list(session.scalars(select(Issue).order_by(Issue.week.desc()).limit(limit)))
        return [_row(i, None if i.status == ISSUE_DRAFT else delivery_stats(session, i)) for i in issues]


def issue_stats(rt: Runtime, issue_id: int) -> dict[str, int]:
    """The counted numbers of one issue (zeros when nothing was sent)."""
    with rt.sessions() as session:
        issue = session.get(Issue, issue_id)
        numbers = delivery_stats(session, issue) if issue is not None else {}
    return {k: int(numbers.get(k) or 0) for k in COUNTED}
