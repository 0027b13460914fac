"""Claiming an issue's batches for sending, renewing the claims, and giving them back.

A claim is a lease (digest.delivery.leases): `claimed_by` names the process and thread,
`claimed_at` is renewed at each attempt and while the batch is parked. A claim whose lease
ran out, or whose process on this host is gone (kill -9), is taken over; a worker that finds
its claim taken over walks away from the batch (digest.delivery.attempts).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from digest.delivery.leases import holder_gone, lapsed, skip_locked
from digest.runtime import Runtime
from digest.storage.models import Batch, BatchStatus
from digest.weeks import utcnow

log = logging.getLogger("digest.sender")


@dataclass
class Claimed:
    """A batch this process holds: `generation` changes with its idempotency key."""

    id: int
    batch_no: int
    generation: int


class SetAside:
    """Batches this run gave up on after max_attempts: no thread of the run claims them again."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._lock = threading.Lock()

    def add(self, batch_id: int) -> None:
        with self._lock:
            self._ids.add(batch_id)

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._ids)

    def __contains__(self, batch_id: int) -> bool:
        with self._lock:
            return batch_id in self._ids


def claim_batch(
    session: Session, issue_id: int, name: str, *, lease: timedelta, on_postgres: bool, aside: SetAside
) -> Claimed | None:
    """Claim the issue's next batch that is pending or whose claim lapsed, for the holder `name`."""
    now = utcnow()
    reclaimable = or_(
        Batch.status == BatchStatus.PENDING,
        and_(Batch.status == BatchStatus.CLAIMED, lapsed(Batch.claimed_at, now - lease)),
    )
    session.connection()  # begin first (on SQLite: take the write lock), then read the set-aside list
    excluded = aside.ids()
    q = select(Batch).where(Batch.issue_id == issue_id, reclaimable).order_by(Batch.batch_no).limit(1)
    if excluded:
        q = q.where(Batch.id.notin_(excluded))
    batch = session.scalar(skip_locked(q, on_postgres))
    if batch is not None and batch.id in aside:  # set aside while we looked
        return None
    if batch is None:
        batch = _of_a_dead_process(session, issue_id, on_postgres)
        if batch is None:
            return None
    if batch.claimed_by and batch.status == BatchStatus.CLAIMED:
        log.info("batch %s: taking over the claim of %s", batch.batch_no, batch.claimed_by)
    batch.status = BatchStatus.CLAIMED
    batch.claimed_by = name
    batch.claimed_at = now
    return Claimed(batch.id, batch.batch_no, batch.generation)


def _of_a_dead_process(session: Session, issue_id: int, on_postgres: bool) -> Batch | None:
    """Claims of dead local processes (kill -9) are taken over without waiting for the lease."""
    q = (
        select(Batch)
        .where(Batch.issue_id == issue_id, Batch.status == BatchStatus.CLAIMED)
        .order_by(Batch.batch_no)
        .limit(200)
    )
    return next((b for b in session.scalars(skip_locked(q, on_postgres)) if holder_gone(b.claimed_by)), None)


def _held(batch_id: int, name: str) -> ColumnElement[bool]:
    """The batch, if `name` still holds its claim (a claim taken over is not touched)."""
    return and_(Batch.id == batch_id, Batch.claimed_by == name, Batch.status == BatchStatus.CLAIMED)


def release(rt: Runtime, batch: Claimed, name: str) -> None:
    """Give the claim back at once (stop, auth error): the next run resumes it with the same key."""
    with rt.sessions.begin() as session:
        session.execute(update(Batch).where(_held(batch.id, name)).values(claimed_at=None))


def set_pending(rt: Runtime, batch: Claimed, name: str, error: str | None = None) -> None:
    """Back to pending with its key and attempts: the next run sends the same payload again."""
    values: dict[str, object] = {"status": BatchStatus.PENDING, "claimed_by": None, "claimed_at": None}
    if error:
        values["last_error"] = error[:2000]
    with rt.sessions.begin() as session:
        session.execute(update(Batch).where(_held(batch.id, name)).values(**values))


def renew(rt: Runtime, held: Iterable[tuple[Claimed, str]]) -> None:
    """Keep claims alive (batches parked for their retry): each (batch, holder) still held."""
    with rt.sessions.begin() as session:
        for batch, name in held:
            session.execute(update(Batch).where(_held(batch.id, name)).values(claimed_at=utcnow()))
