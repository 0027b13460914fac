"""A message's bytes as the MIME transports send them (SMTP, SES, the outbox), without the
email package's per-message cost.

`to_mime` builds the message and `BytesGenerator` flattens it: about 1.5 ms of pure
Python per 60 KB digest (header objects, quoted-printable in Python, a line-by-line
writer), most of a sender's CPU over SMTP. Every reader's copy of an issue has the same
shape and mostly the same headers, so `message_bytes` takes that shape from `to_mime`
itself once (a skeleton per sender, reply-to, subject and header names: every header
folded by the same policy, the parts' headers, the boundary) and per message only folds
the headers that differ (To, Date, Message-ID, List-Unsubscribe ...) and puts in the
bodies, quoted-printable encoded by `digest.delivery.qpfast` (spliced from the issue's
pre-encoded parts). The result is what the generator writes for `to_mime`'s message,
except that soft line breaks may fall elsewhere in the bodies (they decode to the same
text; a test parses both). A message whose envelope needs SMTPUTF8 (a non-ASCII address),
or whose shape is not the expected one, gets None: the caller uses `to_mime` as before.
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass
from email.headerregistry import BaseHeader
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from functools import lru_cache

from digest.delivery.qpfast import qp_body
from digest.mail import MAIL_POLICY, VERBATIM_HEADERS, OutgoingEmail, domain_of, fold_verbatim, to_mime
from digest.weeks import utcnow

_CRLF = b"\r\n"
WIRE_POLICY = MAIL_POLICY.clone(linesep="\r\n")
_BODIES = ("text/plain", "text/html")
# Values whose folded form is plainly "Name: value" (the policy's own fold gives the same; a test checks):
# a dot-atom address without encoded-word characters, and our own Message-IDs.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(
    rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
_PLAIN_MSGID = re.compile(
    r"<[0-9a-f]{8,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*>"
)
_SHORT = 78
# A value the unstructured parser gives back unchanged: printable ASCII words, single spaces, no encoded-word.
_PLAIN_TEXT = re.compile(r"[!-~]+(?: [!-~]+)*")


@dataclass(frozen=True)
class Wire:
    """What goes over SMTP: the envelope (sender, recipients) and the message's bytes (CRLF)."""

    sender: str
    rcpts: list[str]
    data: bytes


def header_object(name: str, value: str) -> BaseHeader:
    """The header `msg[name] = value` stores (the generator folds this object)."""
    # header_store_parse is typed as returning (str, str); under the default policy the value is a header object.
    return WIRE_POLICY.header_store_parse(name, value)[1]  # type: ignore[return-value]


def fold(name: str, value: str) -> bytes:
    """`name: value` folded exactly as the generator writes `msg[name] = value` under MAIL_POLICY."""
    return WIRE_POLICY.fold_binary(name, header_object(name, value))  # a header object folds itself


@lru_cache(maxsize=256)
def _fold_cached(name: str, value: str) -> bytes:
    return fold(name, value)


def _fold_value(name: str, value: str) -> bytes:
    if len(value) <= 100:  # the same for every reader (List-Unsubscribe-Post, a Date within a second)
        return _fold_cached(name, value)
    if name.lower() in VERBATIM_HEADERS and "=?" not in value and _PLAIN_TEXT.fullmatch(value):
        return fold_verbatim(name, value, WIRE_POLICY).encode("ascii")  # what its header object folds to
    return fold(name, value)


@lru_cache(maxsize=64)
def from_domain(from_addr: str) -> str:
    """The domain of a From address ("Name <addr>"), for Message-IDs: the same for every message."""
    return domain_of(from_addr.split("<")[-1].rstrip(">"))


@dataclass(frozen=True)
class _Skeleton:
    """A message's bytes with slots: a str piece is a header name (folded per message) or a body type."""

    pieces: tuple[bytes | str, ...]
    sender: str  # the From address: the envelope sender unless the caller gives one


@lru_cache(maxsize=32)
def _skeleton(
    from_addr: str, reply_to: str | None, subject: str, names: tuple[str, ...], extra: tuple[str, ...]
) -> _Skeleton | None:
    """`names`: the mail's own headers (set by to_mime); `extra`: those the transport adds after."""
    sample = OutgoingEmail(
        to="to@example.invalid",
        subject=subject,
        html="",
        text="",
        from_addr=from_addr,
        reply_to=reply_to,
        headers={n: "x" for n in names},
        message_id="<x@example.invalid>",
    )
    msg = to_mime(sample, "example.invalid")
    for name in extra:
        msg[name] = "x"
    per_message = {"to", "date", "message-id", *(n.lower() for n in names + extra)}
    if msg.get_content_type() != "multipart/alternative" or msg.preamble is not None or msg.epilogue is not None:
        return None
    leaves = [p for p in msg.iter_parts()]
    if sorted(p.get_content_type() for p in leaves) != sorted(_BODIES) or any(
        p.is_multipart() or p["Content-Transfer-Encoding"] != "quoted-printable" or p.get_content_charset() != "utf-8"
        for p in leaves
    ):
        return None
    senders = [addr for _, addr in getaddresses([str(msg["Sender"] or msg["From"])])]
    if len(senders) != 1 or not senders[0].isascii():
        return None
    # As the generator does: a random boundary (a quoted-printable body cannot hold "==", so no reader's can).
    boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    msg.set_boundary(boundary)
    pieces: list[bytes | str] = []

    def headers(part: EmailMessage, slots: set[str]) -> None:
        for name, value in part.raw_items():
            pieces.append(name if name.lower() in slots else WIRE_POLICY.fold_binary(name, value))
        pieces.append(_CRLF)

    headers(msg, per_message)
    for i, part in enumerate(leaves):
        pieces.append((b"\r\n" if i else b"") + f"--{boundary}\r\n".encode("ascii"))
        # iter_parts() yields the message's own class (EmailMessage); typeshed says Message.
        headers(part, set())  # type: ignore[arg-type]
        pieces.append(part.get_content_type())
    pieces.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return _Skeleton(tuple(pieces), senders[0])


def message_bytes(mail: OutgoingEmail, domain: str, extra: tuple[tuple[str, str], ...] = ()) -> Wire | None:
    """`to_mime(mail, domain)` with the `extra` headers added after it, as SMTP sends it (before
    dot-stuffing); None when it needs SMTPUTF8 or another shape (then use `to_mime`)."""
    if not mail.to.isascii():
        return None
    headers = {**mail.headers, **dict(extra)}
    skeleton = _skeleton(
        mail.from_addr, mail.reply_to or None, mail.subject, tuple(mail.headers), tuple(name for name, _ in extra)
    )
    if skeleton is None:
        return None
    if _PLAIN_ADDRESS.fullmatch(mail.to) and len(mail.to) <= _SHORT - 4:
        to, rcpts = b"To: " + mail.to.encode("ascii") + _CRLF, [mail.to]
    else:
        header = header_object("To", mail.to)
        to = WIRE_POLICY.fold_binary("To", header)
        rcpts = [addr for _, addr in getaddresses([str(header)])]
        if not all(a.isascii() for a in rcpts):
            return None
    msgid = mail.message_id or make_msgid(domain=domain)
    values: dict[str, bytes] = {
        "To": to,
        "Date": _fold_cached("Date", format_datetime(utcnow())),
        "Message-ID": (
            b"Message-ID: " + msgid.encode("ascii") + _CRLF
            if _PLAIN_MSGID.fullmatch(msgid) and len(msgid) <= _SHORT - 12
            else fold("Message-ID", msgid)
        ),
    }
    for name, value in headers.items():
        values[name] = _fold_value(name, value)
    out: list[bytes] = []
    for piece in skeleton.pieces:
        if isinstance(piece, bytes):
            out.append(piece)
        elif piece == "text/plain":
            out.append(qp_body(mail.text))
        elif piece == "text/html":
            out.append(qp_body(mail.html))
        else:
            out.append(values[piece])
    return Wire(skeleton.sender, rcpts, b"".join(out))


def dot_stuffed(data: bytes) -> bytes:
    """`data` as SMTP's DATA carries it: a line starting with a dot gets another (RFC 5321 4.5.2).

    The same as smtplib's `_quote_periods` (a regular expression: about 0.3 ms per 60 KB) in one
    bytes.replace."""
    return (b"." if data[:1] == b"." else b"") + data.replace(b"\n.", b"\n..")
