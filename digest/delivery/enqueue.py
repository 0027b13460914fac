"""Write one delivery per active subscriber, of their edition, with a fixed batch number (invariant 2).

One INSERT ... SELECT joins the subscribers to the editions' stored choices and numbers
them with window functions in the database, so nothing streams through Python and memory
does not grow with the list (a million rows on PostgreSQL take seconds, however many
editions). Only `active` subscribers are taken: suppression (bounce, complaint, erasure)
always also changes the status; paused readers are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, bindparam, insert, text
from sqlalchemy.orm import Session

from digest.storage.models import Batch, BatchStatus, DeliveryStatus, Frequency, SubscriberStatus

BATCH_ROWS = 5_000


@dataclass(frozen=True)
class EditionReaders:
    """Who gets an edition: active, unpaused readers whose stored choice is one of `stored_topics`."""

    edition_id: int
    frequency: Frequency
    stored_topics: tuple[str, ...]


_FILL_EDITIONS = (
    "WITH c (topics, frequency, edition_id, ord) AS (VALUES {values}) "
    "INSERT INTO deliveries (issue_id, edition_id, subscriber_id, email, batch_no, status) "
    "SELECT :issue_id, r.edition_id, r.id, r.email, DENSE_RANK() OVER (ORDER BY r.ord, r.rn / :batch_size) - 1, "
    ":queued FROM (SELECT s.id, s.email, c.edition_id, c.ord, "
    "ROW_NUMBER() OVER (PARTITION BY c.ord ORDER BY s.id) - 1 AS rn "
    "FROM subscribers s JOIN c ON s.topics = c.topics AND s.frequency = c.frequency "
    "WHERE s.status = :active AND (s.paused_until IS NULL OR s.paused_until <= :now)) AS r"
)
_VALUE = "(CAST(:t{i} AS VARCHAR(1000)), CAST(:f{i} AS VARCHAR(16)), CAST(:e{i} AS BIGINT), CAST(:o{i} AS INTEGER))"


def enqueue_editions(
    session: Session, issue_id: int, editions: Sequence[EditionReaders], *, batch_size: int, now: datetime
) -> dict[int, int]:
    """Every edition's deliveries in one INSERT ... SELECT (one pass over the subscribers however many
    editions), numbered into batches that each hold one edition's readers: batch numbers run on
    across editions in the order given. Returns the deliveries per edition id."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rows = [
        (topics, ed.frequency.value, ed.edition_id, ord_)
        for ord_, ed in enumerate(editions)
        for topics in ed.stored_topics
    ]
    if not rows:
        return {}
    params: dict[str, object] = {
        "issue_id": issue_id,
        "batch_size": int(batch_size),
        "queued": DeliveryStatus.QUEUED,
        "active": SubscriberStatus.ACTIVE,
        "now": now,
    }
    for i, (topics, frequency, edition_id, ord_) in enumerate(rows):
        params.update({f"t{i}": topics, f"f{i}": frequency, f"e{i}": edition_id, f"o{i}": ord_})
    sql = text(_FILL_EDITIONS.format(values=", ".join(_VALUE.format(i=i) for i in range(len(rows)))))
    session.execute(sql.bindparams(bindparam("now", type_=DateTime(timezone=True))), params)
    counts: dict[int, int] = dict(
        session.execute(
            text("SELECT edition_id, COUNT(*) FROM deliveries WHERE issue_id = :issue_id GROUP BY edition_id"),
            {"issue_id": issue_id},
        ).all()
    )
    batch_rows: list[dict[str, object]] = []
    next_batch = 0
    for ed in editions:  # the same numbering as DENSE_RANK: each edition's batches, in order
        n = (int(counts.get(ed.edition_id, 0)) + batch_size - 1) // batch_size
        batch_rows.extend(
            {
                "issue_id": issue_id,
                "edition_id": ed.edition_id,
                "batch_no": next_batch + b,
                "status": BatchStatus.PENDING,
                "attempts": 0,
                "generation": 0,
            }
            for b in range(n)
        )
        next_batch += n
    for start in range(0, len(batch_rows), BATCH_ROWS):
        session.execute(insert(Batch), batch_rows[start : start + BATCH_ROWS])
    return {ed.edition_id: int(counts.get(ed.edition_id, 0)) for ed in editions}
