"""Past issues with their numbers, read straight from the deliveries and events tables.

One grouped query for all issues (no per-issue round trips). The delivery engine's own
`digest stats` may count more; this is what the preview's history table needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select

from digest.runtime import Runtime
from digest.storage.models import DELIVERY_FAILED, Delivery, Event, Issue

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

    def rate(self, what: str) -> str:
        """Share of delivered (or sent, before any delivery webhook) as a percentage string."""
        base = self.delivered or self.sent
        value = getattr(self, what)
        return f"{100 * value / base:.0f}%" if base and value else ""


def _counts(rt: Runtime, issue_ids: list[int]) -> dict[int, dict[str, int]]:
    if not issue_ids:
        return {}
    def n(cond):  # type: ignore[no-untyped-def]
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)
    q = (select(Delivery.issue_id, func.count(Delivery.id),
                n(Delivery.sent_at.is_not(None)),
                n(Delivery.status == DELIVERY_FAILED), n(Delivery.delivered_at.is_not(None)),
                n(Delivery.opened_at.is_not(None)), n(Delivery.clicked_at.is_not(None)))
         .where(Delivery.issue_id.in_(issue_ids)).group_by(Delivery.issue_id))
    unsub_q = (select(Event.issue_id, func.count(func.distinct(Event.subscriber_id)))
               .where(Event.issue_id.in_(issue_ids), Event.kind == "unsubscribed").group_by(Event.issue_id))
    out: dict[int, dict[str, int]] = {}
    with rt.sessions() as session:
        for iid, recipients, sent, failed, delivered, opened, clicked in session.execute(q).all():
            out[iid] = {"recipients": recipients, "sent": int(sent), "failed": int(failed),
                        "delivered": int(delivered), "opened": int(opened), "clicked": int(clicked)}
        for iid, unsub in session.execute(unsub_q).all():
            out.setdefault(iid, {})["unsubscribed"] = int(unsub)
    return out


def issue_history(rt: Runtime, limit: int = 200) -> list[IssueStats]:
    """Issues newest week first, drafts included (they have no numbers yet)."""
    with rt.sessions() as session:
        rows = session.execute(select(Issue.id, Issue.week, Issue.number, Issue.status, Issue.subject,
                                      Issue.sent_at, Issue.skip_reason)
                               .order_by(Issue.week.desc()).limit(limit)).all()
    stats = [IssueStats(*row) for row in rows]
    counts = _counts(rt, [s.id for s in stats])
    for s in stats:
        for k, v in counts.get(s.id, {}).items():
            setattr(s, k, v)
    return stats


def issue_stats(rt: Runtime, issue_id: int) -> dict[str, int]:
    """The counted numbers of one issue (zeros when nothing was sent)."""
    counts = _counts(rt, [issue_id]).get(issue_id, {})
    return {k: counts.get(k, 0) for k in COUNTED}


def load_issue(rt: Runtime, week: str) -> Issue | None:
    """The stored issue of `week` (its archived render is issue.html with personalization markers)."""
    with rt.sessions() as session:
        return session.scalar(select(Issue).where(Issue.week == week))
