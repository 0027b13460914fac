"""Confirmation and welcome mail: queued inside the request, sent by a drainer within seconds.

A sign-up only inserts an `outgoing_mail` row in its own transaction, so the answer never
waits for rendering or the provider. The drainer (a thread in every web process, or the CLI
after an import) claims rows with a lease (`claimed_until`), renders them with
digest.render.transactional and hands them to the configured transport. A row is rendered
when its turn comes, so a confirmation for someone who confirmed or left meanwhile is skipped.
Several drainers (uvicorn workers, a CLI import) never take the same row at once; a drainer
that dies mid-send leaves its rows to the next one after the lease. The outbox writes each
row's file once; with Resend the key covers the rows and the payload, so a re-send of the
same rendering is deduplicated, while a re-rendered one (a new confirm-token timestamp) may
arrive twice: for a one-off confirmation a rare second copy beats a lost one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.orm import Session

from digest.delivery.ratelimit import RateLimiter, make_limiter
from digest.delivery.transports import capabilities_of, make_transport
from digest.delivery.transports.base import TransientError, Transport
from digest.errors import ProviderAuthError, UserError
from digest.links import Tokens, personal_links
from digest.mail import MessageIds, OutgoingEmail, domain_of, sender_address, unsubscribe_headers
from digest.render.transactional import render_transactional
from digest.runtime import Runtime
from digest.storage.installation import message_id_salt
from digest.storage.models import (
    MAIL_FAILED,
    MAIL_QUEUED,
    MAIL_SENT,
    MAIL_SKIPPED,
    SUB_ACTIVE,
    SUB_PENDING,
    OutgoingMail,
    Subscriber,
)
from digest.weeks import utcnow

log = logging.getLogger("subscribers.mail")

KINDS = ("confirm", "welcome")
LEASE = timedelta(minutes=2)
MAX_ATTEMPTS = 8
BATCH = 50
FOLDER = "transactional"


def queue_mail(session: Session, kind: str, subscriber_id: int, now: datetime | None = None) -> None:
    """Add one mail to the queue in the caller's transaction (cheap: one insert)."""
    assert kind in KINDS
    session.execute(insert(OutgoingMail).values(kind=kind, subscriber_id=subscriber_id, status=MAIL_QUEUED,
                                                attempts=0, created_at=now or utcnow()))


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


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(0, attempts - 1), 3600))


class MailBuilder:
    """Turns a queue row into the email a reader gets (rendered now, links signed now)."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.settings = rt.settings
        self.tokens = Tokens(rt.secret_key)
        self.from_addr = sender_address(self.settings)
        with rt.sessions.begin() as session:  # once per builder: the Message-IDs of another installation differ
            install = message_id_salt(session, None)
        self.message_ids = MessageIds(self.tokens.derived_key(MessageIds.PURPOSE),
                                      domain_of(self.settings.sender.from_email), install)

    def build(self, mail_id: int, kind: str, sub: Subscriber) -> OutgoingEmail:
        s = self.settings
        base = s.site.public_url
        person = {"email": sub.email, "name": sub.name}
        headers: dict[str, str] = {}
        if kind == "confirm":
            person["name"] = None  # unverified address: a visitor-typed name never reaches it
            token = self.tokens.confirm(sub.id, sub.email)
            context = {"subscriber": person, "confirm_url": f"{base}/confirm/{token}",
                       "expiry_days": s.subscribe.confirm_expiry_days}
        else:
            links = personal_links(s, self.tokens, sub.id, sub.email, None, None)
            context = {"subscriber": person, "unsubscribe_url": links["unsubscribe_url"],
                       "manage_url": links["manage_url"], "archive_url": f"{base}/archive"}
            headers = unsubscribe_headers(s, links["unsubscribe_url"], links["token"])
        rendered = render_transactional(self.rt.config, kind, context)
        return OutgoingEmail(to=sub.email, subject=rendered.subject, html=rendered.html, text=rendered.text,
                             from_addr=self.from_addr, reply_to=s.sender.reply_to or None, headers=headers,
                             tags={"kind": kind}, key=f"m{mail_id}",
                             message_id=self.message_ids.make("mail", kind, str(mail_id), sub.email))


def _wanted(kind: str, status: str) -> bool:
    return (kind == "confirm" and status == SUB_PENDING) or (kind == "welcome" and status == SUB_ACTIVE)


def _claim(rt: Runtime, limit: int) -> list[tuple[int, str, int, Subscriber | None]]:
    now = utcnow()
    with rt.sessions.begin() as session:
        due = or_(OutgoingMail.claimed_until.is_(None), OutgoingMail.claimed_until <= now)
        q = select(OutgoingMail.id).where(OutgoingMail.status == MAIL_QUEUED, due).order_by(OutgoingMail.id)
        q = q.limit(limit)
        if rt.on_postgres:
            q = q.with_for_update(skip_locked=True)
        ids = list(session.scalars(q))
        if not ids:
            return []
        session.execute(update(OutgoingMail).where(OutgoingMail.id.in_(ids)).values(claimed_until=now + LEASE)
                        .execution_options(synchronize_session=False))
        rows = session.execute(
            select(OutgoingMail.id, OutgoingMail.kind, OutgoingMail.attempts, Subscriber)
            .join(Subscriber, Subscriber.id == OutgoingMail.subscriber_id, isouter=True)
            .where(OutgoingMail.id.in_(ids)).order_by(OutgoingMail.id)
        ).all()
        session.expunge_all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]


def _finish(rt: Runtime, rows: list[dict[str, object]]) -> None:
    if rows:
        with rt.sessions.begin() as session:
            session.execute(update(OutgoingMail), rows)


def drain_batch(rt: Runtime, transport: Transport, builder: MailBuilder, limit: int = BATCH,
                limiter: RateLimiter | None = None) -> DrainResult:
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
    done: list[dict[str, object]] = []
    to_send: list[tuple[int, int, OutgoingEmail]] = []
    for mail_id, kind, attempts, sub in claimed:
        if sub is None or not _wanted(kind, sub.status):
            done.append({"id": mail_id, "status": MAIL_SKIPPED, "sent_at": now, "claimed_until": None,
                         "error": "no longer wanted (confirmed, left or erased before its turn)"})
            result.skipped += 1
            continue
        try:
            to_send.append((mail_id, attempts, builder.build(mail_id, kind, sub)))
        except UserError as exc:  # a broken operator template: retried, so fixing it lets the mail go out
            result.errors.append(str(exc))
            done.append(_retry_or_fail(mail_id, attempts, str(exc), now, result))
    if to_send:
        key = _batch_key(to_send)
        try:
            if limiter is not None:
                limiter.acquire()
            results = transport.send_batch([m for _, _, m in to_send], key, FOLDER)
        except TransientError as exc:
            if limiter is not None and exc.retry_after:
                limiter.hold_off(exc.retry_after)
            result.errors.append(str(exc))
            for mail_id, attempts, _ in to_send:
                done.append(_retry_or_fail(mail_id, attempts, f"transport: {exc}", now, result,
                                           retry_after=exc.retry_after))
        except ProviderAuthError as exc:
            # Nothing was sent; give the rows back for after the operator fixes the key.
            done.extend({"id": mail_id, "claimed_until": now + timedelta(minutes=1), "error": str(exc)}
                        for mail_id, _, _ in to_send)
            _finish(rt, done)
            raise
        else:
            for (mail_id, attempts, _), res in zip(to_send, results, strict=False):
                if res.retry:  # not sent yet (the connection broke after earlier ones): its turn comes again
                    done.append(_retry_or_fail(mail_id, attempts, res.error or "not sent yet", now, result))
                elif res.ok:
                    done.append({"id": mail_id, "status": MAIL_SENT, "sent_at": now, "claimed_until": None,
                                 "attempts": attempts + 1, "error": None, "provider_id": res.provider_id})
                    result.sent += 1
                else:
                    done.append({"id": mail_id, "status": MAIL_FAILED, "claimed_until": None,
                                 "attempts": attempts + 1, "error": (res.error or "rejected")[:2000]})
                    result.failed += 1
    _finish(rt, done)
    return result


def _retry_or_fail(mail_id: int, attempts: int, error: str, now: datetime, result: DrainResult,
                   retry_after: float | None = None) -> dict[str, object]:
    attempts += 1
    if attempts >= MAX_ATTEMPTS:
        result.failed += 1
        return {"id": mail_id, "status": MAIL_FAILED, "attempts": attempts, "claimed_until": None,
                "error": f"gave up after {attempts} attempts: {error}"[:2000]}
    result.deferred += 1
    wait = timedelta(seconds=retry_after) if retry_after else backoff(attempts)
    return {"id": mail_id, "attempts": attempts, "claimed_until": now + wait, "error": error[:2000]}


def drain(rt: Runtime, transport: Transport | None = None, *, max_rows: int | None = None,
          on_progress: Callable[[DrainResult], None] | None = None) -> DrainResult:
    """Send everything due now (the CLI after `add`/`import`; tests)."""
    own = transport is None
    transport = transport or make_transport(rt.config)
    builder = MailBuilder(rt)
    limiter = make_limiter(rt, transport)
    total = DrainResult()
    try:
        while max_rows is None or total.handled < max_rows:
            step = drain_batch(rt, transport, builder,
                               BATCH if max_rows is None else min(BATCH, max_rows - total.handled), limiter)
            if not step.handled:
                break
            total.sent += step.sent
            total.skipped += step.skipped
            total.failed += step.failed
            total.deferred += step.deferred
            total.errors += step.errors
            if on_progress:
                on_progress(total)
            if step.deferred and not (step.sent or step.skipped or step.failed):
                break  # the transport is unwell: the rest waits for its back-off
    finally:
        if own:
            transport.close()
    return total


class Drainer:
    """The web process's background sender: wakes on `wake()` (a sign-up in this process) or every `poll` s.

    Rendering and MIME-encoding a mail costs more CPU than a sign-up, and this thread shares
    the interpreter with the requests. So while sign-ups keep arriving (`note_request()`),
    it sends small batches with pauses, taking at most `busy_share` of the time: the queue
    still moves during a flood, and empties at full speed once the flood is over.
    """

    def __init__(self, rt: Runtime, *, poll: float = 1.0,
                 transport_factory: Callable[[], Transport] | None = None,
                 housekeeping: Callable[[], None] | None = None, housekeeping_every: float = 60.0,
                 busy_share: float = 0.05, idle_batch: int = 20):
        self.rt = rt
        self.idle_batch = idle_batch
        self.poll = poll
        self.busy_share = busy_share
        self._busy_until = 0.0
        self.transport_factory = transport_factory or (lambda: make_transport(rt.config))
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mail-drainer", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def note_request(self) -> None:
        """A sign-up is being served: yield the interpreter to requests for a moment."""
        self._busy_until = time.monotonic() + 0.25

    def busy(self) -> bool:
        return time.monotonic() < self._busy_until

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        transport: Transport | None = None
        limiter: RateLimiter | None = None
        builder: MailBuilder | None = None
        last_housekeeping = 0.0
        pause = 0.0
        while not self._stop.is_set():
            try:
                if builder is None:  # reads the signing key: a bad key is logged below, and retried
                    builder = MailBuilder(self.rt)
                if transport is None:
                    transport = self.transport_factory()
                    limiter = make_limiter(self.rt, transport)
                busy = self.busy()
                started = time.monotonic()
                # Busy: one mail at a time keeps each pause of the requests short; a rate-limited
                # provider (Resend) is better served by full batches, its budget being the limit.
                size = 1 if busy and limiter is None else self.idle_batch
                step = drain_batch(self.rt, transport, builder, size, limiter)
                for err in step.errors:
                    log.warning("transactional mail: %s", err)
                pause = 0.0
                if self.housekeeping and time.monotonic() - last_housekeeping > self.housekeeping_every:
                    last_housekeeping = time.monotonic()
                    self.housekeeping()
                if step.handled and not step.deferred:
                    if busy:  # share the interpreter: work at most busy_share of the time
                        took = time.monotonic() - started
                        self._stop.wait(took * (1 - self.busy_share) / self.busy_share)
                    continue  # more may be waiting
            except ProviderAuthError as exc:
                log.error("transactional mail stopped: %s", exc)
                pause = 60.0
            except UserError as exc:  # e.g. an empty signing key: one clear line, then wait for the fix
                log.error("transactional mail waits: %s", exc)
                pause = min(max(pause * 2, 1.0), 30.0)
            except Exception:  # noqa: BLE001 - nothing unexpected may kill the thread silently
                log.exception("transactional mail drainer")
                pause = min(max(pause * 2, 1.0), 30.0)
            self._wake.wait(max(self.poll, pause))
            self._wake.clear()
        if transport is not None:
            try:
                transport.close()
            except Exception:  # noqa: BLE001
                log.exception("transactional mail: closing the transport")


def _batch_key(to_send: list[tuple[int, int, OutgoingEmail]]) -> str:
    """Rows plus a digest of the payload: a re-send after a crash with the same rendering is
    deduplicated by the provider, and a re-rendered one (new confirm-token timestamp) gets a new
    key instead of a 409 that would lose the mail (a second copy beats no confirmation)."""
    h = hashlib.sha256()
    for mail_id, _, m in to_send:
        h.update(f"{mail_id}\0{m.to}\0{m.subject}\0".encode())
        h.update(str(m.html).encode())
        h.update(str(m.text).encode())
    return f"txn-{to_send[0][0]}-{to_send[-1][0]}-{len(to_send)}-{h.hexdigest()[:16]}"
