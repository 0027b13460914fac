"""The provider-neutral outgoing email, and its RFC 5322 form for the outbox and SMTP."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from email import policy as email_policy
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime, formataddr, make_msgid
from urllib.parse import quote, urlsplit, urlunsplit

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
    # Stable key of this message (e.g. delivery id) for file names.
    key: str = ""
    # `<...@domain>` from `MessageIds`, stable for a resend of the same delivery; empty: a random one.
    message_id: str = ""


class MessageIds:
    """Message-IDs that are unique across installations and database restores, and unguessable.

    A keyed BLAKE2b MAC (128 bits) of what identifies one message (kind, week or mail kind, row id,
    recipient) under a key derived from this installation's secret and its own id (digest.installation):
    the same delivery built again on the same installation (a retried batch, `--retry-failed`) gets the
    same id, so providers de-duplicate a real duplicate; another installation, even a staging copy that
    shares production's secret, or a restored database that hands the same row id to another message,
    gets a different one. Nothing in it can be read back. BLAKE2b: a third of HMAC-SHA256's cost per reader.
    """

    PURPOSE = "digest.message-id"

    def __init__(self, key: bytes, domain: str, installation: str):
        """`key`: `Tokens.derived_key(MessageIds.PURPOSE)`, a key of its own derived from the secret;
        `installation`: `message_id_salt(session, issue_id)` (digest.installation), read once by the
        caller, mixed into the key here ("" for an issue enqueued before the rule: the key as it was)."""
        self._key = key[:64] if not installation else hashlib.blake2b(
            installation.encode("utf-8"), key=key[:64], digest_size=64, person=b"digest.msgid").digest()
        self.domain = domain

    def make(self, *parts: str) -> str:
        data = "\0".join(parts).encode("utf-8", "surrogatepass")
        return f"<{hashlib.blake2b(data, key=self._key, digest_size=16).hexdigest()}@{self.domain}>"


def sender_address(settings: Settings) -> str:
    return formataddr((settings.sender.from_name, settings.sender.from_email))


_URI_SAFE = "/:@!$&'()*+,;=?#[]%~"  # ASCII URI characters kept as they are; the rest is %-encoded UTF-8


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return quote(host, safe="")


def ascii_uri(uri: str) -> str:
    """The URI form of an IRI (RFC 3987 3.1): IDNA host, %-encoded UTF-8 elsewhere; a header holds ASCII only."""
    if uri.isascii():
        return uri
    if uri.lower().startswith("mailto:"):
        address, sep, query = uri[7:].partition("?")
        local, at, domain = address.rpartition("@")
        return f"mailto:{quote(local, safe=_URI_SAFE)}{at}{_idna(domain)}{sep}{quote(query, safe=_URI_SAFE)}"
    parts = urlsplit(uri)
    netloc = _idna(parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=_URI_SAFE), quote(parts.query, safe=_URI_SAFE),
                       quote(parts.fragment, safe=_URI_SAFE)))


def unsubscribe_headers(settings: Settings, unsubscribe_url: str, token: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click headers (invariant 4), as ASCII URIs even for an international domain."""
    mailto = ascii_uri(f"mailto:{settings.sender.unsubscribe_mailto}?subject=unsubscribe%20{token}")
    return {
        "List-Unsubscribe": f"<{ascii_uri(unsubscribe_url)}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


class VerbatimHeader(UnstructuredHeader):
    """A header whose value machines parse as written (URIs, keys): plain ASCII, never RFC 2047.

    The standard policy turns any header line over 78 characters that has no space to fold at into
    encoded-words (`=?utf-8?q?=3Chttps...`), which is not a URI any more: RFC 2369/8058 readers such as
    Gmail then ignore List-Unsubscribe. This one folds only after a comma and keeps every byte as given.
    """

    name: str  # set by BaseHeader, which the registry mixes in (typeshed's UnstructuredHeader lacks it)

    def fold(self, *, policy: Policy) -> str:
        return fold_verbatim(self.name, str(self), policy)


def fold_verbatim(name: str, value: str, policy: Policy) -> str:
    """`name: value` folded only after a comma, every byte as given (see VerbatimHeader)."""
    if not value.isascii() or any(c in value for c in "\r\n"):
        raise ValueError(f"{name}: expected one line of ASCII, got {value!r}")
    limit = policy.max_line_length or 998
    lines = [f"{name}: "]
    for i, part in enumerate(value.split(", ")):
        piece = part if i == 0 else f" {part}"
        if i and len(lines[-1]) + len(piece) + 1 > limit:
            lines[-1] += ","
            lines.append(piece)
        else:
            lines[-1] += ("," if i else "") + piece
    return policy.linesep.join(lines) + policy.linesep


# Headers a program reads as written; everything else (Subject, From with a non-ASCII name) keeps the
# standard RFC 2047 handling.
VERBATIM_HEADERS = ("list-unsubscribe", "list-unsubscribe-post", "resend-idempotency-key")


def _mail_policy() -> Policy:
    registry = HeaderRegistry()
    for name in VERBATIM_HEADERS:
        # The registry builds the header class as (VerbatimHeader, BaseHeader), as the stdlib's own classes are;
        # typeshed types the argument as that finished class.
        registry.map_to_type(name, VerbatimHeader)  # type: ignore[arg-type]
    return email_policy.default.clone(header_factory=registry)


MAIL_POLICY = _mail_policy()


def to_mime(mail: OutgoingEmail, domain: str) -> EmailMessage:
    """The RFC 5322 message; outbox and SMTP both serialize it with its own MAIL_POLICY."""
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["From"] = mail.from_addr
    msg["To"] = mail.to
    if mail.reply_to:
        msg["Reply-To"] = mail.reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = mail.message_id or make_msgid(domain=domain)
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
