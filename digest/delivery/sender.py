"""Claim whole batches and send them: crash-safe, exactly once per subscriber.

A batch's `attempts` is committed *before* the transport is called. From then on
its members are frozen, and any later attempt (a retry, or another process after
a crash) sends the same payload under the same idempotency key, so the provider
deduplicates it. Until that first commit, readers who left since enqueueing are
dropped; the drop and the freeze happen in one transaction, right before sending.

A claim is a lease: `claimed_by` names the process and thread, `claimed_at` is
renewed at each attempt and while waiting. A claim whose lease ran out, or whose
process on this host is gone (kill -9), is taken over; a worker that finds its
claim taken over walks away from the batch. Provider keys live 24 hours, so an
unfinished batch first attempted longer ago than that is failed, not resent blindly.
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
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.transports.base import SendResult, TransientError, Transport
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
from digest.weeks import as_utc, utcnow
from subscribers.tokens import Tokens

log = logging.getLogger("digest.sender")

LEASE_SECONDS = 120
HEARTBEAT_SECONDS = 30
KEY_TTL = timedelta(hours=23)  # Resend keeps idempotency keys 24 h; an hour of margin
MAX_BACKOFF = 60.0
MAX_RATE_LIMITED = 50  # 429s per batch before it is failed (they are not counted as attempts)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_dead(holder: str | None) -> bool:
    """A claim held by a process on this host that no longer exists can be taken over at once."""
    parts = (holder or "").split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
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
    generation: int


@dataclass
class SendSummary:
    """Counts of one run; threads of one process add to it under its lock."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    batches: int = 0
    failed_batches: int = 0
    retries: int = 0
    stopped: str | None = None
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, sent: int = 0, failed: int = 0, batches: int = 0, failed_batches: int = 0,
            retries: int = 0, error: str | None = None) -> None:
        with self._lock:
            self.sent += sent
            self.failed += failed
            self.batches += batches
            self.failed_batches += failed_batches
            self.retries += retries
            if error:
                self.errors.append(error)

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stopped = self.stopped or reason


@dataclass
class _Attempt:
    outcome: str  # go | lost | empty | expired
    queued: set[int] | None = None  # first attempt: who is still on the list
    failed: int = 0
    reason: str | None = None


def make_limiter(rt: Runtime, transport: Transport) -> RateLimiter | None:
    """The Resend request budget is shared by all workers; the outbox and SMTP are not rate limited."""
    if getattr(transport, "name", "") != "resend":
        return None
    return RateLimiter(rt.engine, "resend", rt.settings.resend.requests_per_second)


class Sender:
    def __init__(self, rt: Runtime, transport: Transport, *, worker: str | None = None,
                 max_attempts: int | None = None, lease_seconds: int = LEASE_SECONDS,
                 limiter: RateLimiter | None | str = "auto", concurrency: int | None = None,
                 backoff_base: float = 1.0,
                 on_batch: Callable[[SendSummary], None] | None = None):
        self.rt = rt
        self.transport = transport
        self.worker = worker or worker_name()
        self.max_attempts = max_attempts or rt.settings.resend.max_attempts
        self.lease = timedelta(seconds=lease_seconds)
        self.limiter = make_limiter(rt, transport) if limiter == "auto" else limiter
        self.concurrency = max(1, concurrency or int(getattr(transport, "max_in_flight", 1) or 1))
        self.backoff_base = backoff_base
        self.on_batch = on_batch
        self.tokens = Tokens(rt.secret_key)
        self._messages: dict[int, IssueMessages] = {}
        self._messages_lock = threading.Lock()

    # -- claiming -------------------------------------------------------------------------

    def _claim(self, session: Session, issue_id: int, name: str) -> Claimed | None:
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
            batch = next((b for b in session.scalars(stale_q) if _pid_dead(b.claimed_by)), None)
            if batch is None:
                return None
        if batch.claimed_by and batch.status == BATCH_CLAIMED:
            log.info("batch %s: taking over the claim of %s", batch.batch_no, batch.claimed_by)
        batch.status = BATCH_CLAIMED
        batch.claimed_by = name
        batch.claimed_at = now
        return Claimed(batch.id, batch.batch_no, batch.generation)

    def claim(self, issue_id: int, name: str | None = None) -> Claimed | None:
        with self.rt.sessions.begin() as session:
            return self._claim(session, issue_id, name or f"{self.worker}:0")

    def _drop_departed(self, session: Session, issue_id: int, batch_no: int) -> int:
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
        return int(result.rowcount or 0)

    # -- one batch ------------------------------------------------------------------------

    def messages_for(self, issue_id: int) -> IssueMessages:
        with self._messages_lock:
            if issue_id not in self._messages:
                with self.rt.sessions() as session:
                    issue = session.get(Issue, issue_id)
                    assert issue is not None
                    self._messages[issue_id] = IssueMessages(self.rt.settings, self.tokens, issue,
                                                             json_bodies=self.transport.name == "resend")
            return self._messages[issue_id]

    def _recipients(self, issue_id: int, batch_no: int) -> list[Recipient]:
        with self.rt.sessions() as session:
            rows = session.execute(
                select(Delivery.id, Delivery.subscriber_id, Delivery.email, Subscriber.name)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id, isouter=True)
                .where(Delivery.issue_id == issue_id, Delivery.batch_no == batch_no,
                       Delivery.status == DELIVERY_QUEUED)
                .order_by(Delivery.id)
            ).all()
        return [Recipient(did, sid or 0, email, name) for did, sid, email, name in rows]

    def _start_attempt(self, issue_id: int, batch: Claimed, name: str) -> _Attempt:
        """Commit the attempt before calling out: from here the payload is frozen."""
        with self.rt.sessions.begin() as session:
            q = select(Batch).where(Batch.id == batch.id)
            if self.rt.on_postgres:
                q = q.with_for_update()
            row = session.scalar(q)
            if row is None or row.status != BATCH_CLAIMED or row.claimed_by != name:
                return _Attempt("lost")
            now = utcnow()
            if row.attempts > 0 and row.first_attempt_at is not None and as_utc(row.first_attempt_at) < now - KEY_TTL:
                reason = (f"first attempted {as_utc(row.first_attempt_at):%Y-%m-%d %H:%M} UTC and never confirmed; the "
                          f"provider's idempotency key has expired, so it is not resent blindly (`digest send "
                          f"--retry-failed` sends it again)")
                failed = self._fail_rows(session, issue_id, row, reason)
                return _Attempt("expired", failed=failed, reason=reason)
            queued = None
            if row.attempts == 0:
                self._drop_departed(session, issue_id, batch.batch_no)
                queued = set(session.scalars(select(Delivery.id).where(
                    Delivery.issue_id == issue_id, Delivery.batch_no == batch.batch_no,
                    Delivery.status == DELIVERY_QUEUED)))
                if not queued:
                    row.status, row.sent_at, row.claimed_at = BATCH_SENT, now, now
                    return _Attempt("empty")
                row.first_attempt_at = now
            row.attempts += 1
            row.claimed_at = now
            return _Attempt("go", queued=queued)

    def process(self, issue_id: int, batch: Claimed, summary: SendSummary, name: str | None = None,
                stop: threading.Event | None = None) -> None:
        name = name or f"{self.worker}:0"
        stop = stop or threading.Event()
        msgs = self.messages_for(issue_id)
        recipients = self._recipients(issue_id, batch.batch_no)
        emails = {r.delivery_id: msgs.build(r) for r in recipients}
        key = idempotency_key(msgs.week, batch.batch_no, batch.generation)
        failures = rate_limited = 0
        delay = self.backoff_base
        while True:
            attempt = self._start_attempt(issue_id, batch, name)
            if attempt.outcome == "lost":
                log.warning("batch %s: claim taken over by another worker; leaving it to them", batch.batch_no)
                return
            if attempt.outcome == "empty":
                summary.add(batches=1)
                return
            if attempt.outcome == "expired":
                summary.add(failed=attempt.failed, failed_batches=1, error=f"batch {batch.batch_no}: {attempt.reason}")
                return
            if attempt.queued is not None:
                recipients = [r for r in recipients if r.delivery_id in attempt.queued]
            payload = [emails[r.delivery_id] for r in recipients]
            # Everything else is done: the request leaves right at its slot, so arrivals keep the spacing.
            if self.limiter is not None and not self.limiter.acquire(stop):
                self._release(batch, name)
                return
            try:
                results = self.transport.send_batch(payload, key, msgs.week)
            except ProviderAuthError:
                self._release(batch, name)
                raise
            except TransientError as exc:
                if exc.rate_limited:
                    rate_limited += 1
                    if self.limiter is not None and exc.retry_after:
                        self.limiter.hold_off(exc.retry_after)
                else:
                    failures += 1
                if failures >= self.max_attempts or rate_limited >= MAX_RATE_LIMITED:
                    self._give_up(issue_id, batch, recipients, f"gave up after {failures + rate_limited} "
                                  f"attempt(s): {exc}", summary)
                    return
                if exc.rate_limited and self.limiter is not None:
                    wait = 0.0  # hold_off made every worker's next slot wait for it
                elif exc.retry_after is not None:
                    wait = exc.retry_after
                else:
                    wait = delay * (0.5 + random.random())
                    delay = min(delay * 2, MAX_BACKOFF)
                summary.add(retries=1)
                log.warning("batch %s: %s; retrying in %.1fs", batch.batch_no, exc, wait)
                if self._wait(wait, stop, batch, name):
                    self._release(batch, name)
                    return
                continue
            if len(results) != len(recipients):
                raise RuntimeError(f"transport {self.transport.name} answered {len(results)} results "
                                   f"for {len(recipients)} emails")
            later = [r for r, res in zip(recipients, results) if res.retry]
            self._record(batch, [(r, res) for r, res in zip(recipients, results) if not res.retry],
                         summary, finished=not later)
            if not later:
                return
            # Part of the batch went out (SMTP); the rest is retried on its own.
            recipients = later
            failures += 1
            reason = next(res.error for res in results if res.retry)
            if failures >= self.max_attempts:
                self._give_up(issue_id, batch, recipients, f"gave up after {failures} attempt(s): {reason}", summary)
                return
            summary.add(retries=1)
            if self._wait(delay * (0.5 + random.random()), stop, batch, name):
                self._release(batch, name)
                return
            delay = min(delay * 2, MAX_BACKOFF)

    # -- recording ------------------------------------------------------------------------

    def _record(self, batch: Claimed, results: list[tuple[Recipient, SendResult]], summary: SendSummary,
                *, finished: bool) -> None:
        """Store the provider's answer; `finished` closes the batch (nothing of it is left to retry)."""
        now = utcnow()
        sent = [{"id": r.delivery_id, "status": DELIVERY_SENT, "provider_id": res.provider_id, "sent_at": now,
                 "error": None} for r, res in results if res.ok]
        failed = [{"id": r.delivery_id, "status": DELIVERY_FAILED, "error": (res.error or "rejected")[:2000]}
                  for r, res in results if not res.ok]
        with self.rt.sessions.begin() as session:
            for rows in (sent, failed):
                if rows:
                    session.execute(update(Delivery), rows)
            if finished:
                row = session.get(Batch, batch.id)
                assert row is not None
                row.status, row.sent_at = BATCH_SENT, now
                row.last_error = f"{len(failed)} email(s) rejected" if failed else None
        summary.add(sent=len(sent), failed=len(failed), batches=1 if finished else 0)

    def _wait(self, seconds: float, stop: threading.Event, batch: Claimed, name: str) -> bool:
        """Sleep, renewing the lease; True when asked to stop meanwhile."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return stop.is_set()
            if stop.wait(min(left, HEARTBEAT_SECONDS)):
                return True
            with self.rt.sessions.begin() as session:
                session.execute(update(Batch).where(Batch.id == batch.id, Batch.claimed_by == name,
                                                    Batch.status == BATCH_CLAIMED).values(claimed_at=utcnow()))

    def _release(self, batch: Claimed, name: str) -> None:
        """Give the claim back at once (stop, auth error): the next run resumes it with the same key."""
        with self.rt.sessions.begin() as session:
            session.execute(update(Batch).where(Batch.id == batch.id, Batch.claimed_by == name,
                                                Batch.status == BATCH_CLAIMED).values(claimed_at=None))

    def _fail_rows(self, session: Session, issue_id: int, row: Batch, reason: str) -> int:
        row.status, row.last_error = BATCH_FAILED, reason
        result = session.execute(
            update(Delivery).where(Delivery.issue_id == issue_id, Delivery.batch_no == row.batch_no,
                                   Delivery.status == DELIVERY_QUEUED)
            .values(status=DELIVERY_FAILED, error=reason[:2000]).execution_options(synchronize_session=False))
        return int(result.rowcount or 0)

    def _give_up(self, issue_id: int, batch: Claimed, recipients: list[Recipient], reason: str,
                 summary: SendSummary) -> None:
        with self.rt.sessions.begin() as session:
            row = session.get(Batch, batch.id)
            assert row is not None
            failed = self._fail_rows(session, issue_id, row, reason)
        log.error("batch %s: %s", batch.batch_no, reason)
        summary.add(failed=failed, failed_batches=1, error=f"batch {batch.batch_no}: {reason}")

    # -- the loop -------------------------------------------------------------------------

    def _loop(self, issue_id: int, slot: int, stop: threading.Event, summary: SendSummary,
              crashed: list[BaseException]) -> None:
        name = f"{self.worker}:{slot}"
        try:
            while not stop.is_set():
                batch = self.claim(issue_id, name)
                if batch is None:
                    return
                self.process(issue_id, batch, summary, name, stop)
                if self.on_batch:
                    self.on_batch(summary)
        except ProviderAuthError as exc:
            summary.stop(str(exc))
            stop.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            crashed.append(exc)
            stop.set()

    def run(self, issue_id: int, stop: threading.Event | None = None) -> SendSummary:
        """Send until no batch is left to claim (or `stop` is set); `concurrency` batches in flight."""
        own_stop = stop is None
        stop = stop or threading.Event()
        summary = SendSummary()
        crashed: list[BaseException] = []
        if self.concurrency == 1:
            self._loop(issue_id, 0, stop, summary, crashed)
        else:
            threads = [threading.Thread(target=self._loop, args=(issue_id, i, stop, summary, crashed),
                                        name=f"sender-{i}", daemon=True) for i in range(self.concurrency)]
            for t in threads:
                t.start()
            try:
                for t in threads:
                    while t.is_alive():
                        t.join(0.5)
            except KeyboardInterrupt:
                stop.set()
                for t in threads:
                    t.join()
                raise
        if crashed:
            raise crashed[0]
        if stop.is_set() and not summary.stopped and not own_stop:
            summary.stopped = "stopped on request"
        with self.rt.sessions() as session:
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
