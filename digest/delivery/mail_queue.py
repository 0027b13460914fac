"""Confirmation and welcome mail: queued inside the request, sent by a drainer within seconds.

A sign-up only inserts an `outgoing_mail` row in its own transaction, so the answer never
waits for rendering or the provider. The drainer (digest.delivery.drainer: its own process
beside every web process, or the CLI after an import) claims rows with a lease
(`claimed_until`, digest.delivery.leases: the issue sender's lease and backoff), renders them
(digest.delivery.mail_builder) and hands them to the configured transport. A row is rendered
when its turn comes, so a confirmation for someone who confirmed or left meanwhile is skipped.
Several drainers (uvicorn workers, a CLI import) never take the same row at once; a drainer
that dies mid-send leaves its rows to the next one after the lease. The outbox writes each
row's file once; with Resend the key covers the rows and the payload, so a re-send of the
same rendering is deduplicated, while a re-rendered one (a new confirm-token timestamp) may
arrive twice: for a one-off confirmation a rare second copy beats a lost one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from digest.delivery.leases import LEASE, backoff, lapsed, skip_locked
from digest.delivery.mail_builder import MailBuilder
from digest.delivery.ratelimit import RateLimiter, make_limiter
from digest.delivery.transports import capabilities_of, make_transport
from digest.delivery.transports.base import SendResult, TransientError, Transport
from digest.errors import ProviderAuthError, UserError
from digest.mail import OutgoingEmail
from digest.runtime import Runtime
from digest.storage.models import MailStatus, OutgoingMail, Subscriber, SubscriberStatus
from digest.weeks import utcnow

KINDS = ("confirm", "welcome")
MAX_ATTEMPTS = 8
RETRY_FIRST, RETRY_CEILING = 30.0, 3600.0  # seconds: 30 s, 1 min, 2 min ... 1 h between a row's attempts
BATCH = 50
FOLDER = "transactional"

ClaimedRow = tuple[int, str, int, Subscriber | None]  # id, kind, attempts so far, the subscriber (None: erased)
ToSend = tuple[int, int, OutgoingEmail]  # id, attempts so far, the email
Row = dict[str, object]  # the columns a row's outcome sets


def queue_mail(session: Session, kind: str, subscriber_id: int, now: datetime | None = None) -> None:
    """Add one mail to the queue in the caller's transaction (cheap: one insert)."""
    assert kind in KINDS
    session.execute(
        insert(OutgoingMail).values(
            kind=kind, subscriber_id=subscriber_id, status=MailStatus.QUEUED, attempts=0, created_at=now or utcnow()
        )
    )


@dataclass
class DrainResult:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    deferred: int = 0  # transient transport trouble: retried after a back-off
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.skipped + self.failed + self.deferred

    def add(self, step: DrainResult) -> None:
        self.sent += step.sent
        self.skipped += step.skipped
        self.failed += step.failed
        self.deferred += step.deferred
        self.errors += step.errors


def _wanted(kind: str, status: str) -> bool:
    return (kind == "confirm" and status == SubscriberStatus.PENDING) or (
        kind == "welcome" and status == SubscriberStatus.ACTIVE
    )


def _claim(rt: Runtime, limit: int) -> list[ClaimedRow]:
    """Take up to `limit` due rows (never claimed, or their lease over) under a new lease."""
    now = utcnow()
    with rt.sessions.begin() as session:
        q = (
            select(OutgoingMail.id)
            .where(OutgoingMail.status == MailStatus.QUEUED, lapsed(OutgoingMail.claimed_until, now))
            .order_by(OutgoingMail.id)
            .limit(limit)
        )
        ids = list(session.scalars(skip_locked(q, rt.on_postgres)))
        if not ids:
            return []
        session.execute(
            update(OutgoingMail)
            .where(OutgoingMail.id.in_(ids))
            .values(claimed_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        rows = session.execute(
            select(OutgoingMail.id, OutgoingMail.kind, OutgoingMail.attempts, Subscriber)
            .join(Subscriber, Subscriber.id == OutgoingMail.subscriber_id, isouter=True)
            .where(OutgoingMail.id.in_(ids))
            .order_by(OutgoingMail.id)
        ).all()
        session.expunge_all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]


def _finish(rt: Runtime, rows: list[Row]) -> None:
    if rows:
        with rt.sessions.begin() as session:
            session.execute(update(OutgoingMail), rows)


def drain_batch(
    rt: Runtime, transport: Transport, builder: MailBuilder, limit: int = BATCH, limiter: RateLimiter | None = None
) -> DrainResult:
    """Claim up to `limit` due rows and send them in one transport call.

    `limiter` is the provider's request budget shared with the issue senders (Resend), so
    confirmations never push the account over its rate limit.
    """
    result = DrainResult()
    # One transport call takes one slot of the shared rate: never more emails than the transport takes at once.
    claimed = _claim(rt, min(limit, capabilities_of(transport).max_batch))
    if not claimed:
        return result
    now = utcnow()
    done, to_send = _build(claimed, builder, now, result)
    if to_send:
        try:
            done += _send(transport, to_send, limiter, now, result)
        except ProviderAuthError as exc:
            # Nothing was sent; give the rows back for after the operator fixes the key.
            done.extend(
                {"id": mail_id, "claimed_until": now + timedelta(minutes=1), "error": str(exc)}
                for mail_id, _, _ in to_send
            )
            _finish(rt, done)
            raise
    _finish(rt, done)
    return result


def _build(
    claimed: list[ClaimedRow], builder: MailBuilder, now: datetime, result: DrainResult
) -> tuple[list[Row], list[ToSend]]:
    """The emails of the rows still wanted; the outcome of the others (skipped, or a template error)."""
    done: list[Row] = []
    to_send: list[ToSend] = []
    for mail_id, kind, attempts, sub in claimed:
        if sub is None or not _wanted(kind, sub.status):
            done.append(
                {
                    "id": mail_id,
                    "status": MailStatus.SKIPPED,
                    "sent_at": now,
                    "claimed_until": None,
                    "error": "no longer wanted (confirmed, left or erased before its turn)",
                }
            )
            result.skipped += 1
            continue
        try:
            to_send.append((mail_id, attempts, builder.build(mail_id, kind, sub)))
        except UserError as exc:  # a broken operator template: retried, so fixing it lets the mail go out
            result.errors.append(str(exc))
            done.append(_retry_or_fail(mail_id, attempts, str(exc), now, result))
    return done, to_send


def _send(
    transport: Transport, to_send: list[ToSend], limiter: RateLimiter | None, now: datetime, result: DrainResult
) -> list[Row]:
    """One transport call for the emails; each row's outcome (sent, failed, or retried later)."""
    key = _batch_key(to_send)
    try:
        if limiter is not None:
            limiter.acquire()
        results = transport.send_batch([m for _, _, m in to_send], key, FOLDER)
    except TransientError as exc:
        if limiter is not None and exc.retry_after:
            limiter.hold_off(exc.retry_after)
        result.errors.append(str(exc))
        return [
            _retry_or_fail(mail_id, attempts, f"transport: {exc}", now, result, retry_after=exc.retry_after)
            for mail_id, attempts, _ in to_send
        ]
    return [
        _outcome(mail_id, attempts, res, now, result)
        for (mail_id, attempts, _), res in zip(to_send, results, strict=False)
    ]


def _outcome(mail_id: int, attempts: int, res: SendResult, now: datetime, result: DrainResult) -> Row:
    if res.retry:  # not sent yet (the connection broke after earlier ones): its turn comes again
        return _retry_or_fail(mail_id, attempts, res.error or "not sent yet", now, result)
    if res.ok:
        result.sent += 1
        return {
            "id": mail_id,
            "status": MailStatus.SENT,
            "sent_at": now,
            "claimed_until": None,
            "attempts": attempts + 1,
            "error": None,
            "provider_id": res.provider_id,
        }
    result.failed += 1
    return {
        "id": mail_id,
        "status": MailStatus.FAILED,
        "claimed_until": None,
        "attempts": attempts + 1,
        "error": (res.error or "rejected")[:2000],
    }


def _retry_or_fail(
    mail_id: int, attempts: int, error: str, now: datetime, result: DrainResult, retry_after: float | None = None
) -> Row:
    attempts += 1
    if attempts >= MAX_ATTEMPTS:
        result.failed += 1
        return {
            "id": mail_id,
            "status": MailStatus.FAILED,
            "attempts": attempts,
            "claimed_until": None,
            "error": f"gave up after {attempts} attempts: {error}"[:2000],
        }
    result.deferred += 1
    wait = retry_after if retry_after else backoff(attempts, RETRY_FIRST, RETRY_CEILING)
    return {"id": mail_id, "attempts": attempts, "claimed_until": now + timedelta(seconds=wait), "error": error[:2000]}


def drain(
    rt: Runtime,
    transport: Transport | None = None,
    *,
    max_rows: int | None = None,
    on_progress: Callable[[DrainResult], None] | None = None,
) -> DrainResult:
    """Send everything due now (the CLI after `add`/`import`; tests)."""
    own = transport is None
    transport = transport or make_transport(rt.config)
    builder = MailBuilder(rt)
    limiter = make_limiter(rt, transport)
    total = DrainResult()
    try:
        while max_rows is None or total.handled < max_rows:
            step = drain_batch(
                rt, transport, builder, BATCH if max_rows is None else min(BATCH, max_rows - total.handled), limiter
            )
            if not step.handled:
                break
            total.add(step)
            if on_progress:
                on_progress(total)
            if step.deferred and not (step.sent or step.skipped or step.failed):
                break  # the transport is unwell: the rest waits for its back-off
    finally:
        if own:
            transport.close()
    return total


def _batch_key(to_send: list[ToSend]) -> str:
    """Rows plus a digest of the payload: a re-send after a crash with the same rendering is
    deduplicated by the provider, and a re-rendered one (new confirm-token timestamp) gets a new
    key instead of a 409 that would lose the mail (a second copy beats no confirmation)."""
    h = hashlib.sha256()
    for mail_id, _, m in to_send:
        h.update(f"{mail_id}\0{m.to}\0{m.subject}\0".encode())
        h.update(str(m.html).encode())
        h.update(str(m.text).encode())
    return f"txn-{to_send[0][0]}-{to_send[-1][0]}-{len(to_send)}-{h.hexdigest()[:16]}"
