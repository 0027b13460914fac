"""What the operator tools may use of the subscriber side: adding and suppression checks."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.links import email_hash
from digest.storage.models import ConsentKind, Event, Subscriber, SubscriberEventKind, SubscriberStatus, Suppression
from digest.weeks import utcnow
from subscribers.addresses import clean_name, normalize_email
from subscribers.consent import record_consent


@dataclass(frozen=True)
class AddResult:
    subscriber: Subscriber
    action: str  # added | updated | unchanged | left | suppressed


def is_suppressed(session: Session, email: str) -> bool:
    return session.scalar(select(Suppression.id).where(Suppression.email_hash == email_hash(email))) is not None


def add_subscriber(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    confirmed: bool = False,
    source: str = "cli",
    ip: str | None = None,
    user_agent: str | None = None,
    check_deliverability: bool = False,
) -> AddResult:
    """Add or update one subscriber (caller commits).

    Suppressed addresses are never re-added, and people who unsubscribed, bounced or
    complained are never turned back on by an operator's add or import ("left"): only the
    person can come back, through their own confirmation link or resubscribe link. That
    holds while someone who left is pending again after a new sign-up (anyone may type an
    address into the form), so such a row is "left" here too.

    Long because its keyword arguments take a line each; the logic is three cases.
    """
    address = normalize_email(email, check_deliverability=check_deliverability)
    name = clean_name(name)
    now = utcnow()
    kind = ConsentKind.IMPORTED if source.startswith("import:") else ConsentKind.ADDED
    sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
    if is_suppressed(session, address):
        return AddResult(sub or Subscriber(email=address), "suppressed")
    if sub is None:
        sub = Subscriber(
            email=address,
            name=name,
            status=SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING,
            created_at=now,
            confirmed_at=now if confirmed else None,
            consent_at=now,
            consent_ip=ip,
            consent_user_agent=user_agent,
            consent_source=source,
        )
        session.add(sub)
        session.flush()
        session.add(Event(kind=SubscriberEventKind.SUBSCRIBED, subscriber_id=sub.id, detail={"source": source}))
        if confirmed:  # the operator holds consent: on the list from now (the weekly list counts this)
            session.add(Event(kind=SubscriberEventKind.CONFIRMED, subscriber_id=sub.id, detail={"source": source}))
        record_consent(session, sub.id, kind, source=source, ip=ip, user_agent=user_agent, now=now)
        return AddResult(sub, "added")
    if sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING) or (
        sub.status == SubscriberStatus.PENDING and sub.unsubscribed_at is not None
    ):
        return AddResult(sub, "left")
    changed = False
    if name and sub.name != name:
        sub.name, changed = name, True
    if confirmed and sub.status != SubscriberStatus.ACTIVE:
        sub.status, sub.confirmed_at, sub.unsubscribed_at = SubscriberStatus.ACTIVE, now, None
        session.add(
            Event(kind=SubscriberEventKind.CONFIRMED, subscriber_id=sub.id, detail={"source": source})
        )  # on the list now
        record_consent(session, sub.id, kind, source=source, ip=ip, user_agent=user_agent, now=now)
        changed = True
    session.flush()
    return AddResult(sub, "updated" if changed else "unchanged")
