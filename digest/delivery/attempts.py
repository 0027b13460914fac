"""The attempt journal: each provider call of a batch is a `SendAttempt` row (invariant 6).

A batch's attempt is committed *before* the transport is called. From then on its members
are frozen, and any later attempt (a retry, or another process after a crash) sends the same
payload under the same idempotency key, so the provider deduplicates it. Until that first
commit, readers who left since enqueueing are dropped; the drop and the freeze happen in one
transaction, right before sending.

Each row is closed with its outcome: accepted, refused (nothing can have gone out) or
ambiguous (the answer was lost). A batch's key is fixed at its first attempt and never changes
while the provider keeps it (24 hours); after that it gets a new key only if no attempt could
have been accepted, otherwise it is `unconfirmed` and waits for an operator who accepts
possible duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from digest.delivery.claims import Claimed
from digest.providers import registry
from digest.runtime import Runtime
from digest.storage.db import affected_rows
from digest.storage.models import (
    MAY_HAVE_BEEN_ACCEPTED,
    Batch,
    BatchStatus,
    Delivery,
    DeliveryStatus,
    SendAttempt,
    Subscriber,
    SubscriberStatus,
)
from digest.weeks import as_utc, utcnow

log = logging.getLogger("digest.sender")

KEY_TTL = timedelta(hours=23)  # Resend keeps idempotency keys 24 h; an hour of margin


def idempotency_key(installation: str, issue_id: int, week: str, batch_no: int, generation: int) -> str:
    """Unique across installations sharing one provider account (staging and production), issues and
    batches; a new generation (a new key) only when no copy can have gone out, or the operator said so."""
    return f"digest-{installation}-i{issue_id}-{week}-b{batch_no}" + (f"-g{generation}" if generation else "")


def legacy_key(week: str, batch_no: int, generation: int) -> str:
    """The key of batches first attempted before keys were stored on the batch: kept for them."""
    return f"digest-{week}-b{batch_no}" + (f"-g{generation}" if generation else "")


def may_have_been_accepted(session: Session, batch: Batch, key: str) -> bool:
    """Could any attempt under `key` have been accepted? Unrecorded (older) attempts count as yes."""
    outcomes = list(
        session.scalars(
            select(SendAttempt.outcome).where(SendAttempt.batch_id == batch.id, SendAttempt.idem_key == key)
        )
    )
    return batch.attempts > len(outcomes) or any(o in MAY_HAVE_BEEN_ACCEPTED for o in outcomes)


def key_ttl(caps: registry.Capabilities) -> timedelta:
    """How long a batch may be retried under its key: the provider's key lifetime less a margin.

    A provider without keys declares 0: an attempt that may have been accepted is never
    repeated (the batch becomes `unconfirmed`); one refused outright is retried at once
    under a new key. None (keys of unknown lifetime, or per-message recording: SMTP) keeps 23 h."""
    if caps.key_lifetime_hours is None:
        return KEY_TTL
    return timedelta(hours=caps.key_lifetime_hours) * 23 / 24


class ClaimOutcome(StrEnum):
    """What claiming a batch for one more attempt found."""

    GO = "go"  # send it (again, under the same key)
    LOST = "lost"  # another worker holds the claim now
    EMPTY = "empty"  # nobody left to mail in it
    UNCONFIRMED = "unconfirmed"  # the key expired after an attempt that may have gone out: an operator decides


@dataclass
class Attempt:
    outcome: ClaimOutcome
    queued: set[int] | None = None  # first attempt: who is still on the list
    failed: int = 0
    reason: str | None = None
    key: str = ""
    attempt_id: int | None = None


def start_attempt(
    rt: Runtime, installation: str, ttl: timedelta, issue_id: int, week: str, batch: Claimed, name: str
) -> Attempt:
    """Commit the attempt (and its key) before calling out: from here the payload is frozen.

    `ttl`: how long the batch may be retried under its key (`key_ttl`)."""
    with rt.sessions.begin() as session:
        q = select(Batch).where(Batch.id == batch.id)
        if rt.on_postgres:
            q = q.with_for_update()
        row = session.scalar(q)
        if row is None or row.status != BatchStatus.CLAIMED or row.claimed_by != name:
            return Attempt(ClaimOutcome.LOST)
        now = utcnow()
        key = row.idem_key or legacy_key(week, row.batch_no, row.generation)
        first_at = as_utc(row.first_attempt_at) if row.first_attempt_at is not None else None
        if row.attempts > 0 and first_at is not None and first_at < now - ttl:
            if may_have_been_accepted(session, row, key):
                return _unconfirmed(session, issue_id, row, now)
            # Every attempt was refused: nothing went out, so a new key cannot make a second copy.
            row.generation += 1
            row.attempts, row.first_attempt_at, row.idem_key = 0, None, None
            batch.generation = row.generation
        queued = None
        if row.attempts == 0:
            queued = _freeze(session, issue_id, row, now)
            if not queued:
                return Attempt(ClaimOutcome.EMPTY)
            row.idem_key = key = idempotency_key(installation, issue_id, week, row.batch_no, row.generation)
        row.attempts += 1
        row.claimed_at = now
        attempt = SendAttempt(batch_id=row.id, idem_key=key, started_at=now)
        session.add(attempt)
        session.flush()
        return Attempt(ClaimOutcome.GO, queued=queued, key=key, attempt_id=attempt.id)


def _freeze(session: Session, issue_id: int, row: Batch, now: datetime) -> set[int]:
    """The first attempt: drop who left, and fix who is mailed; a batch left empty is done."""
    drop_departed(session, issue_id, row.batch_no)
    queued = set(
        session.scalars(
            select(Delivery.id).where(
                Delivery.issue_id == issue_id,
                Delivery.batch_no == row.batch_no,
                Delivery.status == DeliveryStatus.QUEUED,
            )
        )
    )
    if not queued:
        row.status, row.sent_at, row.claimed_at = BatchStatus.SENT, now, now
    else:
        row.first_attempt_at = now
    return queued


def drop_departed(session: Session, issue_id: int, batch_no: int) -> int:
    """Invariant 3: whoever left since enqueueing is not mailed."""
    still_active = exists().where(Subscriber.id == Delivery.subscriber_id, Subscriber.status == SubscriberStatus.ACTIVE)
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.batch_no == batch_no,
            Delivery.status == DeliveryStatus.QUEUED,
            ~still_active,
        )
        .values(status=DeliveryStatus.DROPPED, error="left the list before sending")
        .execution_options(synchronize_session=False)
    )
    dropped = affected_rows(result)
    if dropped:
        log.info("batch %s: dropped %s reader(s) who left after enqueueing", batch_no, dropped)
    return dropped


def _unconfirmed(session: Session, issue_id: int, row: Batch, now: datetime) -> Attempt:
    """The key expired after an attempt that may have been accepted: only an operator decides."""
    first = as_utc(row.first_attempt_at) if row.first_attempt_at else now
    reason = (
        f"may have been delivered: first attempted {first:%Y-%m-%d %H:%M} UTC "
        f"without a confirmed answer, and the provider's idempotency key has expired (or it has none), "
        f"so it is not "
        f"resent blindly (`digest send --retry-failed --accept-duplicates` resends it, possibly twice)"
    )
    row.status, row.last_error, row.claimed_by, row.claimed_at = BatchStatus.UNCONFIRMED, reason, None, None
    count = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.issue_id == issue_id, Delivery.batch_no == row.batch_no, Delivery.status == DeliveryStatus.QUEUED
        )
    )
    return Attempt(ClaimOutcome.UNCONFIRMED, failed=int(count or 0), reason=reason)


def finish_attempt(rt: Runtime, attempt_id: int | None, outcome: str, detail: str | None) -> None:
    """Close an attempt that got no results to record (refused, stopped, lost answer)."""
    if attempt_id is None:
        return
    with rt.sessions.begin() as session:
        session.execute(
            update(SendAttempt)
            .where(SendAttempt.id == attempt_id)
            .values(outcome=outcome, finished_at=utcnow(), detail=(detail or None) and detail[:2000])
        )
