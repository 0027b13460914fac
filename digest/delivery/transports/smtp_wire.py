"""A message's SMTP bytes without the slow, pure-Python parts of the email package.

`mime` is `to_mime`'s message with its two bodies quoted-printable encoded by
`binascii` (C) rather than `email.quoprimime` (Python, about 3 ms for a 60 KB digest):
`to_mime` still makes every header and the structure; if its shape is not the one
expected (two UTF-8, quoted-printable text parts) the message is `to_mime`'s own.

`smtplib.send_message` flattens with `BytesGenerator`, which writes a 60 KB
quoted-printable body one line at a time: about half the CPU of sending a digest
over SMTP. Our messages are already transfer-encoded (`to_mime`), so their bytes are
the folded headers and the payloads joined with the MIME boundaries; this builds
exactly what the generator would (a test compares them) for messages whose envelope
and payloads are plain ASCII, and says None for anything else (SMTPUTF8, 8-bit
bodies), which then goes through `send_message` as before.
"""

from __future__ import annotations

import binascii
import dataclasses
import random
import sys
from email.message import EmailMessage
from email.policy import Policy
from email.utils import getaddresses
from functools import lru_cache

from digest.mail import OutgoingEmail, to_mime

_CRLF = "\r\n"


def mime(mail: OutgoingEmail, domain: str) -> EmailMessage:
    msg = to_mime(dataclasses.replace(mail, html="", text=""), domain)
    bodies = {"text/plain": mail.text, "text/html": mail.html}
    leaves = [p for p in msg.walk() if not p.is_multipart()]
    if sorted(p.get_content_type() for p in leaves) != sorted(bodies) or any(
            p["Content-Transfer-Encoding"] != "quoted-printable" or p.get_content_charset() != "utf-8"
            for p in leaves):
        return to_mime(mail, domain)
    for part in leaves:
        part.set_payload(_qp(bodies[part.get_content_type()]))
    return msg


def _qp(text: str) -> str:
    """As `set_content(text, cte="quoted-printable")` normalizes it (lines, final newline), encoded in C."""
    data = b"\n".join(text.encode("utf-8").splitlines()) + b"\n"
    return binascii.b2a_qp(data, istext=True).decode("ascii")


def wire(msg: EmailMessage) -> tuple[str, list[str], bytes] | None:
    """(envelope sender, recipients, data) as `send_message` would send them, or None."""
    sender = msg["Sender"] or msg["From"]
    rcpts = [addr for _, addr in getaddresses([str(v) for f in ("To", "Cc") for v in msg.get_all(f, [])])]
    envelope = [addr for _, addr in getaddresses([str(sender)])] + rcpts
    if msg["Bcc"] is not None or msg["Resent-Bcc"] is not None or not all(a.isascii() for a in envelope):
        return None
    policy = _crlf(msg.policy)
    out: list[bytes] = []
    if not _write(msg, policy, out):
        return None
    return envelope[0], rcpts, b"".join(out)


@lru_cache(maxsize=8)
def _crlf(policy: Policy) -> Policy:
    return policy.clone(linesep=_CRLF)


@lru_cache(maxsize=512)
def _fold_text(policy: Policy, name: str, value: str) -> bytes:
    return policy.fold_binary(name, value)


def _fold(policy: Policy, name: str, value: object) -> bytes:
    """Most headers are the same in every reader's message (From, Subject, the parts' types):
    folded once. A header object is folded from its value, so equal text folds equally."""
    text = str(value)
    if len(text) > 200:  # long, per-reader values (List-Unsubscribe) are not worth keeping
        # A header object (not a str) folds from its parsed value; typeshed allows str only.
        return policy.fold_binary(name, value)  # type: ignore[arg-type]
    return _fold_text(policy, name, text)


def _write(part: EmailMessage, policy: Policy, out: list[bytes]) -> bool:
    boundary = None
    if part.is_multipart():
        boundary = part.get_boundary()
        if boundary is None:  # as the generator does: a fresh one, recorded in Content-Type
            boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
            part.set_boundary(boundary)
    for name, value in part.raw_items():
        out.append(_fold(policy, name, value))
    out.append(b"\r\n")
    if boundary is None:
        payload = part.get_payload()
        if not isinstance(payload, str) or not payload.isascii():
            return False
        out.append(payload.replace("\r\n", "\n").replace("\n", _CRLF).encode("ascii"))
        return True
    if part.preamble is not None:
        out.append((part.preamble.replace("\n", _CRLF) + _CRLF).encode("ascii"))
    for i, sub in enumerate(part.iter_parts()):
        out.append(f"{_CRLF if i else ''}--{boundary}{_CRLF}".encode("ascii"))
        # iter_parts() yields the message's own class (EmailMessage); typeshed says Message.
        if not _write(sub, policy, out):  # type: ignore[arg-type]
            return False
    out.append(f"{_CRLF}--{boundary}--{_CRLF}".encode("ascii"))
    if part.epilogue is not None:
        out.append(part.epilogue.replace("\n", _CRLF).encode("ascii"))
    return True
