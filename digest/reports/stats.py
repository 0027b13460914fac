"""Per-issue numbers for `digest stats`: what was sent and what readers did with it.

Delivery events come from the provider's webhooks (stamps on each delivery);
unsubscribes are the `unsubscribed` events attributed to the issue. Rates are
shares of the emails sent (failed: of the recipients).

A transport that never reports an event (the outbox and SMTP report none) leaves its
count unknown, not zero: those keys are listed in `unmeasured` and their rates are None,
unless some were recorded anyway (an issue sent through another transport earlier).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from digest.config import TrackingSettings
from digest.reports.insights import click_reports, open_reports
from digest.storage.models import (
    MAIN_EDITION_KEY,
    Batch,
    BatchStatus,
    Delivery,
    DeliveryStatus,
    Edition,
    Event,
    Issue,
    SubscriberEventKind,
)
from digest.weeks import iso_utc


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


EVENT_KEYS = ("delivered", "bounced", "complained", "opened", "clicked")


def unsubscribe_reasons(session: Session, issue_id: int) -> dict[str, int]:
    """Reason codes given on the unsubscribe page for this issue: the latest per person, most given first."""
    latest: dict[object, str] = {}
    rows = session.execute(
        select(Event.id, Event.subscriber_id, Event.detail)
        .where(Event.issue_id == issue_id, Event.kind == SubscriberEventKind.UNSUBSCRIBE_REASON)
        .order_by(Event.id)
    )
    for event_id, subscriber_id, detail in rows:
        code = (detail or {}).get("reason")
        if isinstance(code, str) and code:
            latest[subscriber_id if subscriber_id is not None else f"event-{event_id}"] = code
    counts: dict[str, int] = {}
    for code in latest.values():
        counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def edition_stats(session: Session, issue_id: int) -> list[dict[str, Any]]:
    """Per edition (by its stable key): recipients, sent, failed, opened, clicked. Deliveries enqueued
    before editions name none: they are the main edition's."""

    def n(cond: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    main = session.scalar(select(Edition.id).where(Edition.issue_id == issue_id, Edition.key == MAIN_EDITION_KEY))
    of_edition = Delivery.edition_id if main is None else func.coalesce(Delivery.edition_id, main)

    rows = session.execute(
        select(
            Edition.key,
            Edition.label,
            Edition.subject,
            func.count(Delivery.id),
            n(Delivery.status == DeliveryStatus.DROPPED),
            n(Delivery.status == DeliveryStatus.SENT),
            n(Delivery.status == DeliveryStatus.FAILED),
            n(Delivery.opened_at.is_not(None)),
            n(Delivery.clicked_at.is_not(None)),
        )
        .join(Delivery, and_(Delivery.issue_id == issue_id, of_edition == Edition.id), isouter=True)
        .where(Edition.issue_id == issue_id)
        .group_by(Edition.id, Edition.key, Edition.label, Edition.subject)
        .order_by(Edition.id)
    ).all()
    return [
        {
            "key": key,
            "label": label,
            "subject": subject,
            "recipients": int(total) - int(dropped),
            "sent": int(sent),
            "failed": int(failed),
            "opened": int(opened),
            "clicked": int(clicked),
        }
        for key, label, subject, total, dropped, sent, failed, opened, clicked in rows
    ]


def _delivery_counts(session: Session, issue: Issue) -> dict[str, int]:
    """What happened to the issue's deliveries, from their statuses and the providers' stamps."""

    def n(cond: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    row = session.execute(
        select(
            func.count(Delivery.id),
            n(Delivery.status == DeliveryStatus.SENT),
            n(Delivery.status == DeliveryStatus.FAILED),
            n(Delivery.status == DeliveryStatus.QUEUED),
            n(Delivery.status == DeliveryStatus.DROPPED),
            n(Delivery.delivered_at.is_not(None)),
            n(Delivery.bounced_at.is_not(None)),
            n(Delivery.complained_at.is_not(None)),
            n(Delivery.opened_at.is_not(None)),
            n(Delivery.clicked_at.is_not(None)),
        ).where(Delivery.issue_id == issue.id)
    ).one()
    enqueued, sent, failed, queued, dropped, delivered, bounced, complained, opened, clicked = (int(v) for v in row)
    unsubscribed = session.scalar(
        select(func.count(Event.id)).where(Event.issue_id == issue.id, Event.kind == SubscriberEventKind.UNSUBSCRIBED)
    )
    return {
        "recipients": enqueued - dropped,
        "sent": sent,
        "failed": failed,
        "queued": queued,
        "dropped": dropped,
        "delivered": delivered,
        "bounced": bounced,
        "complained": complained,
        "opened": opened,
        "clicked": clicked,
        "unsubscribed": int(unsubscribed or 0),
    }


def _unconfirmed(session: Session, issue: Issue) -> int:
    """Owed readers whose batch may have gone out without an answer (no key to retry under): an operator decides."""
    found = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .join(Batch, (Batch.issue_id == Delivery.issue_id) & (Batch.batch_no == Delivery.batch_no))
        .where(
            Delivery.issue_id == issue.id,
            Delivery.status == DeliveryStatus.QUEUED,
            Batch.status == BatchStatus.UNCONFIRMED,
        )
    )
    return int(found or 0)


def _rates(counts: dict[str, int], measured: frozenset[str] | None) -> tuple[dict[str, float | None], list[str]]:
    """Shares of the emails sent (failed: of the recipients); an event the transport never reports is unknown."""
    sent = counts["sent"]
    rates = {"sent": _share(sent, counts["recipients"]), "failed": _share(counts["failed"], counts["recipients"])}
    rates.update(
        {
            k: _share(counts[k], sent)
            for k in ("delivered", "bounced", "complained", "opened", "clicked", "unsubscribed")
        }
    )
    unmeasured = [k for k in EVENT_KEYS if measured is not None and k not in measured and not counts[k]]
    for key in unmeasured:
        rates[key] = None
    return rates, unmeasured


def _our_counts(
    session: Session, issue: Issue, tracking: TrackingSettings, sent: int
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Clicks and opens as we count them (scanners set aside), for the issue and per edition."""
    clicks, per_edition = click_reports(session, issue, tracking, sent)
    editions = edition_stats(session, issue.id)
    edition_ids = dict(session.execute(select(Edition.key, Edition.id).where(Edition.issue_id == issue.id)).all())
    opens, opens_per = open_reports(
        session, issue, tracking, sent, {edition_ids[ed["key"]]: ed["sent"] for ed in editions}
    )
    for ed in editions:  # our own counts per edition (its comparisons, its click-through, its opens)
        ed["clicks"] = per_edition.get(ed["key"])
        ed["opens"] = opens_per[edition_ids[ed["key"]]]
    return clicks, opens, editions


def issue_stats(
    session: Session, issue: Issue, measured: frozenset[str] | None = None, tracking: TrackingSettings | None = None
) -> dict[str, Any]:
    """`measured`: the delivery events the transport reports (None: assume all). `clicks` and
    `opens` are our own counts (digest.reports.insights): readers' clicks with scanners set aside."""
    counts = _delivery_counts(session, issue)
    rates, unmeasured = _rates(counts, measured)
    clicks, opens, editions = _our_counts(session, issue, tracking or TrackingSettings(), counts["sent"])
    skips = dict(issue.reader_skips or {})
    return {
        "week": issue.week,
        "number": issue.number,
        "status": issue.status,
        "subject": issue.main_edition.subject if issue.main_edition is not None else None,
        "editions": editions,
        "skipped_paused": int(skips.get("paused", 0)),
        "skipped_monthly": int(skips.get("monthly_waiting", 0)),
        "enqueued_at": iso_utc(issue.enqueued_at),
        "sent_at": iso_utc(issue.sent_at),
        **counts,
        "rates": rates,
        "unmeasured": unmeasured,
        "unsubscribe_reasons": unsubscribe_reasons(session, issue.id),
        "owed": counts["queued"],
        "unconfirmed": _unconfirmed(session, issue),
        "paused": issue.pause_reason,
        "opens": opens,
        "clicks": clicks,
    }
