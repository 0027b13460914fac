"""The provider-neutral outgoing email, and its RFC 5322 form for the outbox and SMTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from digest.config import Settings
from digest.weeks import utcnow


@dataclass
class OutgoingEmail:
    to: str
    subject: str
    html: str
    text: str
    from_addr: str  # "Name <addr>"
    reply_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # Stable key of this message (e.g. delivery id) for file names and Message-ID.
    key: str = ""


def sender_address(settings: Settings) -> str:
    return formataddr((settings.sender.from_name, settings.sender.from_email))


def unsubscribe_headers(settings: Settings, unsubscribe_url: str, token: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click headers (invariant 4)."""
    mailto = f"mailto:{settings.sender.unsubscribe_mailto}?subject=unsubscribe%20{token}"
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def to_mime(mail: OutgoingEmail, domain: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = mail.from_addr
    msg["To"] = mail.to
    if mail.reply_to:
        msg["Reply-To"] = mail.reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = f"<{mail.key or id(mail)}@{domain}>"
    for name, value in mail.headers.items():
        msg[name] = value
    msg.set_content(mail.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(mail.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def domain_of(address: str) -> str:
    try:
        return Address(addr_spec=address).domain or "localhost"
    except Exception:  # noqa: BLE001 - only used for Message-ID; never fail a send over it
        return "localhost"
