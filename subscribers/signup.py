"""The sign-up core, shared by the JSON API, the hosted form, embed.js and the no-JS snippet.

Whatever the address's state (new, pending, active, unsubscribed, suppressed), an accepted
sign-up gives the caller the same outcome, so nobody can learn who is on the list. The
request does only database work (a few statements in one transaction); the confirmation
is queued in `outgoing_mail` for the drainer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from digest.runtime import Runtime
from digest.storage.models import SUB_PENDING, SUB_UNSUBSCRIBED, Event, Subscriber, Suppression
from digest.weeks import as_utc, utcnow
from subscribers.addresses import AddressError, clean_name, normalize_email
from subscribers.mail_queue import queue_mail
from subscribers.ratelimit import Limit, check_and_hit
from subscribers.tokens import email_hash

ACCEPTED_MESSAGE = "Almost there: check your inbox and click the link in the email we just sent you."
# Suppressed for these reasons, a web sign-up changes nothing (same answer): the provider told
# us the mailbox is dead, or the person reported us as spam. An erased ("forgotten") person
# may come back through the double opt-in; confirming lifts their suppression.
_STAY_SUPPRESSED = {"hard_bounce", "soft_bounces", "complaint", "manual"}
_SOURCE_RE = re.compile(r"[^a-z0-9_.-]+")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SignupRequest:
    email: str
    name: str | None = None
    honeypot: str = ""
    form: str = "form"  # which form: hosted | embed | embed.js | snippet | api | <data-source>
    page: str | None = None  # the page the form was on (Referer), for the consent record
    ip: str | None = None
    user_agent: str | None = None


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
        return "That name is too long (100 characters at most)."
    return "Please enter your name on one line."


def _record(rt: Runtime, req: SignupRequest, address: str, name: str | None, now: datetime) -> SignupOutcome:
    s = rt.settings.subscribe
    h = email_hash(address)
    limits = [Limit(f"a:{h[:40]}", s.per_address_per_hour, timedelta(hours=1))]
    if req.ip:
        limits.insert(0, Limit(f"ip:{req.ip[:64]}", s.per_ip_per_minute, timedelta(minutes=1)))
    resend_after = timedelta(minutes=s.confirmation_resend_minutes)
    consent = {"consent_at": now, "consent_ip": _clip(req.ip, 64), "consent_user_agent": _clip(req.user_agent, 500),
               "consent_source": consent_source(req)}
    with rt.sessions.begin() as session:
        verdict = check_and_hit(session, limits, now)
        if not verdict.allowed:
            return SignupOutcome("limited", "Too many sign-ups; please try again in a little while.",
                                 retry_after=verdict.retry_after)
        suppressed = session.scalar(select(Suppression.reason).where(Suppression.email_hash == h))
        if suppressed in _STAY_SUPPRESSED:
            return SignupOutcome("accepted")
        row = session.execute(select(Subscriber.id, Subscriber.status, Subscriber.confirmation_sent_at)
                              .where(Subscriber.email == address)).first()
        if row is None:
            sid = session.execute(insert(Subscriber).values(
                email=address, name=name, status=SUB_PENDING, created_at=now, confirmation_sent_at=now, **consent)
            ).inserted_primary_key[0]
            session.execute(insert(Event).values(kind="subscribed", subscriber_id=sid, created_at=now,
                                                 detail={"source": consent["consent_source"]}))
            queue_mail(session, "confirm", sid, now)
            return SignupOutcome("accepted", queued=True)
        sid, status, sent_at = row
        if status not in (SUB_PENDING, SUB_UNSUBSCRIBED):
            return SignupOutcome("accepted")  # active already (or bounced/complained): nothing to do
        if sent_at is not None and as_utc(sent_at) > now - resend_after:
            return SignupOutcome("accepted")  # a confirmation went out moments ago
        values: dict[str, object] = {"status": SUB_PENDING, "confirmation_sent_at": now, **consent}
        if name:
            values["name"] = name
        session.execute(update(Subscriber).where(Subscriber.id == sid).values(**values))
        if status == SUB_UNSUBSCRIBED:
            session.execute(insert(Event).values(kind="subscribed", subscriber_id=sid, created_at=now,
                                                 detail={"source": consent["consent_source"], "again": True}))
        queue_mail(session, "confirm", sid, now)
        return SignupOutcome("accepted", queued=True)
