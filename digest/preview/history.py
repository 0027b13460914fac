"""Past issues for the History page, with the same numbers `digest stats` prints
(digest.reports.stats.issue_stats: deliveries and the unsubscribes attributed to each issue)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from digest.delivery.transports import reported_events
from digest.reports.insights import over_time
from digest.reports.stats import issue_stats as delivery_stats
from digest.runtime import Runtime
from digest.storage.models import Issue, IssueStatus
from digest.weeks import Week, utcnow

COUNTED = ("recipients", "sent", "failed", "owed", "delivered", "opened", "clicked", "unsubscribed")


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
    owed: int = 0  # still queued: an outage paused the send, or it is in progress
    paused: str | None = None
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    rates: dict[str, float | None] = field(default_factory=dict)
    unmeasured: list[str] = field(default_factory=list)  # the transport cannot tell: n/a, not 0

    def rate(self, what: str) -> str:
        """The share `digest stats` gives (of the emails sent), as a whole percentage."""
        value = self.rates.get(what)
        return f"{100 * value:.0f}%" if value else ""

    def shown(self, what: str) -> str:
        return "n/a" if what in self.unmeasured else str(getattr(self, what))


def _row(issue: Issue, numbers: dict[str, Any] | None) -> IssueStats:
    row = IssueStats(
        issue.id,
        issue.week,
        issue.number,
        issue.status,
        issue.main_edition.subject if issue.main_edition is not None else None,
        issue.sent_at,
        issue.skip_reason,
    )
    if numbers:
        for key in COUNTED:
            setattr(row, key, int(numbers.get(key) or 0))
        row.rates = dict(numbers.get("rates") or {})
        row.unmeasured = list(numbers.get("unmeasured") or [])
        row.paused = numbers.get("paused")
        ours(numbers, row.rates, row.unmeasured)
        row.clicked = int(numbers["clicked"])
        row.opened = int(numbers["opened"])
    return row


def ours(numbers: dict[str, Any], rates: dict[str, float | None], unmeasured: list[str]) -> None:
    """Readers' clicks from our own tracking (scanners set aside) and unique opens, in place of the
    provider's stamps: they are counted on every transport."""
    clicks, opens = numbers.get("clicks") or {}, numbers.get("opens") or {}
    if clicks.get("tracked"):
        numbers["clicked"], rates["clicked"] = clicks["unique_clicks"], clicks["click_through"]
        if "clicked" in unmeasured:
            unmeasured.remove("clicked")
    if opens.get("unique_opens"):
        numbers["opened"], rates["opened"] = opens["unique_opens"], opens["open_rate"]
        if "opened" in unmeasured:
            unmeasured.remove("opened")


# Issues a History page shows: half a year of weekly issues. Each row is a whole `digest stats`
# (every click and open of the issue is read and classified), so a page costs the same in year five.
PAGE = 26


@dataclass
class HistoryPage:
    rows: list[IssueStats]
    older: str | None  # the `before` week of the next page; None: this is the oldest


def issue_history(rt: Runtime, limit: int = PAGE, before: Week | None = None) -> HistoryPage:
    """Issues, newest week first (those before the week `before`, when given); drafts have nothing to count."""
    with rt.sessions() as session:
        q = select(Issue).order_by(Issue.week.desc()).limit(limit + 1)
        if before is not None:
            q = q.where(Issue.week < before.key)
        issues = list(session.scalars(q))
        measured = reported_events(rt.config.transport_kind)
        rows = [
            _row(
                i, None if i.status == IssueStatus.DRAFT else delivery_stats(session, i, measured, rt.settings.tracking)
            )
            for i in issues[:limit]
        ]
        return HistoryPage(rows, rows[-1].week if len(issues) > limit else None)


def insights(rt: Runtime, issue_id: int) -> dict[str, Any]:
    """Everything `digest stats --json` says about one issue (clicks, opens, funnel), for the charts."""
    with rt.sessions() as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            return {}
        return delivery_stats(session, issue, reported_events(rt.config.transport_kind), rt.settings.tracking)


def list_history(rt: Runtime) -> dict[str, Any]:
    """The list by week and click-through by category (digest.reports.insights.over_time)."""
    with rt.sessions() as session:
        return over_time(session, rt.settings.tracking, now=utcnow())


def counted(numbers: dict[str, Any]) -> dict[str, int | str]:
    """The counted numbers of one issue from its `insights` (zeros when nothing was sent; "n/a" when the
    transport cannot tell), with our own clicks and opens as the History shows them."""
    numbers = dict(numbers)  # `ours` rewrites clicked and opened: the caller's charts keep theirs
    unmeasured_list = list(numbers.get("unmeasured") or ())
    if numbers:
        ours(numbers, dict(numbers.get("rates") or {}), unmeasured_list)
    unmeasured = set(unmeasured_list)
    return {k: "n/a" if k in unmeasured else int(numbers.get(k) or 0) for k in COUNTED}
