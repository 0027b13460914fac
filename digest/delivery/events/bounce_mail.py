"""Bounce and complaint mails (for SMTP senders) as DeliveryEvents.

A report acts only when it names one of our VERP addresses (digest.delivery.verp), and only
once the address's proof matches our own row for the message it names (subscribers.bounce_mail):
as its own recipient (a DSN goes back to the envelope sender: `To`, `Delivered-To`, the
pipe's envelope recipient) or as the reported message's envelope sender (an ARF complaint
goes to the feedback-loop address, and carries the original's `Return-Path` or
`Original-Mail-From`). The token names the message, so the event carries its provider id
(`smtp:<key>`) and the person comes from our row for that message (the delivery, or the
outgoing mail of a confirmation), never from what the report claims: the recipient the report
names only has to agree with that row, so a report cannot point at anyone else.

What happened is read from, in order:
- an ARF feedback report (RFC 5965): a complaint, unless `Feedback-Type: not-spam`;
- a delivery status notification (RFC 3464): per recipient `Action: failed` with a 5.x.x
  status is a hard bounce (5.2.2 mailbox full counts as soft), 4.x.x a soft one; `delayed`,
  `delivered` and `relayed` change nothing;
- anything else through flufl.bounce's detectors of older, non-standard MTA formats (Exim,
  qmail, old Exchange, Yahoo ...): what they call permanent is a hard bounce, their
  "temporary" failures are delay warnings and change nothing.
"""

from __future__ import annotations

import email
import email.message
import email.parser
import email.utils
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from flufl.bounce import all_failures

from digest.delivery.events import DeliveryEvent, EventKind
from digest.delivery.verp import Verp
from digest.links import BounceClaim
from digest.weeks import as_utc, utcnow

PROVIDER = "bounce_mail"
# Our messages carry no attachments: a report holding a whole copy of one is well under this, and
# parsing costs about 25 times the size in memory.
MAX_BYTES = 2 * 1024 * 1024
# Where a report names the address it was sent to (the MTA that delivered it adds the first three).
ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
COMPLAINT_TYPES = ("abuse", "fraud", "virus", "other")
SOFT_PERMANENT = ("5.2.2",)  # "mailbox full" sent as permanent by some MTAs (Exchange): it clears itself
# A VERP address names one message to one recipient, so its DSN has one recipient block (a few with
# forwards). More is not a report of ours, and parsing 300,000 blocks took half a gigabyte. Counted by
# every field a block starts or ends with, after any line ending the mail parser takes (CR, LF, CRLF).
MAX_RECIPIENT_BLOCKS = 50
_BLOCK_FIELD = re.compile(
    rb"(?:\A|[\r\n])[ \t]*(?:final-recipient|original-recipient|action|status)[ \t]*:", re.IGNORECASE
)


@dataclass(frozen=True)
class Report:
    """The events of one report (empty: it changes nothing) and a one-line note saying what it was."""

    events: list[DeliveryEvent]
    note: str
    claim: BounceClaim | None = None  # the VERP claim the events rest on: checked against our row before they act


@dataclass(frozen=True)
class _Failure:
    kind: EventKind
    recipients: tuple[str, ...]  # what the report says the recipient was (final, then original)
    detail: dict[str, str]


def parse(raw: bytes, verp: Verp, envelope_to: Sequence[str] = ()) -> Report:
    """Read one report; never raises (a malformed mail is just not a report)."""
    if len(raw) > MAX_BYTES:
        return Report([], f"larger than {MAX_BYTES // (1024 * 1024)} MB: not a bounce report; nothing changed")
    if _too_many_blocks(raw):
        return Report(
            [], f"more than {MAX_RECIPIENT_BLOCKS} recipient blocks: not a report of one message; nothing changed"
        )
    try:
        msg = email.message_from_bytes(raw)
        claim = _claim(msg, verp, envelope_to)
        if claim is None:
            return Report([], "not addressed to a signed bounce address: nothing changed")
        failure = _feedback(msg) or _dsn(msg) or _non_standard(msg)
        if failure is None:
            return Report([], f"message {claim.key}: no bounce or complaint in it (a reply?): nothing changed")
        if failure.kind is EventKind.OTHER:
            return Report([], f"message {claim.key}: {_describe(failure)}: not a failure, nothing changed")
        names = failure.recipients
        event = DeliveryEvent(
            kind=failure.kind,
            provider=PROVIDER,
            provider_event_id=f"{claim.key}:{_report_id(msg, raw)}",
            provider_type=_describe(failure)[:64],
            message_id=f"smtp:{claim.key}",
            recipient=names[0] if names else None,
            aliases=names[1:],
            occurred_at=_date(msg),
            detail=failure.detail,
        )
    except Exception:  # noqa: BLE001 - whatever a stranger sends must not stop the mail system
        return Report([], "not a readable mail: nothing changed")
    return Report([event], f"message {claim.key}: {event.provider_type}", claim)


def _too_many_blocks(raw: bytes) -> bool:
    """Counted on the raw bytes before parsing, stopping at the first field past the limit."""
    return next(islice(_BLOCK_FIELD.finditer(raw), 4 * MAX_RECIPIENT_BLOCKS, None), None) is not None


def _describe(failure: _Failure) -> str:
    status = failure.detail.get("status") or failure.detail.get("feedback") or ""
    what = {EventKind.OTHER: failure.detail.get("action") or "report"}.get(failure.kind, failure.kind.value)
    return what.replace("_", " ") + (f" ({status})" if status else "")


# -- whose report ---------------------------------------------------------------------------


def _claim(msg: email.message.Message, verp: Verp, envelope_to: Sequence[str]) -> BounceClaim | None:
    """The first of our VERP addresses the report names; None when it names none."""
    for address in _addresses(msg, envelope_to):
        claim = verp.read(address)
        if claim is not None:
            return claim
    return None


def _addresses(msg: email.message.Message, envelope_to: Sequence[str]) -> Iterator[str]:
    yield from envelope_to
    for name in ENVELOPE_HEADERS:
        for _, address in email.utils.getaddresses([str(v) for v in msg.get_all(name, [])]):
            yield address
    for fields in _feedback_fields(msg):
        yield from _field_addresses(fields.get("Original-Mail-From"))
    for original in _originals(msg):
        yield from _field_addresses(original.get("Return-Path"))


def _field_addresses(value: object) -> list[str]:
    return [a for _, a in email.utils.getaddresses([str(value)])] if value else []


def _originals(msg: email.message.Message) -> Iterator[email.message.Message]:
    """The returned message (or its headers) a DSN or an ARF report carries."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and part.is_multipart():
            for inner in part.get_payload():
                if isinstance(inner, email.message.Message):
                    yield inner
        elif ctype == "text/rfc822-headers":
            yield email.parser.BytesHeaderParser().parsebytes(_bytes(part))


# -- what happened --------------------------------------------------------------------------


def _feedback_fields(msg: email.message.Message) -> Iterator[email.message.Message]:
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list):  # parsed as a message: its headers are the fields
                yield from (p for p in payload if isinstance(p, email.message.Message))
            else:
                yield email.parser.BytesHeaderParser().parsebytes(_bytes(part))


def _bytes(part: email.message.Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _feedback(msg: email.message.Message) -> _Failure | None:
    """An ARF report (RFC 5965): a complaint, unless it says the mail was not spam."""
    for fields in _feedback_fields(msg):
        kind = str(fields.get("Feedback-Type", "")).strip().lower()
        if not kind:
            continue
        recipients = tuple(a for a in _field_addresses(fields.get("Original-Rcpt-To")) if a)
        detail = {"feedback": kind[:60], "agent": str(fields.get("User-Agent", ""))[:100]}
        return _Failure(EventKind.COMPLAINED if kind in COMPLAINT_TYPES else EventKind.OTHER, recipients[:5], detail)
    return None


def _dsn(msg: email.message.Message) -> _Failure | None:
    """The worst per-recipient outcome of an RFC 3464 report; None when the mail has no such part."""
    failures: list[_Failure] = []
    seen = False
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        seen = True
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        blocks = [b for b in payload if isinstance(b, email.message.Message)]
        reporting = str(blocks[0].get("Reporting-MTA", "")).partition(";")[2].strip() if blocks else ""
        for block in blocks[1:]:
            failure = _recipient_block(block, reporting)
            if failure is not None:
                failures.append(failure)
    if not seen:
        return None
    rank = {EventKind.HARD_BOUNCE: 0, EventKind.SOFT_BOUNCE: 1, EventKind.OTHER: 2}
    failures.sort(key=lambda f: rank.get(f.kind, 3))
    return failures[0] if failures else _Failure(EventKind.OTHER, (), {"status": "no failure"})


def _recipient_block(block: email.message.Message, reporting: str) -> _Failure | None:
    action = str(block.get("Action", "")).strip().lower()
    status = str(block.get("Status", "")).strip().split(" ")[0]
    recipients = tuple(
        dict.fromkeys(
            address
            for address in (
                str(block.get(name) or "").partition(";")[2].strip()
                for name in ("Final-Recipient", "Original-Recipient")
            )
            if address
        )
    )
    detail = {
        "status": status[:20],
        "action": action[:20],
        "mta": reporting[:100],
        "diagnostic": " ".join(str(block.get("Diagnostic-Code", "")).split())[:300],
    }
    if not action.startswith(("fail", "error")):  # delayed, delivered, relayed, expanded: no failure (yet)
        return _Failure(EventKind.OTHER, recipients, detail)
    permanent = not status.startswith("4") and status not in SOFT_PERMANENT
    detail["type"] = "Permanent" if permanent else "Transient"
    return _Failure(EventKind.HARD_BOUNCE if permanent else EventKind.SOFT_BOUNCE, recipients, detail)


def _non_standard(msg: email.message.Message) -> _Failure | None:
    """flufl.bounce's MTA-specific detectors; only their permanent failures count."""
    temporary, permanent = all_failures(msg)
    if permanent:
        named = tuple(a.decode("ascii", "replace") for a in sorted(permanent)[:5])
        return _Failure(EventKind.HARD_BOUNCE, named, {"type": "Permanent", "format": "non-standard"})
    if temporary:
        return _Failure(EventKind.OTHER, (), {"status": "delay warning"})
    return None


# -- identity and time ----------------------------------------------------------------------


def _report_id(msg: email.message.Message, raw: bytes) -> str:
    """The same report read twice (the pipe and the mailbox, a retry) gives the same id."""
    message_id = str(msg.get("Message-ID", "")).strip()
    return hashlib.sha256(message_id.encode() if message_id else raw).hexdigest()[:32]


def _date(msg: email.message.Message) -> datetime | None:
    """The report's Date, when it is a plausible past instant (else the applier uses now)."""
    try:
        when = as_utc(email.utils.parsedate_to_datetime(str(msg.get("Date", ""))))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    now = utcnow()
    return when if now - timedelta(days=60) <= when <= now + timedelta(minutes=5) else None
