"""Claim whole batches and send them: crash-safe, exactly once per subscriber.

A batch's `attempts` is committed *before* the transport is called. From then on
its members are frozen, and any later attempt (a retry, or another process after
a crash) sends the same payload under the same idempotency key, so the provider
deduplicates it. Until that first commit, readers who left since enqueueing are
dropped; the drop and the freeze happen in one transaction, right before sending.

A batch that must wait for a retry is parked: its thread claims and sends another
batch meanwhile, so backoffs and 429s never idle the `concurrency` sending slots.
Transports that send message by message (SMTP) report each result as it comes, and
it is recorded at once: a crash repeats at most the message in flight.

A claim is a lease: `claimed_by` names the process and thread, `claimed_at` is
renewed at each attempt and while the batch is parked. A claim whose lease ran out, or whose
process on this host is gone (kill -9), is taken over; a worker that finds its
claim taken over walks away from the batch.

The truth about a send (invariant 6). Each provider call is a `SendAttempt` row,
written before the call and closed with its outcome: accepted, refused (nothing can
have gone out) or ambiguous (the answer was lost). A batch's key is fixed at its first
attempt and never changes while the provider keeps it (24 hours); after that it gets a
new key only if no attempt could have been accepted, otherwise it is `unconfirmed` and
waits for an operator who accepts possible duplicates. Transient failures never fail a
delivery: a batch that keeps failing goes back to pending for the next run, and a run of
failures across batches (an outage) pauses the whole send with the reason on the issue.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from digest.delivery.messages import IssueMessages, Recipient
from digest.delivery.outage import OutageWatch
from digest.delivery.ratelimit import RateLimiter, make_limiter
from digest.delivery.results import ResultWriter
from digest.delivery.transports import capabilities_of
from digest.delivery.transports.base import SendResult, TransientError, Transport
from digest.errors import ProviderAuthError
from digest.installation import installation_id, message_id_salt
from digest.links import Tokens
from digest.mail import OutgoingEmail
from digest.providers import registry
from digest.runtime import Runtime
from digest.storage.db import affected_rows
from digest.storage.models import (
    ATTEMPT_ACCEPTED,
    ATTEMPT_AMBIGUOUS,
    ATTEMPT_REFUSED,
    BATCH_CLAIMED,
    BATCH_PENDING,
    BATCH_SENT,
    BATCH_UNCONFIRMED,
    DELIVERY_DROPPED,
    DELIVERY_FAILED,
    DELIVERY_QUEUED,
    DELIVERY_SENT,
    ISSUE_SENDING,
    ISSUE_SENT,
    MAY_HAVE_BEEN_ACCEPTED,
    SUB_ACTIVE,
    Batch,
    Delivery,
    Edition,
    Issue,
    SendAttempt,
    Subscriber,
)
from digest.weeks import as_utc, utcnow

log = logging.getLogger("digest.sender")

LEASE_SECONDS = 120
HEARTBEAT_SECONDS = 30
KEY_TTL = timedelta(hours=23)  # Resend keeps idempotency keys 24 h; an hour of margin
MAX_BACKOFF = 60.0
PARKED_PER_THREAD = 8  # batches waiting for a retry per sending thread before no new one is claimed
MAX_RATE_LIMITED = 50  # 429s per batch before it waits for the next run (they are not counted as attempts)


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


def idempotency_key(installation: str, issue_id: int, week: str, batch_no: int, generation: int) -> str:
    """Unique across installations sharing one provider account (staging and production), issues and
    batches; a new generation (a new key) only when no copy can have gone out, or the operator said so."""
    return f"digest-{installation}-i{issue_id}-{week}-b{batch_no}" + (f"-g{generation}" if generation else "")


def legacy_key(week: str, batch_no: int, generation: int) -> str:
    """The key of batches first attempted before keys were stored on the batch: kept for them."""
    return f"digest-{week}-b{batch_no}" + (f"-g{generation}" if generation else "")


def may_have_been_accepted(session: Session, batch: Batch, key: str) -> bool:
    """Could any attempt under `key` have been accepted? Unrecorded (older) attempts count as yes."""
    outcomes = list(session.scalars(select(SendAttempt.outcome).where(SendAttempt.batch_id == batch.id,
                                                                        SendAttempt.idem_key == key)))
    return batch.attempts > len(outcomes) or any(o in MAY_HAVE_BEEN_ACCEPTED for o in outcomes)


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
    paused: str | None = None  # an outage paused the send: why and since when
    deferred_batches: int = 0  # kept failing this run; pending again for the next one
    unconfirmed: int = 0  # deliveries of batches that may or may not have gone out (operator decides)
    owed: int = 0  # deliveries still queued when the run ended
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, sent: int = 0, failed: int = 0, batches: int = 0, failed_batches: int = 0,
            retries: int = 0, deferred_batches: int = 0, unconfirmed: int = 0, error: str | None = None) -> None:
        with self._lock:
            self.sent += sent
            self.failed += failed
            self.batches += batches
            self.failed_batches += failed_batches
            self.retries += retries
            self.deferred_batches += deferred_batches
            self.unconfirmed += unconfirmed
            if error:
                self.errors.append(error)

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stopped = self.stopped or reason


class ClaimOutcome(StrEnum):
    """What claiming a batch for one more attempt found."""

    GO = "go"  # send it (again, under the same key)
    LOST = "lost"  # another worker holds the claim now
    EMPTY = "empty"  # nobody left to mail in it
    UNCONFIRMED = "unconfirmed"  # the key expired after an attempt that may have gone out: an operator decides


@dataclass
class _Attempt:
    outcome: ClaimOutcome
    queued: set[int] | None = None  # first attempt: who is still on the list
    failed: int = 0
    reason: str | None = None
    key: str = ""
    attempt_id: int | None = None


@dataclass
class _Work:
    """A claimed batch between its attempts: what it sends, how its retries stand."""

    issue_id: int
    batch: Claimed
    name: str  # the claim's holder; any sending thread of this process may carry on under it
    recipients: list[Recipient]
    emails: dict[int, OutgoingEmail]
    week: str
    failures: int = 0
    rate_limited: int = 0


def key_ttl(caps: registry.Capabilities) -> timedelta:
    """How long a batch may be retried under its key: the provider's key lifetime less a margin.

    A provider without keys declares 0: an attempt that may have been accepted is never
    repeated (the batch becomes `unconfirmed`); one refused outright is retried at once
    under a new key. None (keys of unknown lifetime, or per-message recording: SMTP) keeps 23 h."""
    if caps.key_lifetime_hours is None:
        return KEY_TTL
    return timedelta(hours=caps.key_lifetime_hours) * 23 / 24


class Sender:
    def __init__(self, rt: Runtime, transport: Transport, *, worker: str | None = None,
                 max_attempts: int | None = None, lease_seconds: int = LEASE_SECONDS,
                 limiter: RateLimiter | None | str = "auto", concurrency: int | None = None,
                 backoff_base: float = 1.0,
                 on_batch: Callable[[SendSummary], None] | None = None):
        self.rt = rt
        self.transport = transport
        self.worker = worker or worker_name()
        self.max_attempts = max_attempts or rt.settings.transport.max_attempts
        self.lease = timedelta(seconds=lease_seconds)
        # "auto" (the only string): the transport's own limiter.
        self.limiter: RateLimiter | None = make_limiter(rt, transport) if isinstance(limiter, str) else limiter
        if self.limiter is not None and hasattr(transport, "on_rate"):
            transport.on_rate = self.limiter.observe  # the provider's ratelimit-* headers set the pace
        self.key_ttl = key_ttl(capabilities_of(transport))
        self._per_message = capabilities_of(transport).per_message_results
        self.concurrency = max(1, concurrency or int(getattr(transport, "max_in_flight", 1) or 1))
        self.backoff_base = backoff_base
        # Transient failures in a row across this process's batches: the backoff grows with it, so a
        # provider that fails now and then (others succeed) is retried soon, one that is down less often.
        self._streak = 0
        self._streak_lock = threading.Lock()
        self.on_batch = on_batch
        self.tokens = Tokens(rt.secret_key)
        self._messages: dict[tuple[int, int | None], IssueMessages] = {}
        self._messages_lock = threading.Lock()
        self._installation: str | None = None
        # Per run: the outage watch, and batches set aside after max_attempts (not claimed again).
        self.watch = OutageWatch(rt.settings.transport.pause_after_failures)
        self._set_aside: set[int] = set()
        self._set_aside_lock = threading.Lock()

    # -- claiming -------------------------------------------------------------------------

    def _claim(self, session: Session, issue_id: int, name: str) -> Claimed | None:
        now = utcnow()
        reclaimable = or_(
            Batch.status == BATCH_PENDING,
            and_(Batch.status == BATCH_CLAIMED, or_(Batch.claimed_at.is_(None), Batch.claimed_at < now - self.lease)),
        )
        session.connection()  # begin first (on SQLite: take the write lock), then read the set-aside list
        with self._set_aside_lock:
            aside = list(self._set_aside)
        q = select(Batch).where(Batch.issue_id == issue_id, reclaimable).order_by(Batch.batch_no).limit(1)
        if aside:
            q = q.where(Batch.id.notin_(aside))
        if self.rt.on_postgres:
            q = q.with_for_update(skip_locked=True)
        batch = session.scalar(q)
        with self._set_aside_lock:
            if batch is not None and batch.id in self._set_aside:  # set aside while we looked
                return None
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
        dropped = affected_rows(result)
        if dropped:
            log.info("batch %s: dropped %s reader(s) who left after enqueueing", batch_no, dropped)
        return dropped

    # -- one batch ------------------------------------------------------------------------

    def messages_for(self, issue_id: int, edition_id: int | None = None) -> IssueMessages:
        """The issue's (or one edition's) compiled copy, split once per process."""
        with self._messages_lock:
            if (issue_id, edition_id) not in self._messages:
                with self.rt.sessions.begin() as session:  # its own transaction first (SQLite: one writer)
                    salt = message_id_salt(session, issue_id)
                with self.rt.sessions() as session:
                    issue = session.get(Issue, issue_id)
                    assert issue is not None
                    edition = session.get(Edition, edition_id) if edition_id is not None else None
                    self._messages[issue_id, edition_id] = IssueMessages(
                        self.rt.settings, self.tokens, issue, installation=salt,
                        json_bodies=capabilities_of(self.transport).json_body, edition=edition)
            return self._messages[issue_id, edition_id]

    def build_all(self, issue_id: int, recipients: list[Recipient]) -> dict[int, OutgoingEmail]:
        """Each reader's copy of their own edition."""
        return {r.delivery_id: self.messages_for(issue_id, r.edition_id).build(r) for r in recipients}

    def _recipients(self, issue_id: int, batch_no: int) -> list[Recipient]:
        with self.rt.sessions() as session:
            rows = session.execute(
                select(Delivery.id, Delivery.subscriber_id, Delivery.email, Subscriber.name, Delivery.edition_id)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id, isouter=True)
                .where(Delivery.issue_id == issue_id, Delivery.batch_no == batch_no,
                       Delivery.status == DELIVERY_QUEUED)
                .order_by(Delivery.id)
            ).all()
        return [Recipient(did, sid or 0, email, name, eid) for did, sid, email, name, eid in rows]

    def installation(self) -> str:
        if self._installation is None:
            with self.rt.sessions.begin() as session:
                self._installation = installation_id(session)
        return self._installation

    def _start_attempt(self, issue_id: int, week: str, batch: Claimed, name: str) -> _Attempt:
        """Commit the attempt (and its key) before calling out: from here the payload is frozen."""
        install = self.installation()
        with self.rt.sessions.begin() as session:
            q = select(Batch).where(Batch.id == batch.id)
            if self.rt.on_postgres:
                q = q.with_for_update()
            row = session.scalar(q)
            if row is None or row.status != BATCH_CLAIMED or row.claimed_by != name:
                return _Attempt(ClaimOutcome.LOST)
            now = utcnow()
            key = row.idem_key or legacy_key(week, row.batch_no, row.generation)
            first_at = as_utc(row.first_attempt_at) if row.first_attempt_at is not None else None
            if row.attempts > 0 and first_at is not None and first_at < now - self.key_ttl:
                if may_have_been_accepted(session, row, key):
                    return self._unconfirmed(session, issue_id, row, now)
                # Every attempt was refused: nothing went out, so a new key cannot make a second copy.
                row.generation += 1
                row.attempts, row.first_attempt_at, row.idem_key = 0, None, None
                batch.generation = row.generation
            queued = None
            if row.attempts == 0:
                self._drop_departed(session, issue_id, batch.batch_no)
                queued = set(session.scalars(select(Delivery.id).where(
                    Delivery.issue_id == issue_id, Delivery.batch_no == batch.batch_no,
                    Delivery.status == DELIVERY_QUEUED)))
                if not queued:
                    row.status, row.sent_at, row.claimed_at = BATCH_SENT, now, now
                    return _Attempt(ClaimOutcome.EMPTY)
                row.first_attempt_at = now
                row.idem_key = key = idempotency_key(install, issue_id, week, row.batch_no, row.generation)
            row.attempts += 1
            row.claimed_at = now
            attempt = SendAttempt(batch_id=row.id, idem_key=key, started_at=now)
            session.add(attempt)
            session.flush()
            return _Attempt(ClaimOutcome.GO, queued=queued, key=key, attempt_id=attempt.id)

    def _unconfirmed(self, session: Session, issue_id: int, row: Batch, now: datetime) -> _Attempt:
        """The key expired after an attempt that may have been accepted: only an operator decides."""
        first = as_utc(row.first_attempt_at) if row.first_attempt_at else now
        reason = (f"may have been delivered: first attempted {first:%Y-%m-%d %H:%M} UTC "
                  f"without a confirmed answer, and the provider's idempotency key has expired (or it has none), "
                  f"so it is not "
                  f"resent blindly (`digest send --retry-failed --accept-duplicates` resends it, possibly twice)")
        row.status, row.last_error, row.claimed_by, row.claimed_at = BATCH_UNCONFIRMED, reason, None, None
        count = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.issue_id == issue_id, Delivery.batch_no == row.batch_no, Delivery.status == DELIVERY_QUEUED))
        return _Attempt(ClaimOutcome.UNCONFIRMED, failed=int(count or 0), reason=reason)

    def _finish_attempt(self, attempt_id: int | None, outcome: str, detail: str | None) -> None:
        if attempt_id is None:
            return
        with self.rt.sessions.begin() as session:
            session.execute(update(SendAttempt).where(SendAttempt.id == attempt_id).values(
                outcome=outcome, finished_at=utcnow(), detail=(detail or None) and detail[:2000]))

    def begin(self, issue_id: int, batch: Claimed, name: str) -> _Work:
        """Everything a batch's attempts need: its readers and their emails."""
        msgs = self.messages_for(issue_id)
        recipients = self._recipients(issue_id, batch.batch_no)
        return _Work(issue_id, batch, name, recipients, self.build_all(issue_id, recipients), msgs.week)

    def attempt(self, work: _Work, summary: SendSummary, stop: threading.Event) -> float | None:
        """One attempt of a batch; returns None when done with it, else the seconds before its retry.

        The sending loop parks a batch that must wait and uses its thread for another one meanwhile.
        """
        batch, name = work.batch, work.name
        if self.watch.paused.is_set():  # another batch found the provider unreachable
            self._set_pending(batch, name)
            return None
        attempt = self._start_attempt(work.issue_id, work.week, batch, name)
        if attempt.outcome is ClaimOutcome.LOST:
            log.warning("batch %s: claim taken over by another worker; leaving it to them", batch.batch_no)
            return None
        if attempt.outcome is ClaimOutcome.EMPTY:
            summary.add(batches=1)
            return None
        if attempt.outcome is ClaimOutcome.UNCONFIRMED:
            log.error("batch %s: %s", batch.batch_no, attempt.reason)
            summary.add(unconfirmed=attempt.failed, error=f"batch {batch.batch_no}: {attempt.reason}")
            return None
        if attempt.queued is not None:
            work.recipients = [r for r in work.recipients if r.delivery_id in attempt.queued]
        recipients = work.recipients
        if not work.emails:  # parked: rebuilt, byte for byte the same (building is deterministic and cheap)
            work.emails = self.build_all(work.issue_id, recipients)
        payload = [work.emails[r.delivery_id] for r in recipients]
        self.transport.prepare(payload, attempt.key)  # the body is built before the slot: it leaves right at it
        if self.limiter is not None and not self.limiter.acquire(stop):
            self._finish_attempt(attempt.attempt_id, ATTEMPT_REFUSED, "stopped before sending")
            self._release(batch, name)
            return None
        reported: dict[int, SendResult] = {}
        writer = ResultWriter(self.rt.engine) if self._per_message else None
        try:
            if writer is not None:
                results = self.transport.send_batch(payload, attempt.key, work.week,
                                                    on_result=self._recorder(recipients, reported, summary, writer))
            else:
                results = self.transport.send_batch(payload, attempt.key, work.week)
        except ProviderAuthError as exc:
            self._finish_attempt(attempt.attempt_id, ATTEMPT_REFUSED, str(exc))
            self._release(batch, name)
            raise
        except TransientError as exc:
            self._finish_attempt(attempt.attempt_id, ATTEMPT_AMBIGUOUS if exc.ambiguous else ATTEMPT_REFUSED,
                                 str(exc))
            return self._after_transient(work, exc, summary)
        finally:
            if writer is not None:
                writer.close()
        if len(results) != len(recipients):
            raise RuntimeError(f"transport {self.transport.name} answered {len(results)} results "
                               f"for {len(recipients)} emails")
        self.watch.succeeded()
        if self.limiter is not None:
            self.limiter.succeeded()
        with self._streak_lock:
            self._streak = 0
        later = [r for r, res in zip(recipients, results) if res.retry]
        self._record(batch, [(r, res) for i, (r, res) in enumerate(zip(recipients, results))
                             if not res.retry and i not in reported], summary, finished=not later,
                     attempt_id=attempt.attempt_id, reported=list(reported.values()))
        if not later:
            return None
        # Part of the batch went out (SMTP); the rest is retried on its own.
        work.recipients = later
        work.failures += 1
        reason = next(res.error for res in results if res.retry)
        if work.failures >= self.max_attempts:
            self._set_aside_batch(batch, name, f"still owed after {work.failures} attempt(s) in this run: "
                                  f"{reason}", summary)
            return None
        summary.add(retries=1)
        return self._backoff(failed=True)

    def _after_transient(self, work: _Work, exc: TransientError, summary: SendSummary) -> float | None:
        """Count the failure and say when to retry: the provider's retry-after, else the backoff."""
        batch, name = work.batch, work.name
        if exc.rate_limited:
            work.rate_limited += 1
            if self.limiter is not None:
                self.limiter.rate_limited(exc.retry_after)
        else:
            work.failures += 1
            if self.watch.failed(exc):
                log.error("batch %s: %s; pausing the send", batch.batch_no, exc)
                self._set_pending(batch, name, str(exc))
                return None
        if work.failures >= self.max_attempts or work.rate_limited >= MAX_RATE_LIMITED:
            self._set_aside_batch(batch, name, f"still owed after {work.failures + work.rate_limited} "
                                  f"attempt(s) in this run: {exc}", summary)
            return None
        wait = exc.retry_after if exc.retry_after is not None else self._backoff(failed=not exc.rate_limited)
        summary.add(retries=1)
        log.warning("batch %s: %s; retrying in %.1fs", batch.batch_no, exc, wait)
        return wait

    def _backoff(self, *, failed: bool) -> float:
        """1 s, 2 s, 4 s ... MAX_BACKOFF (with jitter) by the failures in a row across batches."""
        with self._streak_lock:
            self._streak += 1 if failed else 0
            streak = self._streak
        return min(self.backoff_base * 2.0 ** max(0, streak - 1), MAX_BACKOFF) * (0.5 + random.random())

    def _recorder(self, recipients: list[Recipient], reported: dict[int, SendResult], summary: SendSummary,
                  writer: ResultWriter) -> Callable[[int, SendResult], None]:
        """Records each message's final result the moment the transport has it (SMTP, kill -9):
        committed before the transport sends the next message."""
        def record(index: int, result: SendResult) -> None:
            if result.retry or result.unconfirmed:
                return
            if result.ok:
                writer.sent(recipients[index].delivery_id, result.provider_id)
                summary.add(sent=1)
            else:
                writer.failed(recipients[index].delivery_id, result.error or "rejected")
                summary.add(failed=1)
            reported[index] = result
        return record

    # -- recording ------------------------------------------------------------------------

    def _record(self, batch: Claimed, results: list[tuple[Recipient, SendResult]], summary: SendSummary,
                *, finished: bool, attempt_id: int | None = None, reported: list[SendResult] | None = None) -> None:
        """Store the provider's answer; `finished` closes the batch (nothing of it is left to retry).

        `reported`: results of this attempt already recorded one by one as they came (SMTP)."""
        now = utcnow()
        sent = [{"id": r.delivery_id, "status": DELIVERY_SENT, "provider_id": res.provider_id, "sent_at": now,
                 "error": None} for r, res in results if res.ok]
        failed = [{"id": r.delivery_id, "status": DELIVERY_FAILED, "error": (res.error or "rejected")[:2000]}
                  for r, res in results if not res.ok and not res.unconfirmed]
        unconfirmed = [res.error or "unconfirmed" for _, res in results if res.unconfirmed]
        n_sent = len(sent) + sum(1 for res in reported or [] if res.ok)
        n_failed = len(failed) + sum(1 for res in reported or [] if not res.ok)
        outcome = ATTEMPT_ACCEPTED if n_sent else ATTEMPT_AMBIGUOUS if unconfirmed else ATTEMPT_REFUSED
        with self.rt.sessions.begin() as session:
            for rows in (sent, failed):
                if rows:
                    session.execute(update(Delivery), rows)
            if attempt_id is not None:
                session.execute(update(SendAttempt).where(SendAttempt.id == attempt_id).values(
                    outcome=outcome, finished_at=now,
                    detail=f"{n_sent} accepted, {n_failed} rejected, {len(unconfirmed)} unconfirmed"))
            if finished:
                row = session.get(Batch, batch.id)
                assert row is not None
                if unconfirmed:  # the deliveries stay queued: owed, and an operator decides
                    row.status, row.last_error, row.claimed_by = BATCH_UNCONFIRMED, unconfirmed[0][:2000], None
                else:
                    batch_failed = session.scalar(select(func.count()).select_from(Delivery).where(
                        Delivery.issue_id == row.issue_id, Delivery.batch_no == row.batch_no,
                        Delivery.status == DELIVERY_FAILED))
                    row.status, row.sent_at = BATCH_SENT, now
                    row.last_error = f"{batch_failed} email(s) rejected" if batch_failed else None
        summary.add(sent=len(sent), failed=len(failed), batches=1 if finished and not unconfirmed else 0,
                    unconfirmed=len(unconfirmed),
                    error=f"batch {batch.batch_no}: {unconfirmed[0]}" if unconfirmed else None)

    def _release(self, batch: Claimed, name: str) -> None:
        """Give the claim back at once (stop, auth error): the next run resumes it with the same key."""
        with self.rt.sessions.begin() as session:
            session.execute(update(Batch).where(Batch.id == batch.id, Batch.claimed_by == name,
                                                Batch.status == BATCH_CLAIMED).values(claimed_at=None))

    def _set_pending(self, batch: Claimed, name: str, error: str | None = None) -> None:
        """Back to pending with its key and attempts: the next run sends the same payload again."""
        values: dict[str, object] = {"status": BATCH_PENDING, "claimed_by": None, "claimed_at": None}
        if error:
            values["last_error"] = error[:2000]
        with self.rt.sessions.begin() as session:
            session.execute(update(Batch).where(Batch.id == batch.id, Batch.claimed_by == name,
                                                Batch.status == BATCH_CLAIMED).values(**values))

    def _set_aside_batch(self, batch: Claimed, name: str, reason: str, summary: SendSummary) -> None:
        """Transient failures never fail a delivery: the batch waits for the next run, its readers owed."""
        with self._set_aside_lock:  # before it is pending again, so no thread of this run claims it
            self._set_aside.add(batch.id)
        self._set_pending(batch, name, reason)
        log.error("batch %s: %s", batch.batch_no, reason)
        summary.add(deferred_batches=1, error=f"batch {batch.batch_no}: {reason}")

    # -- the loop -------------------------------------------------------------------------

    def _loop(self, issue_id: int, slot: int, stop: threading.Event, summary: SendSummary,
              parked: _Parked, crashed: list[BaseException]) -> None:
        """Take a parked batch whose retry is due, else claim a new one; park a batch that must wait."""
        name = f"{self.worker}:{slot}"
        try:
            while not stop.is_set() and not self.watch.paused.is_set():
                parked.renew(self._renew)
                work = parked.take_due()
                if work is None and parked.has_room():
                    batch = self.claim(issue_id, name)
                    work = self.begin(issue_id, batch, name) if batch is not None else None
                if work is None:
                    if not parked.wait_for_due(stop, self.watch.paused, self._renew):
                        return  # nothing to claim and nothing waiting: done
                    continue
                wait = self.attempt(work, summary, stop)
                if wait is not None:
                    work.emails = {}  # a parked batch holds no bodies: memory stays that of the batches in flight
                    parked.put(work, wait)
                if self.on_batch:
                    self.on_batch(summary)
        except ProviderAuthError as exc:
            summary.stop(str(exc))
            stop.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            crashed.append(exc)
            stop.set()

    def _renew(self, works: list[_Work]) -> None:
        """Keep the claims of parked batches alive while they wait for their retry."""
        with self.rt.sessions.begin() as session:
            for work in works:
                session.execute(update(Batch).where(Batch.id == work.batch.id, Batch.claimed_by == work.name,
                                                    Batch.status == BATCH_CLAIMED).values(claimed_at=utcnow()))

    def _unpark(self, parked: _Parked) -> None:
        """Stopped or paused while batches waited: the next run resumes them with the same key."""
        for work in parked.drain():
            if self.watch.paused.is_set():
                self._set_pending(work.batch, work.name)
            else:
                self._release(work.batch, work.name)

    def run(self, issue_id: int, stop: threading.Event | None = None) -> SendSummary:
        """Send until no batch is left to claim (or `stop` is set); `concurrency` batches in flight.

        A batch waiting for its retry is parked, not slept on: its thread sends another batch
        meanwhile, so backoffs never leave the provider's rate budget unused.
        """
        own_stop = stop is None
        stop = stop or threading.Event()
        summary = SendSummary()
        self.watch = OutageWatch(self.rt.settings.transport.pause_after_failures)
        with self._set_aside_lock:
            self._set_aside = set()
        crashed: list[BaseException] = []
        parked = _Parked(room=self.concurrency * PARKED_PER_THREAD)
        try:
            if self.concurrency == 1:
                self._loop(issue_id, 0, stop, summary, parked, crashed)
            else:
                threads = [threading.Thread(target=self._loop, args=(issue_id, i, stop, summary, parked, crashed),
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
        finally:
            self._unpark(parked)
        if crashed:
            raise crashed[0]
        if stop.is_set() and not summary.stopped and not own_stop:
            summary.stopped = "stopped on request"
        if self.watch.paused.is_set():
            summary.paused = self.watch.reason()
        record_pause(self.rt, issue_id, self.watch.since if summary.paused else None, summary.paused)
        with self.rt.sessions() as session:
            counts = dict(session.execute(
                select(Delivery.status, func.count()).where(Delivery.issue_id == issue_id,
                                                            Delivery.status.in_([DELIVERY_DROPPED, DELIVERY_QUEUED]))
                .group_by(Delivery.status)).all())
        summary.dropped = int(counts.get(DELIVERY_DROPPED, 0))
        summary.owed = int(counts.get(DELIVERY_QUEUED, 0))
        mark_sent_if_done(self.rt, issue_id)
        return summary


class _Parked:
    """Batches of this process waiting for their retry, soonest first; shared by its sending threads."""

    def __init__(self, room: int):
        self.room = room
        self._heap: list[tuple[float, int, _Work]] = []
        self._seq = 0
        self._renewed = time.monotonic()
        self._lock = threading.Condition()

    def put(self, work: _Work, wait: float) -> None:
        with self._lock:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, wait), self._seq, work))
            self._lock.notify_all()

    def has_room(self) -> bool:
        with self._lock:
            return len(self._heap) < self.room

    def take_due(self) -> _Work | None:
        with self._lock:
            if self._heap and self._heap[0][0] <= time.monotonic():
                return heapq.heappop(self._heap)[2]
            return None

    def wait_for_due(self, stop: threading.Event, paused: threading.Event,
                     renew: Callable[[list[_Work]], None]) -> bool:
        """Wait until the soonest parked batch is due (True), or return False at once when none is parked."""
        while not stop.is_set() and not paused.is_set():
            with self._lock:
                if not self._heap:
                    return False
                left = self._heap[0][0] - time.monotonic()
                if left <= 0:
                    return True
                self._lock.wait(min(left, 0.25))  # wakes early when a batch is parked; checks `stop`
            self.renew(renew)
        return True

    def renew(self, renew: Callable[[list[_Work]], None]) -> None:
        with self._lock:
            if time.monotonic() - self._renewed < HEARTBEAT_SECONDS or not self._heap:
                return
            self._renewed = time.monotonic()
            works = [w for _, _, w in self._heap]
        renew(works)

    def drain(self) -> list[_Work]:
        with self._lock:
            works, self._heap = [w for _, _, w in self._heap], []
            return works


def record_pause(rt: Runtime, issue_id: int, since: datetime | None, reason: str | None) -> None:
    """Say on the issue why its send is paused (stats, the preview), or clear it once it goes on."""
    with rt.sessions.begin() as session:
        q = update(Issue).where(Issue.id == issue_id)
        if reason is None:
            q = q.where(Issue.paused_at.is_not(None))
        session.execute(q.values(paused_at=since if reason else None, pause_reason=reason)
                        .execution_options(synchronize_session=False))


def mark_sent_if_done(rt: Runtime, issue_id: int) -> bool:
    with rt.sessions.begin() as session:
        # Invariant 6: a batch waiting out an outage or an operator's decision keeps the issue open.
        open_batches = exists().where(Batch.issue_id == issue_id,
                                      Batch.status.in_([BATCH_PENDING, BATCH_CLAIMED, BATCH_UNCONFIRMED]))
        res = session.execute(
            update(Issue).where(Issue.id == issue_id, Issue.status == ISSUE_SENDING, ~open_batches)
            .values(status=ISSUE_SENT, sent_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return affected_rows(res) > 0
