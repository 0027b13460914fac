"""Write one delivery per active subscriber with a fixed batch number (invariant 2).

One INSERT ... SELECT numbers the subscribers with row_number() in the database,
so nothing streams through Python and memory does not grow with the list (a
million rows on PostgreSQL take seconds). Only `active` subscribers are taken:
suppression (bounce, complaint, erasure) always also changes the status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import DateTime, bindparam, insert, text
from sqlalchemy.orm import Session

from digest.storage.db import affected_rows
from digest.storage.models import BATCH_PENDING, DELIVERY_QUEUED, SUB_ACTIVE, Batch, Frequency

_FILL = text(
    "INSERT INTO deliveries (issue_id, subscriber_id, email, batch_no, status) "
    "SELECT :issue_id, s.id, s.email, (ROW_NUMBER() OVER (ORDER BY s.id) - 1) / :batch_size, :queued "
    "FROM subscribers s WHERE s.status = :active"
)
BATCH_ROWS = 5_000


def enqueue_issue(session: Session, issue_id: int, batch_size: int) -> int:
    """Caller holds the issue's freeze transaction and commits. Returns the number of deliveries."""
    if batch_size < 1:  # the transport's largest batch is the caller's business (Config.batch_size)
        raise ValueError("batch_size must be at least 1")
    result = session.execute(_FILL, {"issue_id": issue_id, "batch_size": int(batch_size),
                                     "queued": DELIVERY_QUEUED, "active": SUB_ACTIVE})
    count = affected_rows(result)
    batches = (count + batch_size - 1) // batch_size
    for start in range(0, batches, BATCH_ROWS):
        session.execute(insert(Batch), [{"issue_id": issue_id, "batch_no": b, "status": BATCH_PENDING,
                                         "attempts": 0, "generation": 0}
                                        for b in range(start, min(batches, start + BATCH_ROWS))])
    return count


# One edition's readers: active, not paused, with one of the stored choices the edition serves.
_FILL_EDITION = text(
    "INSERT INTO deliveries (issue_id, edition_id, subscriber_id, email, batch_no, status) "
    "SELECT :issue_id, :edition_id, s.id, s.email, "
    ":first_batch + (ROW_NUMBER() OVER (ORDER BY s.id) - 1) / :batch_size, :queued "
    "FROM subscribers s WHERE s.status = :active AND s.frequency = :frequency AND s.topics IN :topics "
    "AND (s.paused_until IS NULL OR s.paused_until <= :now)"
).bindparams(bindparam("topics", expanding=True), bindparam("now", type_=DateTime(timezone=True)))


def enqueue_edition(session: Session, issue_id: int, edition_id: int, *, frequency: Frequency,
                    stored_topics: Sequence[str], batch_size: int, first_batch: int, now: datetime) -> tuple[int, int]:
    """One edition's deliveries and batches, numbered from `first_batch` (batch numbers stay unique
    per issue across its editions). Returns (deliveries, the next free batch number)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not stored_topics:
        return 0, first_batch
    result = session.execute(_FILL_EDITION, {
        "issue_id": issue_id, "edition_id": edition_id, "first_batch": first_batch, "batch_size": int(batch_size),
        "queued": DELIVERY_QUEUED, "active": SUB_ACTIVE, "frequency": frequency.value,
        "topics": list(stored_topics), "now": now})
    count = affected_rows(result)
    batches = (count + batch_size - 1) // batch_size
    for start in range(0, batches, BATCH_ROWS):
        session.execute(insert(Batch), [{"issue_id": issue_id, "edition_id": edition_id, "batch_no": first_batch + b,
                                         "status": BATCH_PENDING, "attempts": 0, "generation": 0}
                                        for b in range(start, min(batches, start + BATCH_ROWS))])
    return count, first_batch + batches
