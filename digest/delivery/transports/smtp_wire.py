"""A message's SMTP bytes without the email package's line-by-line generator.

`smtplib.send_message` flattens with `BytesGenerator`, which writes a 60 KB
quoted-printable body one line at a time: about half the CPU of sending a digest
over SMTP. Our messages are already transfer-encoded (`to_mime`), so their bytes are
the folded headers and the payloads joined with the MIME boundaries; this builds
exactly what the generator would (a test compares them) for messages whose envelope
and payloads are plain ASCII, and says None for anything else (SMTPUTF8, 8-bit
bodies), which then goes through `send_message` as before.
"""

from __future__ import annotations

import random
import sys
from email.message import EmailMessage
from email.policy import Policy
from email.utils import getaddresses

_CRLF = "\r\n"


def wire(msg: EmailMessage) -> tuple[str, list[str], bytes] | None:
    """(envelope sender, recipients, data) as `send_message` would send them, or None."""
    sender = msg["Sender"] or msg["From"]
    rcpts = [addr for _, addr in getaddresses([str(v) for f in ("To", "Cc") for v in msg.get_all(f, [])])]
    envelope = [addr for _, addr in getaddresses([str(sender)])] + rcpts
    if msg["Bcc"] is not None or msg["Resent-Bcc"] is not None or not all(a.isascii() for a in envelope):
        return None
    policy = msg.policy.clone(linesep=_CRLF)
    out: list[bytes] = []
    if not _write(msg, policy, out):
        return None
    return envelope[0], rcpts, b"".join(out)


def _write(part: EmailMessage, policy: Policy, out: list[bytes]) -> bool:
    boundary = None
    if part.is_multipart():
        boundary = part.get_boundary()
        if boundary is None:  # as the generator does: a fresh one, recorded in Content-Type
            boundary = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
            part.set_boundary(boundary)
    for name, value in part.raw_items():
        out.append(policy.fold_binary(name, value))
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
        if not _write(sub, policy, out):  # type: ignore[arg-type]
            return False
    out.append(f"{_CRLF}--{boundary}--{_CRLF}".encode("ascii"))
    if part.epilogue is not None:
        out.append(part.epilogue.replace("\n", _CRLF).encode("ascii"))
    return True
