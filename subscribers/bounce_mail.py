"""Bounce and complaint mails for SMTP senders: from a pipe alias, files, or an IMAP mailbox.

Each report is read by `digest.delivery.events.bounce_mail` (which only trusts our signed
VERP addresses) and applied by `apply_events`, the same path as Resend's webhooks, so a
report seen twice (pipe and mailbox, a retry) acts once. Every report is a quiet success
for the mail system: a non-zero exit would bounce the bounce.
"""

from __future__ import annotations

import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DataError, SQLAlchemyError

from digest.delivery.events import bounce_mail
from digest.delivery.verp import from_config
from digest.errors import UserError
from digest.runtime import Runtime
from digest.storage.lease import Lease, default_holder
from subscribers.delivery_events import apply_events, message_recipient

log = logging.getLogger("subscribers.bounces")

NO_ADDRESS = "no bounce address configured ([transport.smtp] bounce_address): nothing changed"
PROCESSED = "$DigestProcessed"  # the IMAP keyword of a report already read


@dataclass(frozen=True)
class BounceOutcome:
    changed: bool
    message: str


def process_bounce_mail(rt: Runtime, raw: bytes, envelope_to: Sequence[str] = ()) -> BounceOutcome:
    """Apply one bounce or complaint report in its own transaction; never raises on what the mail says.

    The VERP address's proof is checked against our own row for the message first: an address
    we did not make for that message's recipient changes nothing. A report whose data the
    database still refuses is logged with its id and reported as changing nothing, so the pipe
    exits 0 and the mailbox poll marks it read and reads the next one. Any other database
    error raises (unreachable, read-only, not migrated): then nothing is marked read, and the
    report is read again once the database is back."""
    verp = from_config(rt.config)
    if verp is None:
        return BounceOutcome(False, NO_ADDRESS)
    report = bounce_mail.parse(raw, verp, envelope_to)
    if not report.events or report.claim is None:
        return BounceOutcome(False, report.note)
    message_id = report.events[0].message_id or ""
    with rt.sessions() as session:
        sent_to = message_recipient(session, message_id)
    if sent_to is None or not verp.belongs(report.claim, sent_to):
        log.warning(
            "bounce report to %s: not the bounce address of that message's recipient; nothing changed", message_id
        )
        return BounceOutcome(
            False, f"{report.note}: not the bounce address of message {report.claim.key}'s recipient; nothing changed"
        )
    try:
        result = apply_events(rt, report.events)
    except SQLAlchemyError as exc:
        if not isinstance(exc, DataError):
            raise
        return _skipped(report, exc)
    except Exception as exc:  # noqa: BLE001 - one bad report must not stop the ones after it
        return _skipped(report, exc)
    if result == "duplicate":
        return BounceOutcome(False, f"{report.note}: already handled")
    if result.startswith("ignored"):
        return BounceOutcome(False, f"{report.note}: {result}; nothing changed")
    return BounceOutcome(True, f"{report.note}: {result}")


def _skipped(report: bounce_mail.Report, exc: Exception) -> BounceOutcome:
    """A report the database refused (or that broke the applier): logged with its id, skipped."""
    key = report.events[0].receipt_key
    log.error(
        "bounce report %s could not be applied, skipped: %s: %s",
        key,
        type(exc).__name__,
        str(exc).splitlines()[0][:200] if str(exc) else "",
    )
    return BounceOutcome(False, f"{report.note}: could not be applied (report {key}, logged); nothing changed")


# -- the mailbox ----------------------------------------------------------------------------


LEASE = "bounce-poll"  # one reader of the mailbox at a time: `digest serve`s and a cron bounce-poll


@dataclass
class PollResult:
    read: int = 0
    changed: int = 0
    busy: bool = False  # another process was reading the mailbox: nothing done this time


def poll_mailbox(rt: Runtime, on_report: Callable[[str], None] | None = None, holder: str | None = None) -> PollResult:
    """Read every report in `[bounces] imap_folder` not read before, then flag (and move) it.

    A report is flagged only after it was applied: a crash in between reads it again, and
    `apply_events` recognises it. One process reads at a time (a lease; `busy` when another
    does). Raises UserError (one line) when the mailbox cannot be read."""
    if not rt.settings.bounces.imap_host:
        raise UserError("[bounces] imap_host is not set: no mailbox to poll (see README: bounces for SMTP)")
    with Lease(rt, LEASE, holder or default_holder()).held() as ours:
        return _poll(rt, on_report) if ours else PollResult(busy=True)


def _poll(rt: Runtime, on_report: Callable[[str], None] | None) -> PollResult:
    s = rt.settings.bounces
    where = f"IMAP {s.imap_host}:{s.imap_port} ({s.imap_security})"
    result = PollResult()
    try:
        conn = _connect(rt)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise UserError(f"{where}: cannot connect: {type(exc).__name__}: {exc}") from None
    try:
        try:
            conn.login(s.imap_user, rt.config.imap_password)
        except imaplib.IMAP4.error:
            raise UserError(
                f"{where} refused the login of {s.imap_user!r}; check [bounces] imap_user and DIGEST_IMAP_PASSWORD"
            ) from None
        status, _ = conn.select(_quote(s.imap_folder))
        if status != "OK":
            raise UserError(f"{where}: no folder {s.imap_folder!r} ([bounces] imap_folder)")
        if s.imap_done_folder:
            conn.create(_quote(s.imap_done_folder))  # NO when it exists already: fine
        _, found = conn.uid("SEARCH", "NOT", "KEYWORD", PROCESSED)
        for uid in (found[0] or b"").decode("ascii").split():
            _, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((part[1] for part in data if isinstance(part, tuple)), None)
            if raw is None:
                continue
            outcome = process_bounce_mail(rt, raw)
            result.read += 1
            result.changed += outcome.changed
            if on_report is not None:
                on_report(outcome.message)
            _done(conn, uid, s.imap_done_folder)
        if s.imap_done_folder:
            conn.expunge()
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as exc:
        raise UserError(f"{where}: {type(exc).__name__}: {exc} (after {result.read} reports)") from None
    finally:
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return result


def _connect(rt: Runtime) -> imaplib.IMAP4:
    s = rt.settings.bounces
    context = ssl.create_default_context()
    if s.imap_security == "tls":
        return imaplib.IMAP4_SSL(s.imap_host, s.imap_port, ssl_context=context, timeout=s.imap_timeout_seconds)
    conn = imaplib.IMAP4(s.imap_host, s.imap_port, timeout=s.imap_timeout_seconds)
    if s.imap_security == "starttls":
        conn.starttls(ssl_context=context)
    return conn


def _done(conn: imaplib.IMAP4, uid: str, folder: str) -> None:
    """Flag the report as read by us (and seen); move it when a done folder is configured."""
    conn.uid("STORE", uid, "+FLAGS", f"({PROCESSED} \\Seen)")
    if folder:
        if "MOVE" in conn.capabilities:
            conn.uid("MOVE", uid, _quote(folder))
        else:
            conn.uid("COPY", uid, _quote(folder))
            conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)")


def _quote(mailbox: str) -> str:
    """An IMAP quoted string (imaplib sends arguments as they are)."""
    return '"' + re.sub(r'(["\\])', r"\\\1", mailbox) + '"'
