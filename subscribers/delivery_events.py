"""The one place provider events act: deliveries are stamped, subscribers suppressed, each event once.

Every provider module (Resend's webhook, SES's SNS notifications, bounce mails) hands its
`DeliveryEvent`s here. The event id goes into `webhook_receipts` in the same transaction as
the effect, so a replay (or two copies at once) changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.delivery.events import DeliveryEvent, EventKind
from digest.runtime import Runtime
from digest.storage.models import Delivery, Subscriber, WebhookReceipt
from digest.weeks import utcnow
from subscribers.addresses import AddressError, normalize_email
from subscribers.lifecycle import record_bounce, record_complaint

_STAMPS = {EventKind.DELIVERED: "delivered_at", EventKind.OPENED: "opened_at", EventKind.CLICKED: "clicked_at"}


def apply_events(rt: Runtime, events: Sequence[DeliveryEvent]) -> str:
    """Apply one provider notification (its events share one event id) exactly once; says what happened."""
    if not events:
        return "ignored: no events"
    key = events[0].receipt_key
    if any(e.receipt_key != key for e in events):
        raise ValueError("apply_events takes the events of one provider notification")
    try:
        with rt.sessions.begin() as session:
            if session.scalar(select(WebhookReceipt.id).where(WebhookReceipt.message_id == key)):
                return "duplicate"
            session.add(WebhookReceipt(message_id=key, event_type=events[0].provider_type[:64], received_at=utcnow()))
            session.flush()
            return "; ".join(_apply(rt, session, e, e.occurred_at or utcnow()) for e in events)
    except IntegrityError:  # the same event arrived twice at the same moment; the other copy handled it
        return "duplicate"


def _apply(rt: Runtime, session: Session, event: DeliveryEvent, when: datetime) -> str:
    delivery = None
    if event.message_id:
        delivery = session.scalar(select(Delivery).where(Delivery.provider_id == event.message_id[:100]).limit(1))
    if event.kind in _STAMPS:
        if delivery is None:
            return "ignored: no matching delivery"
        column = _STAMPS[event.kind]
        if getattr(delivery, column) is None:
            setattr(delivery, column, when)
        return f"recorded {event.provider_type}"
    if event.kind not in (EventKind.HARD_BOUNCE, EventKind.SOFT_BOUNCE, EventKind.COMPLAINED):
        return f"ignored: {event.provider_type}"
    sub, address = _person(session, delivery, event.recipient)
    if sub is None and address is None:
        return "ignored: unknown recipient"
    if event.kind is EventKind.COMPLAINED:
        return record_complaint(session, email=address, sub=sub, delivery=delivery, now=when)
    bounces = rt.settings.bounces
    return record_bounce(session, email=address, sub=sub, permanent=event.kind is EventKind.HARD_BOUNCE,
                         delivery=delivery, detail=dict(event.detail), now=when,
                         soft_limit=bounces.soft_bounce_limit,
                         soft_window=timedelta(days=bounces.soft_bounce_window_days))


def _person(session: Session, delivery: Delivery | None, recipient: str | None) -> tuple[Subscriber | None, str | None]:
    """The subscriber of the matched delivery, else the event's recipient (confirm/welcome mail)."""
    if delivery is not None and delivery.subscriber_id is not None:
        sub = session.get(Subscriber, delivery.subscriber_id)
        if sub is not None:
            return sub, sub.email
    if recipient is None:
        return None, (delivery.email or None) if delivery is not None else None
    try:
        address = normalize_email(recipient.rsplit("<", 1)[-1].rstrip(">"))
    except AddressError:
        return None, None
    return session.scalar(select(Subscriber).where(Subscriber.email == address)), address
