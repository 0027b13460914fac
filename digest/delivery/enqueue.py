"""Write one delivery per active subscriber with a fixed batch number (invariant 2).

Subscribers are streamed in keyset pages, so memory does not grow with the list.
Only `active` subscribers are taken: suppression always also changes the status.
"""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from digest.storage.models import BATCH_PENDING, DELIVERY_QUEUED, SUB_ACTIVE, Batch, Delivery, Subscriber

PAGE = 10_000


def enqueue_issue(session: Session, issue_id: int, batch_size: int, page: int = PAGE) -> int:
    """Caller holds the issue's freeze transaction and commits. Returns the number of deliveries."""
    last_id, count = 0, 0
    while True:
        rows = session.execute(
            select(Subscriber.id, Subscriber.email)
            .where(Subscriber.status == SUB_ACTIVE, Subscriber.id > last_id)
            .order_by(Subscriber.id)
            .limit(page)
        ).all()
        if not rows:
            break
        session.execute(
            insert(Delivery),
            [
                {"issue_id": issue_id, "subscriber_id": sid, "email": email,
                 "batch_no": (count + i) // batch_size, "status": DELIVERY_QUEUED}
                for i, (sid, email) in enumerate(rows)
            ],
        )
        count += len(rows)
        last_id = rows[-1][0]
    batches = (count + batch_size - 1) // batch_size
    if batches:
        session.execute(insert(Batch), [{"issue_id": issue_id, "batch_no": b, "status": BATCH_PENDING,
                                         "attempts": 0, "generation": 0} for b in range(batches)])
    return count
