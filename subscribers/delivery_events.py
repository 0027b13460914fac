"""The one place provider events act: deliveries are stamped, subscribers suppressed, each event once.

Every provider module (Resend's webhook, SES's SNS notifications, bounce mails) hands its
`DeliveryEvent`s here. The event id goes into `webhook_receipts` in the same transaction as
the effect, so a replay (or two copies at once) changes nothing twice.

An event names a message; our own row for that message (a delivery, or the outgoing mail of a
confirmation or welcome) names the person. The address the event gives only has to agree with
that row: one that names someone else changes nothing and is logged (a forged bounce report to
a stranger's own VERP address must not suppress a reader).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.delivery.events import DeliveryEvent, EventKind
from digest.runtime import Runtime
from digest.storage.models import Delivery, OutgoingMail, Subscriber, WebhookReceipt
from digest.weeks import utcnow
from subscribers.addresses import AddressError, normalize_email
from subscribers.lifecycle import record_bounce, record_complaint

log = logging.getLogger("subscribers.events")

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


@dataclass(frozen=True)
class _Message:
    """One message we sent, as our own rows tell it: whose it was is never taken from a report."""

    delivery: Delivery | None  # an issue's copy; None for a confirmation or welcome mail
    sub: Subscriber | None
    address: str | None  # the person's address: the subscriber's, or the erased one's delivery row
    sent_to: str | None  # the address the message went to (what its VERP proof was made for)

    @property
    def who(self) -> str:
        return f"subscriber {self.sub.id}" if self.sub is not None else "an erased reader"


# A VERP bounce names a confirmation or welcome mail as `smtp:m<id>` (digest.delivery.events.bounce_mail);
# rows sent before outgoing_mail kept provider ids are found by that id.
_MAIL_KEY = re.compile(r"smtp:m([0-9]{1,12})")


def _message(session: Session, message_id: str | None) -> _Message | None:
    if not message_id:
        return None
    key = message_id[:100]
    delivery = session.scalar(select(Delivery).where(Delivery.provider_id == key).limit(1))
    if delivery is not None:
        sub = session.get(Subscriber, delivery.subscriber_id) if delivery.subscriber_id is not None else None
        return _Message(
            delivery, sub, sub.email if sub is not None else (delivery.email or None), delivery.email or None
        )
    mail = session.scalar(select(OutgoingMail).where(OutgoingMail.provider_id == key).limit(1))
    if mail is None and (found := _MAIL_KEY.fullmatch(key)):
        mail = session.get(OutgoingMail, int(found[1]))
    if mail is None or mail.subscriber_id is None:
        return None
    sub = session.get(Subscriber, mail.subscriber_id)
    return _Message(None, sub, sub.email, sub.email) if sub is not None else None


def message_recipient(session: Session, message_id: str) -> str | None:
    """The address our own row says message `message_id` went to; None when we have no such message."""
    message = _message(session, message_id)
    return message.sent_to if message is not None else None


def _same_address(named: str, ours: str) -> bool:
    try:
        return normalize_email(named.rsplit("<", 1)[-1].rstrip(">").strip()) == normalize_email(ours)
    except AddressError:
        return False


def _apply(rt: Runtime, session: Session, event: DeliveryEvent, when: datetime) -> str:
    message = _message(session, event.message_id)
    if event.kind in _STAMPS:
        if message is None or message.delivery is None:
            return "ignored: no matching delivery"
        column = _STAMPS[event.kind]
        if getattr(message.delivery, column) is None:
            setattr(message.delivery, column, when)
        return f"recorded {event.provider_type}"
    if event.kind not in (EventKind.HARD_BOUNCE, EventKind.SOFT_BOUNCE, EventKind.COMPLAINED):
        return f"ignored: {event.provider_type}"
    if message is None or message.address is None:
        return "ignored: not a message we sent (or its reader was erased)"
    named = [n for n in (event.recipient, *event.aliases) if n]
    if named and not any(_same_address(n, message.address) for n in named):
        log.warning(
            "%s event %s names another recipient (%r) than message %s's own (%s): nothing changed",
            event.provider,
            event.provider_event_id,
            named[0][:100],
            event.message_id,
            message.who,
        )
        return "ignored: the report names another recipient than the message's own"
    if event.kind is EventKind.COMPLAINED:
        return record_complaint(session, email=message.address, sub=message.sub, delivery=message.delivery, now=when)
    bounces = rt.settings.bounces
    return record_bounce(
        session,
        email=message.address,
        sub=message.sub,
        permanent=event.kind is EventKind.HARD_BOUNCE,
        delivery=message.delivery,
        detail=dict(event.detail),
        now=when,
        soft_limit=bounces.soft_bounce_limit,
        soft_window=timedelta(days=bounces.soft_bounce_window_days),
    )
