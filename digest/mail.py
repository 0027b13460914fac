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
    recipient) under a key derived from this installation's secret and its own id (digest.storage.installation):
    the same delivery built again on the same installation (a retried batch, `--retry-failed`) gets the
    same id, so providers de-duplicate a real duplicate; another installation, even a staging copy that
    shares production's secret, or a restored database that hands the same row id to another message,
    gets a different one. Nothing in it can be read back. BLAKE2b: a third of HMAC-SHA256's cost per reader.
    """

    PURPOSE = "digest.message-id"

    def __init__(self, key: bytes, domain: str, installation: str):
        """`key`: `Tokens.derived_key(MessageIds.PURPOSE)`, a key of its own derived from the secret;
        `installation`: `message_id_salt(session, issue_id)` (digest.storage.installation), read once by the
        caller, mixed into the key here ("" for an issue enqueued before the rule: the key as it was)."""
        self._key = (
            key[:64]
            if not installation
            else hashlib.blake2b(
                installation.encode("utf-8"), key=key[:64], digest_size=64, person=b"digest.msgid"
            ).digest()
        )
        self.domain = domain

    def make(self, *parts: str) -> str:
        data = "\0".join(parts).encode("utf-8", "surrogatepass")
        return f"<{hashlib.blake2b(data, key=self._key, digest_size=16).hexdigest()}@{self.domain}>"


def sender_address(settings: Settings) -> str:
    return formataddr((settings.sender.from_name, settings.sender.from_email))


# RFC 3986's characters each component may hold as they are; any other character is %-encoded UTF-8. `%` is
# kept: an IRI may already hold %-escapes, and encoding them again would change the URI it stands for.
_SUB_DELIMS = "!$&'()*+,;="
_USERINFO_SAFE = _SUB_DELIMS + ":%"
_PATH_SAFE = _SUB_DELIMS + ":@%/"
_QUERY_SAFE = _PATH_SAFE + "?"  # the fragment's too
_MAX_PORT = 65535
_HOST = "host is a domain name IDNA can write or an IP literal in brackets"


class NoUriForm(ValueError):
    """An IRI that cannot be written as a URI. `expected` says what its authority lacks, in words a
    refusal can quote (`port is a number from 0 to 65535`); never the input, which may be anything."""

    def __init__(self, expected: str):
        super().__init__(f"expected a URL whose {expected}")
        self.expected = expected


def _idna(host: str) -> str:
    """A host as IDNA writes it (`bücher.example` -> `xn--bcher-kva.example`). NoUriForm for one it cannot
    write (an empty or over-long label, a prohibited character): %-encoding it instead gives a URI no browser
    resolves, since browsers decode such a host and apply IDNA to it themselves."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise NoUriForm(_HOST) from None


def _host_port(hostport: str) -> tuple[str, str]:
    """(host, port) of an authority without its userinfo; an IP literal keeps its brackets (without them
    `::1:8080` reads as no host and port at all). urlsplit has already refused an unbalanced bracket."""
    if hostport.startswith("["):
        end = hostport.find("]") + 1
        host, rest = hostport[:end], hostport[end:]
        if not end or not host.isascii():
            raise NoUriForm(_HOST)
        return host, rest.removeprefix(":")
    host, _, port = hostport.partition(":")
    return _idna(host) if host else host, port


def _port(port: str) -> str:
    """The port as given; empty is dropped (RFC 3986 6.2.3). NoUriForm for anything but 0-65535 in ASCII
    digits, which urllib, browsers and the reader's connection all refuse."""
    if not port:
        return ""
    if not (port.isascii() and port.isdigit() and int(port) <= _MAX_PORT):
        raise NoUriForm(f"port is a number from 0 to {_MAX_PORT}")
    return f":{port}"


def _authority(netloc: str) -> str:
    """userinfo@host:port as a URI holds it: userinfo %-encoded (dropping it sends the reader elsewhere), an
    IDNA host or a bracketed IP literal, the port checked."""
    userinfo, at, hostport = netloc.rpartition("@")
    host, port = _host_port(hostport)
    return f"{quote(userinfo, safe=_USERINFO_SAFE)}{at}{host}{_port(port)}"


def _mailto(uri: str) -> str:
    """RFC 6068: local part and query %-encoded UTF-8, the domain IDNA. The address was checked when the
    configuration was read; a domain IDNA cannot write is %-encoded rather than stop a List-Unsubscribe."""
    address, sep, query = uri[7:].partition("?")
    local, at, domain = address.rpartition("@")
    try:
        host = _idna(domain)
    except NoUriForm:
        host = quote(domain, safe="")
    return f"mailto:{quote(local, safe=_PATH_SAFE)}{at}{host}{sep}{quote(query, safe=_QUERY_SAFE)}"


def iri_to_uri(uri: str) -> str:
    """The URI form of an IRI (RFC 3987 3.1), every component rewritten: IDNA host, %-encoded UTF-8 elsewhere.

    NoUriForm for one that has none (a port out of range, a host IDNA cannot write, an IP literal that is
    not one): ingest refuses it with file, line and field, the click redirect answers "link not valid"."""
    if uri.lower().startswith("mailto:"):
        return _mailto(uri)
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unbalanced bracket or no IP address inside them; urllib's message quotes the input
        raise NoUriForm(_HOST) from None
    return urlunsplit(
        (
            parts.scheme,
            _authority(parts.netloc),
            quote(parts.path, safe=_PATH_SAFE),
            quote(parts.query, safe=_QUERY_SAFE),
            quote(parts.fragment, safe=_QUERY_SAFE),
        )
    )


def ascii_uri(uri: str) -> str:
    """An ASCII URI as given, an IRI as its URI (`iri_to_uri`, NoUriForm when it has none): a header holds
    ASCII only, and a URI already written is not rewritten (urlunsplit would drop an empty `?` or `#`)."""
    return uri if uri.isascii() else iri_to_uri(uri)


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
