"""`digest send --retry-failed`: give failed deliveries another go, never a second copy by accident.

Per batch, by what its recorded attempts say (digest.delivery.attempts, invariant 6):
- nothing of it can have been accepted (every attempt refused): its failed deliveries go
  back to the queue; under the same key while the provider keeps it, a new key after;
- the provider answered (some went out, the rest were rejected one by one): while its
  key is live the provider would only repeat that answer, so it is held until the key
  expires; after that the rejected ones are sent as a new request;
- it may have gone out without anybody knowing (answers lost and the key expired, or a
  409 for a different payload under its key): only with `accept_duplicates`, as a new
  request, and the caller says plainly that some readers may get the issue twice.
Deliveries already sent stay sent and are never part of a new request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from digest.delivery.attempts import KEY_TTL, legacy_key, may_have_been_accepted
from digest.storage.db import affected_rows
from digest.storage.models import Batch, BatchStatus, Delivery, DeliveryStatus, Issue, IssueStatus
from digest.weeks import as_utc, utcnow


@dataclass
class Requeued:
    batches: int = 0
    deliveries: int = 0
    same_key: int = 0  # batches retried under their live key
    new_key: int = 0  # batches given a new key (a new provider request)
    held: int = 0  # rejected deliveries whose batch's answer stands while its key is live
    held_until: datetime | None = None
    unconfirmed: int = 0  # deliveries that may have gone out: not resent without accept_duplicates
    duplicates_possible: int = 0  # ... resent because the operator accepted possible duplicates


def _count(session: Session, issue_id: int, batch_no: int, *statuses: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.batch_no == batch_no, Delivery.status.in_(statuses))
        )
        or 0
    )


def _requeue(session: Session, issue_id: int, row: Batch, *, new_key: bool) -> int:
    moved = affected_rows(
        session.execute(
            update(Delivery)
            .where(
                Delivery.issue_id == issue_id,
                Delivery.batch_no == row.batch_no,
                Delivery.status == DeliveryStatus.FAILED,
            )
            .values(status=DeliveryStatus.QUEUED, error=None)
            .execution_options(synchronize_session=False)
        )
    )
    row.status, row.claimed_by, row.claimed_at, row.last_error, row.sent_at = (
        BatchStatus.PENDING,
        None,
        None,
        None,
        None,
    )
    if new_key:  # a fresh request: readers who left meanwhile are dropped again before it
        row.generation += 1
        row.attempts, row.first_attempt_at, row.idem_key = 0, None, None
    return moved


def requeue_failed(
    session: Session, issue_id: int, *, now: datetime | None = None, accept_duplicates: bool = False
) -> Requeued:
    """Caller commits. Batches in flight (claimed) are left alone: they are not finished yet."""
    now = now or utcnow()
    week = session.scalar(select(Issue.week).where(Issue.id == issue_id)) or ""
    failed_nos = select(Delivery.batch_no).where(
        Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.FAILED
    )
    rows = list(
        session.scalars(
            select(Batch)
            .where(
                Batch.issue_id == issue_id,
                Batch.status != BatchStatus.CLAIMED,
                or_(Batch.batch_no.in_(failed_nos), Batch.status.in_([BatchStatus.UNCONFIRMED, BatchStatus.FAILED])),
            )
            .order_by(Batch.batch_no)
        )
    )
    done = Requeued()
    for row in rows:
        key = row.idem_key or legacy_key(week, row.batch_no, row.generation)
        expires = as_utc(row.first_attempt_at) + KEY_TTL if row.first_attempt_at else None
        live = expires is not None and expires > now
        maybe = row.attempts > 0 and may_have_been_accepted(session, row, key)
        if row.status == BatchStatus.UNCONFIRMED or (row.status == BatchStatus.FAILED and maybe):
            owed = _count(session, issue_id, row.batch_no, DeliveryStatus.QUEUED, DeliveryStatus.FAILED)
            if not accept_duplicates:
                done.unconfirmed += owed
                continue
            _requeue(session, issue_id, row, new_key=True)
            done.duplicates_possible += owed
            done.deliveries += owed
            done.new_key += 1
        elif maybe and live:
            done.held += _count(session, issue_id, row.batch_no, DeliveryStatus.FAILED)
            done.held_until = max(filter(None, [done.held_until, expires]))
            continue
        else:
            done.deliveries += _requeue(session, issue_id, row, new_key=not live)
            if live:
                done.same_key += 1
            else:
                done.new_key += 1
        done.batches += 1
    if done.batches:
        session.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENT)
            .values(status=IssueStatus.SENDING, sent_at=None)
            .execution_options(synchronize_session=False)
        )
    return done
