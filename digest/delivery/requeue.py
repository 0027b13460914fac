"""`digest send --retry-failed`: give failed deliveries another go, as new provider requests.

Every batch holding a failed delivery goes back to pending with its generation
bumped, so its idempotency key is new (the old key is tied to the old payload),
and it again drops readers who left meanwhile before its first new attempt.
Deliveries already sent stay sent and are not part of the new request.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest.storage.models import (
    BATCH_CLAIMED,
    BATCH_PENDING,
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    ISSUE_SENDING,
    ISSUE_SENT,
    Batch,
    Delivery,
    Issue,
)


@dataclass(frozen=True)
class Requeued:
    batches: int
    deliveries: int


def requeue_failed(session: Session, issue_id: int) -> Requeued:
    """Caller commits. Batches in flight (claimed) are left alone: they are not finished yet."""
    batch_nos = sorted(set(session.scalars(
        select(Delivery.batch_no).where(Delivery.issue_id == issue_id, Delivery.status == DELIVERY_FAILED))))
    if not batch_nos:
        return Requeued(0, 0)
    claimed = set(session.scalars(select(Batch.batch_no).where(
        Batch.issue_id == issue_id, Batch.status == BATCH_CLAIMED, Batch.batch_no.in_(batch_nos))))
    batch_nos = [b for b in batch_nos if b not in claimed]
    deliveries = 0
    for start in range(0, len(batch_nos), 500):
        chunk = batch_nos[start:start + 500]
        deliveries += int(session.execute(
            update(Delivery).where(Delivery.issue_id == issue_id, Delivery.batch_no.in_(chunk),
                                   Delivery.status == DELIVERY_FAILED)
            .values(status=DELIVERY_QUEUED, error=None).execution_options(synchronize_session=False)).rowcount or 0)
        session.execute(
            update(Batch).where(Batch.issue_id == issue_id, Batch.batch_no.in_(chunk))
            .values(status=BATCH_PENDING, generation=Batch.generation + 1, attempts=0, first_attempt_at=None,
                    claimed_by=None, claimed_at=None, last_error=None, sent_at=None)
            .execution_options(synchronize_session=False))
    if batch_nos:
        session.execute(update(Issue).where(Issue.id == issue_id, Issue.status == ISSUE_SENT)
                        .values(status=ISSUE_SENDING, sent_at=None).execution_options(synchronize_session=False))
    return Requeued(len(batch_nos), deliveries)
