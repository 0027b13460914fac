"""State changes of a subscriber after sign-up: confirm, unsubscribe, resubscribe, bounce, complain.

Every change that stops mail also sets the subscriber's status (the enqueue step and the
sender take only `active`), and every suppression keeps only the address's hash, so it
outlives erasure (subscribers.erasure). Unsubscribes and complaints carry the issue whose
link or copy caused them, for "which issue lost whom".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from digest.delivery.mail_queue import queue_mail
from digest.links import TokenError, Tokens, UnsubscribeClaim, email_hash
from digest.runtime import Runtime
from digest.storage.models import (
    ConsentKind,
    Delivery,
    Event,
    Issue,
    Subscriber,
    SubscriberEventKind,
    SubscriberStatus,
    Suppression,
)
from digest.weeks import as_utc, utcnow
from subscribers.consent import record_consent

REASONS = {
    "too_many": "Too many emails",
    "not_relevant": "The content is not relevant to me",
    "never_signed_up": "I never signed up",
    "other": "Something else",
}
MAX_REASON = 500


# -- suppression -------------------------------------------------------------------------


def suppress(session: Session, email: str, reason: str, now: datetime | None = None) -> None:
    """Put the address's hash on the suppression list (an existing entry keeps its first reason)."""
    values = {"email_hash": email_hash(email), "reason": reason, "created_at": now or utcnow()}
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert(Suppression) if dialect == "postgresql" else sqlite_insert(Suppression)).values(**values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["email_hash"]))


def _existing_issue(session: Session, issue_id: int | None) -> int | None:
    if not issue_id:
        return None
    return session.scalar(select(Issue.id).where(Issue.id == issue_id))


# -- confirm -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmResult:
    state: str  # pending | confirmed | already | expired | stale | invalid
    subscriber_id: int | None = None
    email: str = ""


def _confirm_target(rt: Runtime, session: Session, token: str, *, lock: bool = False) -> ConfirmResult | Subscriber:
    """The token's subscriber, or why there is none; `lock` holds the row (a double click confirms once)."""
    if not token or len(token) > 300:
        return ConfirmResult("invalid")
    try:
        sid, tie = Tokens(rt.secret_key).read_confirm(token, rt.settings.subscribe.confirm_expiry_days)
    except TokenError as exc:
        return ConfirmResult("expired" if "expired" in str(exc) else "invalid")
    sub = session.get(Subscriber, sid, with_for_update=lock)  # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE
    if sub is None or not Tokens.tie_matches(sub.email, tie):
        return ConfirmResult("invalid")
    if sub.status == SubscriberStatus.ACTIVE:
        return ConfirmResult("already", sub.id, sub.email)
    if sub.status != SubscriberStatus.PENDING:
        return ConfirmResult("stale", sub.id, sub.email)  # unsubscribed, bounced or complained since
    return sub


def confirm_state(rt: Runtime, token: str) -> ConfirmResult:
    """What opening the link shows; changes nothing (link scanners open links too)."""
    with rt.sessions() as session:
        found = _confirm_target(rt, session, token)
        return found if isinstance(found, ConfirmResult) else ConfirmResult("pending", found.id, found.email)


def confirm(
    rt: Runtime, token: str, *, ip: str | None = None, user_agent: str | None = None, now: datetime | None = None
) -> ConfirmResult:
    """The person pressed "Confirm": make them active, record it, queue the welcome; safe twice."""
    now = now or utcnow()
    with rt.sessions.begin() as session:
        found = _confirm_target(rt, session, token, lock=True)
        if isinstance(found, ConfirmResult):
            return found
        sub = found
        sub.status, sub.confirmed_at, sub.unsubscribed_at, sub.unsubscribe_reason = (
            SubscriberStatus.ACTIVE,
            now,
            None,
            None,
        )
        session.execute(
            delete(Suppression).where(
                Suppression.email_hash == email_hash(sub.email), Suppression.reason == "forgotten"
            )
        )
        session.add(Event(kind=SubscriberEventKind.CONFIRMED, subscriber_id=sub.id, created_at=now, detail={}))
        record_consent(
            session,
            sub.id,
            ConsentKind.CONFIRMED,
            source="web:confirmation link",
            ip=ip,
            user_agent=user_agent,
            now=now,
        )
        from subscribers import preferences

        preferences.apply_signup_topics(session, sub, rt, now)
        queue_mail(session, "welcome", sub.id, now)
        return ConfirmResult("confirmed", sub.id, sub.email)


# -- unsubscribe -------------------------------------------------------------------------


def read_unsubscribe_token(rt: Runtime, token: str) -> UnsubscribeClaim:
    """Raises TokenError for anything not signed by us (garbled, forged, truncated)."""
    if not token or len(token) > 300:
        raise TokenError("invalid unsubscribe token")
    return Tokens(rt.secret_key).read_unsubscribe(token)


def subscriber_for(session: Session, claim: UnsubscribeClaim, *, lock: bool = False) -> Subscriber | None:
    """The token's subscriber, unless erased or the address changed (then the token is dead).

    `lock` holds the row until the transaction ends, as confirm does: a double click (or a mail
    client repeating its one-click POST) then reads the first click's result and changes nothing.
    """
    sub = session.get(Subscriber, claim.subscriber_id, with_for_update=lock)  # SQLite: BEGIN IMMEDIATE
    if sub is None or not claim.matches(sub.email):
        return None
    return sub


def unsubscribe(
    session: Session, sub: Subscriber, *, issue_id: int | None, method: str, now: datetime | None = None
) -> bool:
    """Stop all mail to `sub`; True when this call changed something (repeat calls are no-ops)."""
    if sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return False
    now = now or utcnow()
    sub.status, sub.unsubscribed_at = SubscriberStatus.UNSUBSCRIBED, now
    session.add(
        Event(
            kind=SubscriberEventKind.UNSUBSCRIBED,
            subscriber_id=sub.id,
            issue_id=_existing_issue(session, issue_id),
            created_at=now,
            detail={"method": method},
        )
    )
    session.flush()
    return True


def resubscribe(
    session: Session,
    sub: Subscriber,
    *,
    issue_id: int | None,
    ip: str | None,
    user_agent: str | None,
    now: datetime | None = None,
) -> bool:
    """Undo an unsubscribe from the person's own link (it reached their mailbox: no new opt-in)."""
    if sub.status != SubscriberStatus.UNSUBSCRIBED:
        return False
    now = now or utcnow()
    sub.status, sub.unsubscribed_at, sub.unsubscribe_reason = SubscriberStatus.ACTIVE, None, None
    record_consent(
        session, sub.id, ConsentKind.RESUBSCRIBED, source="web:resubscribe link", ip=ip, user_agent=user_agent, now=now
    )
    session.add(
        Event(
            kind=SubscriberEventKind.RESUBSCRIBED,
            subscriber_id=sub.id,
            issue_id=_existing_issue(session, issue_id),
            created_at=now,
            detail={},
        )
    )
    session.flush()
    return True


def set_reason(
    session: Session, sub: Subscriber, *, code: str, text: str, issue_id: int | None, now: datetime | None = None
) -> bool:
    """Keep the optional why; the category goes on an event for stats, the words stay on the person.

    The same reason again (a second click on the same form) changes nothing and adds no event."""
    if sub.status != SubscriberStatus.UNSUBSCRIBED:
        return False
    code = code if code in REASONS else ("other" if text.strip() else "")
    if not code:
        return False
    words = " ".join(text.split())[:MAX_REASON]
    reason = REASONS[code] + (f": {words}" if words else "")
    if reason == sub.unsubscribe_reason:
        return False
    sub.unsubscribe_reason = reason
    session.add(
        Event(
            kind=SubscriberEventKind.UNSUBSCRIBE_REASON,
            subscriber_id=sub.id,
            issue_id=_existing_issue(session, issue_id),
            created_at=now or utcnow(),
            detail={"reason": code},
        )
    )
    session.flush()
    return True


# -- bounces and complaints --------------------------------------------------------------


def record_bounce(
    session: Session,
    *,
    email: str | None,
    sub: Subscriber | None,
    permanent: bool,
    delivery: Delivery | None,
    detail: dict[str, str],
    now: datetime | None = None,
    soft_limit: int,
    soft_window: timedelta,
) -> str:
    """Hard bounce: suppress now. Soft: count; `soft_limit` in a row suppress ([bounces] in config.toml).
    Returns what happened.

    "In a row": soft bounces within `soft_window`, after the last sign that mail got through
    (a delivery reported delivered, opened or clicked), so a full mailbox that was emptied
    in between starts the count again.

    Long because soft and hard bounces share one lock-and-record path and read best side by side.
    """
    now = now or utcnow()
    issue_id = delivery.issue_id if delivery else None
    delivery_id = delivery.id if delivery else None
    address = sub.email if sub is not None else email
    if delivery is not None and permanent and delivery.bounced_at is None:
        delivery.bounced_at = now
    if not permanent:
        if sub is None:
            return "soft bounce of an unknown address: ignored"
        session.add(
            Event(
                kind=SubscriberEventKind.SOFT_BOUNCE,
                subscriber_id=sub.id,
                issue_id=issue_id,
                delivery_id=delivery_id,
                created_at=now,
                detail=detail,
            )
        )
        session.flush()
        since = max(as_utc(now) - soft_window, _last_sign_of_life(session, sub.id) or as_utc(now) - soft_window)
        recent = (
            session.scalar(
                select(func.count())
                .select_from(Event)
                .where(
                    Event.subscriber_id == sub.id,
                    Event.kind == SubscriberEventKind.SOFT_BOUNCE,
                    Event.created_at > since,
                )
            )
            or 0
        )
        recent = max(recent, 1)  # this one counts, even when reported after a later sign of life
        if recent < soft_limit:
            return f"soft bounce {recent} of {soft_limit}"
        reason = "soft_bounces"
    else:
        reason = "hard_bounce"
    if address:
        suppress(session, address, reason, now)
    if sub is not None and sub.status != SubscriberStatus.BOUNCED:
        if sub.status != SubscriberStatus.COMPLAINED:
            sub.status = SubscriberStatus.BOUNCED
        session.add(
            Event(
                kind=SubscriberEventKind.BOUNCED,
                subscriber_id=sub.id,
                issue_id=issue_id,
                delivery_id=delivery_id,
                created_at=now,
                detail={**detail, "reason": reason},
            )
        )
    return f"suppressed ({reason})"


def _last_sign_of_life(session: Session, subscriber_id: int) -> datetime | None:
    """When mail to this subscriber was last reported delivered, opened or clicked (None: never)."""
    stamps = session.execute(
        select(func.max(Delivery.delivered_at), func.max(Delivery.opened_at), func.max(Delivery.clicked_at)).where(
            Delivery.subscriber_id == subscriber_id
        )
    ).one()
    known = [as_utc(s) for s in stamps if s is not None]
    return max(known) if known else None


def record_complaint(
    session: Session,
    *,
    email: str | None,
    sub: Subscriber | None,
    delivery: Delivery | None,
    now: datetime | None = None,
) -> str:
    """A spam report unsubscribes and suppresses, attributed to the issue that was reported."""
    now = now or utcnow()
    if delivery is not None and delivery.complained_at is None:
        delivery.complained_at = now
    address = sub.email if sub is not None else email
    if address:
        suppress(session, address, "complaint", now)
    if sub is not None and sub.status != SubscriberStatus.COMPLAINED:
        sub.status = SubscriberStatus.COMPLAINED
        sub.unsubscribed_at = sub.unsubscribed_at or now
        session.add(
            Event(
                kind=SubscriberEventKind.COMPLAINED,
                subscriber_id=sub.id,
                issue_id=delivery.issue_id if delivery else None,
                delivery_id=delivery.id if delivery else None,
                created_at=now,
                detail={},
            )
        )
    return "suppressed (complaint)"
