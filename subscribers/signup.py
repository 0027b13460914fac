"""The sign-up core, shared by the JSON API, the hosted form, embed.js and the no-JS snippet.

Whatever the address's state (new, pending, active, unsubscribed, suppressed), an accepted
sign-up gives the caller the same outcome, so nobody can learn who is on the list. The
request does only database work (a few statements in one transaction); the confirmation
is queued in `outgoing_mail` for the drainer.

Long because a sign-up's raw SQL for both databases sits beside the one transaction that runs it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError

from digest.links import email_hash
from digest.runtime import Runtime
from digest.storage.models import MailKind, MailStatus, SubscriberEventKind, SubscriberStatus
from digest.weeks import utcnow
from subscribers.addresses import MAX_NAME, AddressError, canonical_mailbox, clean_name, normalize_email
from subscribers.consent import INSERT_FROM_SQL as CONSENT_FROM_SQL
from subscribers.consent import INSERT_SQL as CONSENT_SQL
from subscribers.preferences import SIGNUP_AGAIN
from subscribers.ratelimit import (
    Limit,
    Refused,
    Verdict,
    count_sql,
    hit,
    ip_key,
    judge,
    mailbox_key,
    read_columns,
    read_params,
)
from subscribers.rawsql import Raw

ACCEPTED_MESSAGE = "Almost there: check your inbox and click the link in the email we just sent you."
# Suppressed for these reasons, a web sign-up changes nothing (same answer): the provider told
# us the mailbox is dead, or the person reported us as spam. An erased ("forgotten") person
# may come back through the double opt-in; confirming lifts their suppression.
_STAY_SUPPRESSED = {"hard_bounce", "soft_bounces", "complaint", "manual"}
_SOURCE_RE = re.compile(r"[^a-z0-9_.-]+")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
log = logging.getLogger("subscribers.signup")


@dataclass(frozen=True)
class SignupRequest:
    email: str
    name: str | None = None
    honeypot: str = ""
    form: str = "form"  # which form: hosted | embed | embed.js | snippet | api | <data-source>
    page: str | None = None  # the page the form was on (Referer), for the consent record
    ip: str | None = None
    user_agent: str | None = None
    topics: tuple[str, ...] = ()  # topic keys ticked on the form: applied when the person confirms


@dataclass(frozen=True)
class SignupOutcome:
    status: str  # accepted | invalid | limited
    message: str = ACCEPTED_MESSAGE
    field: str | None = None
    retry_after: int = 0
    queued: bool = False  # internal only (wakes the drainer); never shown to the visitor

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def clean_form_id(raw: str | None, default: str = "form") -> str:
    value = _SOURCE_RE.sub("-", (raw or "").strip().lower())[:40].strip("-")
    return value or default


def clean_page(raw: str | None) -> str | None:
    """Keep scheme, host and path of the page (no query: it may carry someone's data)."""
    if not raw:
        return None
    value = _CTRL_RE.sub("", raw).split("?", 1)[0].split("#", 1)[0]
    return value[:150] or None


def consent_source(req: SignupRequest) -> str:
    text = f"web:{clean_form_id(req.form)}"
    page = clean_page(req.page)
    return (f"{text} on {page}" if page else text)[:200]


def _clip(value: str | None, n: int) -> str | None:
    return _CTRL_RE.sub("", value)[:n] if value else None


def signup(rt: Runtime, req: SignupRequest, now: datetime | None = None) -> SignupOutcome:
    """Validate, rate-limit and record one sign-up; the caller maps the outcome to HTTP."""
    if req.honeypot.strip():
        return SignupOutcome("accepted")  # a bot: look successful, change nothing
    settings = rt.settings.subscribe
    try:
        address = normalize_email(req.email, check_deliverability=settings.check_deliverability)
    except AddressError as exc:
        return SignupOutcome("invalid", _visitor_message(str(exc)), field="email")
    try:
        name = clean_name(req.name)
    except AddressError as exc:
        return SignupOutcome("invalid", _visitor_message(str(exc)), field="name")
    for attempt in range(2):
        try:
            return _record(rt, req, address, name, now or utcnow())
        except IntegrityError:
            if attempt:  # the same new address twice at the same instant: the second saw the first's row
                raise
        except DBAPIError as exc:
            if attempt or not exc.connection_invalidated:  # a kept connection the server dropped: once more
                raise
    raise AssertionError("unreachable")


def _visitor_message(text: str) -> str:
    field, _, detail = text.partition(": ")
    if field == "email":
        if "line breaks" in detail:
            return "Please enter a single email address."
        if "longer than" in detail:
            return "That email address is too long."
        if "required" in detail:
            return "Please enter your email address."
        return "Please enter a valid email address, like name@example.com."
    if "longer than" in detail:
        return f"That name is too long ({MAX_NAME} characters at most)."
    if "web addresses" in detail:
        return "Please enter just your name, without a web address."
    if "not valid text" in detail:
        return "Please enter your name as plain text."
    return "Please enter your name on one line."


# The hot path as plain SQL through a DB-API cursor (subscribers.rawsql). One read query
# answers everything the decision needs (rate-limit counts, suppression, current state);
# on PostgreSQL a new sign-up's writes are one statement too (round trips dominate there).
_LOOKUP = (
    "SELECT {limits}, (SELECT reason FROM suppressions WHERE email_hash = :h),"
    " s.id, s.status, s.confirmation_sent_at"
    " FROM (SELECT 1 AS one) AS o LEFT JOIN subscribers AS s ON s.email = :email"
)
_INSERT = (
    "INSERT INTO subscribers (email, name, status, created_at, confirmation_sent_at,"
    " consent_at, consent_ip, consent_user_agent, consent_source)"
    f" VALUES (:email, :name, '{SubscriberStatus.PENDING}', :now, :now, :now, :ip, :ua, :source) RETURNING id"
)
# Compare-and-set: only a row still in the state this request read, with no confirmation
# sent within the resend window, is updated (and gets one queued). Two requests that read
# the same row at once: the second waits for the first's row lock, re-checks, matches nothing.
# It never rewrites the consent fields: the request is appended to consent_records, and only
# the owner's confirmation makes it count (someone who left comes back only that way).
_UPDATE = (
    f"UPDATE subscribers SET status = '{SubscriberStatus.PENDING}', name = COALESCE(:name, name),"
    " confirmation_sent_at = :now"
    " WHERE id = :sid AND status = :status AND (confirmation_sent_at IS NULL OR confirmation_sent_at <= :cutoff)"
    " RETURNING id"
)
_EVENT = (
    "INSERT INTO events (kind, subscriber_id, detail, created_at)"
    f" VALUES ('{SubscriberEventKind.SUBSCRIBED}', :sid, :detail, :now)"
)
# A pending address signed up for again: not a second sign-up (the list report counts `subscribed`),
# but its topics are the latest choice, applied if the owner confirms (preferences.apply_signup_topics).
_AGAIN = f"INSERT INTO events (kind, subscriber_id, detail, created_at) VALUES ('{SIGNUP_AGAIN}', :sid, :detail, :now)"
_QUEUE = (
    "INSERT INTO outgoing_mail (kind, subscriber_id, status, attempts, created_at)"
    f" VALUES ('{MailKind.CONFIRM}', :sid, '{MailStatus.QUEUED}', 0, :now)"
)
_PG_NEW = (
    "WITH h (key, total) AS ({hits}), s AS ({insert}),"
    " e AS (INSERT INTO events (kind, subscriber_id, detail, created_at)"
    f" SELECT '{SubscriberEventKind.SUBSCRIBED}', id, :detail, :now FROM s),"
    " q AS (INSERT INTO outgoing_mail (kind, subscriber_id, status, attempts, created_at)"
    f" SELECT '{MailKind.CONFIRM}', id, '{MailStatus.QUEUED}', 0, :now FROM s),"
    f" c AS ({CONSENT_FROM_SQL.format(table='s')})"
    " SELECT key, total FROM h"
)
# SQLite has one writer at a time; letting this process's threads queue on a lock is much
# cheaper than letting them collide in SQLite's busy handler (which sleeps up to 100 ms).
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


def _writer_lock(rt: Runtime) -> threading.Lock | contextlib.nullcontext[None]:
    if rt.on_postgres:
        return contextlib.nullcontext()
    return _SQLITE_WRITERS.setdefault(rt.engine, threading.Lock())


class _Kept:
    """One connection per engine kept for sign-ups: no pool check-out (and pre-ping) per request."""

    def __init__(self, engine: Engine) -> None:
        self.lock = threading.Lock()
        self.conn: Connection | None = None
        event.listen(engine, "engine_disposed", self.close)

    def close(self, *_args: object) -> None:
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


_KEPT: weakref.WeakKeyDictionary[Engine, _Kept] = weakref.WeakKeyDictionary()
_KEPT_GUARD = threading.Lock()


@contextlib.contextmanager
def _connection(rt: Runtime) -> Iterator[Connection]:
    with _KEPT_GUARD:
        kept = _KEPT.get(rt.engine) or _KEPT.setdefault(rt.engine, _Kept(rt.engine))
    if not kept.lock.acquire(blocking=False):  # another thread has it: take one from the pool
        with rt.engine.connect() as conn:
            yield conn
        return
    try:
        if kept.conn is None or kept.conn.closed or kept.conn.invalidated:
            kept.conn = rt.engine.connect()
        try:
            yield kept.conn
        except DBAPIError as exc:
            if exc.connection_invalidated or kept.conn.invalidated:
                kept.conn.close()
                kept.conn = None
            raise
    finally:
        kept.lock.release()


@dataclass(frozen=True)
class _Limits:
    """What a sign-up counts against. Past `gate` (per IP a minute and an hour, per mailbox an hour)
    it is refused with a 429. Every sign-up past the gate counts against `shared` (per recipient
    domain and in all, an hour) whatever the address's state, so whether a confirmation still goes
    out depends only on sign-ups anyone could have made, never on who is on the list. `mailbox`
    (per mailbox a day) counts only confirmations actually queued: nobody but the mailbox's owner
    sees it. Past `shared` or `mailbox` the sign-up is answered as usual and mails nothing."""

    gate: list[Limit]
    shared: list[Limit]
    mailbox: list[Limit]
    shared_ok: bool = True  # False: a concurrent sign-up took the shared caps' last one; count the gate only
    mailbox_ok: bool = True  # False: likewise for the mailbox's day

    @property
    def read(self) -> list[Limit]:
        return self.gate + self.shared + self.mailbox

    def spent(self, key: str) -> _Limits:
        """The same limits after a concurrent refusal on `key` (a shared or a mailbox budget)."""
        if key in {lim.key for lim in self.mailbox}:
            return replace(self, mailbox_ok=False)
        return replace(self, shared_ok=False)


def _limits(rt: Runtime, req: SignupRequest, address: str) -> _Limits:
    s = rt.settings.subscribe
    mailbox = canonical_mailbox(address)  # victim+1@, victim+2@ ... are one mailbox
    gate = [Limit(mailbox_key("a", address), s.per_address_per_hour, HOUR)]
    if req.ip:
        client = ip_key(req.ip)
        gate[:0] = [
            Limit(f"ip:{client}", s.per_ip_per_minute, timedelta(minutes=1)),
            Limit(f"ih:{client}", s.per_ip_per_hour, HOUR),
        ]  # so one client cannot spend `shared`
    shared = [
        Limit(f"cd:{mailbox.rpartition('@')[2][:190]}", s.confirmations_per_domain_per_hour, HOUR),
        Limit("cg", s.confirmations_per_hour, HOUR),
    ]
    return _Limits(gate, shared, [Limit(mailbox_key("cm", address), s.confirmations_per_mailbox_per_day, DAY)])


def _record(rt: Runtime, req: SignupRequest, address: str, name: str | None, now: datetime) -> SignupOutcome:
    limits = _limits(rt, req, address)
    resend_after = timedelta(minutes=rt.settings.subscribe.confirmation_resend_minutes)
    source = consent_source(req)
    for _ in range(3):
        try:
            with _writer_lock(rt), _connection(rt) as conn, conn.begin():
                return _decide(Raw(conn), req, address, name, now, limits, source, resend_after)
        except Refused as exc:  # past a limit with this very hit: rolled back, not counted
            if exc.verdict.key in {lim.key for lim in limits.gate}:
                return _limited(exc.verdict.retry_after)
            _budget_spent(exc.verdict.key)  # a concurrent sign-up took the last one: again, mailing nothing
            limits = limits.spent(exc.verdict.key)
    raise AssertionError("unreachable")


def _limited(retry_after: int) -> SignupOutcome:
    return SignupOutcome("limited", "Too many sign-ups; please try again in a little while.", retry_after=retry_after)


def _budget_spent(key: str) -> None:
    """Log which confirmation budget stopped a mail (never the address): the domain and service
    caps are the operator's to raise if real sign-ups meet them. Logged once per sign-up."""
    kind, _, rest = key.partition(":")
    if kind == "cm":
        log.info("confirmation not sent: this mailbox had its confirmations_per_mailbox_per_day")
    elif kind == "cd":
        log.warning("confirmation not sent: %s had its confirmations_per_domain_per_hour", rest)
    else:
        log.warning("confirmation not sent: the service had its confirmations_per_hour")


def _spent(limits: _Limits, shared: Verdict, mailbox: Verdict) -> str | None:
    """The budget this read found spent, to log if it stops a mail (None on a retry: logged on its refusal)."""
    if not (limits.shared_ok and limits.mailbox_ok):
        return None
    return next((v.key for v in (shared, mailbox) if not v.allowed), None)


def _decide(
    raw: Raw,
    req: SignupRequest,
    address: str,
    name: str | None,
    now: datetime,
    limits: _Limits,
    source: str,
    resend_after: timedelta,
) -> SignupOutcome:
    """One read, then the writes; `hit` raises Refused when the count (taken atomically) says no.

    The hits are counted in one upsert, once the request knows whether it queues a confirmation
    (then the mailbox's day counts too); a refusal rolls back everything the request wrote.
    Long because it is one transaction's decision: every return is a branch of the same read."""
    read, n = limits.read, len(limits.read)
    try:
        row = raw.one(
            _LOOKUP.format(limits=read_columns(n)),
            {**read_params(raw, read, now), "h": email_hash(address), "email": address},
        )
        assert row is not None
        g, s = 2 * len(limits.gate), 2 * len(limits.shared)
        verdict = judge(raw, limits.gate, row[:g], now)
        if not verdict.allowed:
            return _limited(verdict.retry_after)
        shared = judge(raw, limits.shared, row[g : g + s], now)
        mailbox = judge(raw, limits.mailbox, row[g + s : 2 * n], now)
        counted = limits.gate + (limits.shared if limits.shared_ok and shared.allowed else [])
        sending = counted + limits.mailbox  # a queued confirmation counts the mailbox's day too
        spent = _spent(limits, shared, mailbox)
        may_send = limits.shared_ok and limits.mailbox_ok and shared.allowed and mailbox.allowed
        suppressed, sid, status, sent_at = row[2 * n :]
        if suppressed in _STAY_SUPPRESSED:
            hit(raw, counted, now)
            return SignupOutcome("accepted")
        values = {
            "email": address,
            "name": name,
            "now": raw.ts(now),
            "ip": _clip(req.ip, 64),
            "ua": _clip(req.user_agent, 500),
            "source": source,
        }
        if sid is None:
            if not may_send:  # out of confirmations: store nothing, the visitor may come back later
                if spent:
                    _budget_spent(spent)
                hit(raw, counted, now)
                return SignupOutcome("accepted")
            detail = raw.json({"source": source, **({"topics": list(req.topics)} if req.topics else {})})
            if raw.pg:
                new = _PG_NEW.format(hits=count_sql(len(sending)), insert=_INSERT)
                hit(raw, sending, now, new, {**values, "detail": detail})
            else:
                hit(raw, sending, now)
                inserted = raw.one(_INSERT, values)
                assert inserted is not None  # INSERT ... RETURNING gives the row
                sid = inserted[0]
                raw.run(_EVENT, {"sid": sid, "detail": detail, "now": values["now"]})
                raw.run(_QUEUE, {"sid": sid, "now": values["now"]})
                raw.run(CONSENT_SQL, {**values, "sid": sid})
            return SignupOutcome("accepted", queued=True)
        if status not in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
            hit(raw, counted, now)
            return SignupOutcome("accepted")  # active already (or bounced/complained): nothing to do
        if status == SubscriberStatus.PENDING:  # whether or not a confirmation goes out again, the latest form counts
            raw.run(
                _AGAIN,
                {
                    "sid": sid,
                    "now": values["now"],
                    "detail": raw.json({"source": source, **({"topics": list(req.topics)} if req.topics else {})}),
                },
            )
        sent = raw.read_ts(sent_at)
        if sent is not None and sent > now - resend_after:
            hit(raw, counted, now)
            return SignupOutcome("accepted")  # a confirmation went out moments ago
        if not may_send:
            if spent:
                _budget_spent(spent)
            hit(raw, counted, now)
            return SignupOutcome("accepted")
        if raw.one(_UPDATE, {**values, "sid": sid, "status": status, "cutoff": raw.ts(now - resend_after)}) is None:
            hit(raw, counted, now)
            return SignupOutcome("accepted")  # another request got there first and queued the one confirmation
        hit(raw, sending, now)
        raw.run(CONSENT_SQL, {**values, "sid": sid})
        if status == SubscriberStatus.UNSUBSCRIBED:
            raw.run(
                _EVENT,
                {
                    "sid": sid,
                    "detail": raw.json(
                        {"source": source, "again": True, **({"topics": list(req.topics)} if req.topics else {})}
                    ),
                    "now": values["now"],
                },
            )
        raw.run(_QUEUE, {"sid": sid, "now": values["now"]})
        return SignupOutcome("accepted", queued=True)
    finally:
        raw.close()
