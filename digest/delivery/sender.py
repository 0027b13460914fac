"""Claim whole batches and send them: crash-safe, exactly once per subscriber.

A batch's `attempts` is committed *before* the transport is called. From then on
its members are frozen, and any later attempt (a retry, or another process after
a crash) sends the same payload under the same idempotency key, so the provider
deduplicates it. Batches never attempted still drop readers who left meanwhile.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from digest.delivery.messages import IssueMessages, Recipient
from digest.delivery.transports.base import TransientError, Transport
from digest.errors import ProviderAuthError
from digest.runtime import Runtime
from digest.storage.models import (
    BATCH_CLAIMED,
    BATCH_FAILED,
    BATCH_PENDING,
    BATCH_SENT,
    DELIVERY_DROPPED,
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    DELIVERY_SENT,
    ISSUE_SENDING,
    ISSUE_SENT,
    SUB_ACTIVE,
    Batch,
    Delivery,
    Issue,
    Subscriber,
)
from subscribers.tokens import Tokens
from digest.weeks import utcnow

log = logging.getLogger("digest.sender")

LEASE_SECONDS = 120


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_dead(holder: str | None) -> bool:
    """A claim held by a process on this host that no longer exists can be taken over at once."""
    if not holder or ":" not in holder:
        return False
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def idempotency_key(week: str, batch_no: int, generation: int) -> str:
    """Same (issue, batch) -> same key; `--retry-failed` bumps the generation for a deliberate resend."""
    return f"digest-{week}-b{batch_no}" + (f"-g{generation}" if generation else "")


@dataclass
class Claimed:
    id: int
    batch_no: int
    attempts: int
    generation: int


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    batches: int = 0
    failed_batches: int = 0
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)


class Sender:
    def __init__(self, rt: Runtime, transport: Transport, *, worker: str | None = None,
                 max_attempts: int | None = None, lease_seconds: int = LEASE_SECONDS,
                 before_request: Callable[[], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_batch: Callable[[SendSummary], None] | None = None):
        self.rt = rt
        self.transport = transport
        self.worker = worker or worker_name()
        self.max_attempts = max_attempts or rt.settings.resend.max_attempts
        self.lease = timedelta(seconds=lease_seconds)
        self.before_request = before_request or (lambda: None)
        self.sleep = sleep
        self.on_batch = on_batch
        self.tokens = Tokens(rt.secret_key)
        self._messages: dict[int, IssueMessages] = {}

    # -- claiming -------------------------------------------------------------------------

    def _claim(self, session: Session, issue_id: int) -> Claimed | None:
        now = utcnow()
        reclaimable = or_(
            Batch.status == BATCH_PENDING,
            and_(Batch.status == BATCH_CLAIMED, or_(Batch.claimed_at.is_(None), Batch.claimed_at < now - self.lease)),
        )
        q = select(Batch).where(Batch.issue_id == issue_id, reclaimable).order_by(Batch.batch_no).limit(1)
        if self.rt.on_postgres:
            q = q.with_for_update(skip_locked=True)
        batch = session.scalar(q)
        if batch is None:
            # Claims of dead local processes (kill -9) are taken over without waiting for the lease.
            stale_q = (select(Batch).where(Batch.issue_id == issue_id, Batch.status == BATCH_CLAIMED)
                       .order_by(Batch.batch_no).limit(200))
            if self.rt.on_postgres:
                stale_q = stale_q.with_for_update(skip_locked=True)
            stale = session.scalars(stale_q).all()
            batch = next((b for b in stale if _pid_dead(b.claimed_by)), None)
            if batch is None:
                return None
        if batch.attempts == 0:
            self._drop_departed(session, issue_id, batch.batch_no)
        batch.status = BATCH_CLAIMED
        batch.claimed_by = self.worker
        batch.claimed_at = now
        return Claimed(batch.id, batch.batch_no, batch.attempts, batch.generation)

    def _drop_departed(self, session: Session, issue_id: int, batch_no: int) -> None:
        """Invariant 3: whoever left since enqueueing is not mailed."""
        still_active = exists().where(Subscriber.id == Delivery.subscriber_id, Subscriber.status == SUB_ACTIVE)
        result = session.execute(
            update(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.batch_no == batch_no,
                   Delivery.status == DELIVERY_QUEUED, ~still_active)
            .values(status=DELIVERY_DROPPED, error="left the list before sending")
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:
            log.info("batch %s: dropped %s reader(s) who left after enqueueing", batch_no, result.rowcount)

    def claim(self, issue_id: int) -> Claimed | None:
        with self.rt.sessions.begin() as session:
            return self._claim(session, issue_id)

    # -- sending --------------------------------------------------------------------------

    def messages_for(self, session: Session, issue_id: int) -> IssueMessages:
        if issue_id not in self._messages:
            issue = session.get(Issue, issue_id)
            assert issue is not None
            self._messages[issue_id] = IssueMessages(self.rt.settings, self.tokens, issue)
        return self._messages[issue_id]

    def _recipients(self, session: Session, issue_id: int, batch_no: int) -> list[Recipient]:
        rows = session.execute(
            select(Delivery.id, Delivery.subscriber_id, Delivery.email, Subscriber.name)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id, isouter=True)
            .where(Delivery.issue_id == issue_id, Delivery.batch_no == batch_no,
                   Delivery.status == DELIVERY_QUEUED)
            .order_by(Delivery.id)
        ).all()
        return [Recipient(did, sid or 0, email, name) for did, sid, email, name in rows]

    def _start_attempt(self, batch: Claimed) -> int:
        """Commit the attempt before calling out: from here the payload is frozen."""
        with self.rt.sessions.begin() as session:
            row = session.get(Batch, batch.id)
            assert row is not None
            row.attempts += 1
            row.claimed_at = utcnow()
            row.claimed_by = self.worker
            return row.attempts

    def process(self, issue_id: int, batch: Claimed, summary: SendSummary) -> None:
        with self.rt.sessions() as session:
            msgs = self.messages_for(session, issue_id)
            recipients = self._recipients(session, issue_id, batch.batch_no)
        if not recipients:
            self._finish(batch, BATCH_SENT, None)
            summary.batches += 1
            return
        emails = [msgs.build(r) for r in recipients]
        key = idempotency_key(msgs.week, batch.batch_no, batch.generation)
        delay = 1.0
        while True:
            attempt = self._start_attempt(batch)
            self.before_request()
            try:
                results = self.transport.send_batch(emails, key, msgs.week)
            except ProviderAuthError:
                self._release(batch)
                raise
            except TransientError as exc:
                if attempt >= self.max_attempts:
                    reason = f"gave up after {attempt} attempts: {exc}"
                    self._finish(batch, BATCH_FAILED, reason, recipients=recipients)
                    summary.failed += len(recipients)
                    summary.failed_batches += 1
                    summary.errors.append(f"batch {batch.batch_no}: {reason}")
                    return
                wait = exc.retry_after if exc.retry_after is not None else delay * (0.5 + random.random())
                log.warning("batch %s attempt %s: %s; retrying in %.1fs", batch.batch_no, attempt, exc, wait)
                self.sleep(max(0.0, wait))
                delay = min(delay * 2, 60.0)
                continue
            self._record(batch, recipients, results, summary)
            return

    def _record(self, batch: Claimed, recipients: list[Recipient], results: list, summary: SendSummary) -> None:
        now = utcnow()
        rows = []
        for r, res in zip(recipients, results):
            if res.ok:
                rows.append({"id": r.delivery_id, "status": DELIVERY_SENT, "provider_id": res.provider_id,
                             "sent_at": now, "error": None})
                summary.sent += 1
            else:
                rows.append({"id": r.delivery_id, "status": DELIVERY_FAILED, "error": res.error})
                summary.failed += 1
        with self.rt.sessions.begin() as session:
            if rows:
                session.execute(update(Delivery), rows)
            b = session.get(Batch, batch.id)
            assert b is not None
            b.status, b.sent_at, b.last_error = BATCH_SENT, now, None
        summary.batches += 1

    def _finish(self, batch: Claimed, status: str, reason: str | None, recipients: list[Recipient] = ()) -> None:  # type: ignore[assignment]
        with self.rt.sessions.begin() as session:
            b = session.get(Batch, batch.id)
            assert b is not None
            b.status, b.last_error = status, reason
            if status == BATCH_SENT:
                b.sent_at = utcnow()
            if recipients and status == BATCH_FAILED:
                session.execute(update(Delivery), [{"id": r.delivery_id, "status": DELIVERY_FAILED, "error": reason}
                                                   for r in recipients])

    def _release(self, batch: Claimed) -> None:
        with self.rt.sessions.begin() as session:
            b = session.get(Batch, batch.id)
            if b is not None and b.status == BATCH_CLAIMED:
                b.claimed_at = None  # reclaimable at once by the next run

    # -- the loop -------------------------------------------------------------------------

    def run(self, issue_id: int, stop: threading.Event | None = None) -> SendSummary:
        """Send until no batch is left to claim (or `stop` is set between batches)."""
        summary = SendSummary()
        while not (stop and stop.is_set()):
            batch = self.claim(issue_id)
            if batch is None:
                break
            try:
                self.process(issue_id, batch, summary)
            except ProviderAuthError as exc:
                summary.stopped = str(exc)
                break
            if self.on_batch:
                self.on_batch(summary)
        if stop and stop.is_set():
            summary.stopped = summary.stopped or "stopped on request"
        with self.rt.sessions.begin() as session:
            summary.dropped = session.scalar(
                select(func.count()).select_from(Delivery)
                .where(Delivery.issue_id == issue_id, Delivery.status == DELIVERY_DROPPED)
            ) or 0
        mark_sent_if_done(self.rt, issue_id)
        return summary


def mark_sent_if_done(rt: Runtime, issue_id: int) -> bool:
    with rt.sessions.begin() as session:
        open_batches = exists().where(Batch.issue_id == issue_id, Batch.status.in_([BATCH_PENDING, BATCH_CLAIMED]))
        res = session.execute(
            update(Issue).where(Issue.id == issue_id, Issue.status == ISSUE_SENDING, ~open_batches)
            .values(status=ISSUE_SENT, sent_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(res.rowcount)
