"""VERP: each SMTP message's envelope sender names that message, so its bounce says whose it was.

With `bounce_address = "bounces@example.com"` the reader of delivery 42 gets mail from
`bounces+d42.<proof>@example.com`: the mail server returns a bounce to exactly that
address, and `digest subscribers bounce-mail` reads the message from it without looking
anything up by Message-ID. The proof is a keyed MAC of the message key and the address it
went to (digest.links), checked against our own row for that message: a report to a forged
address, or to a stranger's own VERP address naming someone else, changes nothing. The whole
local part stays within RFC 5321's 64 octets.
"""

from __future__ import annotations

from dataclasses import dataclass

from digest.config import Config
from digest.links import BOUNCE_KEY, BounceClaim, TokenError, Tokens

SEPARATOR = "+"  # Postfix's (and Exim's, Sendmail's) default recipient delimiter
MAX_LOCAL_PART = 64
# The longest token (`Tokens.bounce`: a 13-character key, a dot, a 20-character proof).
MAX_TOKEN = 34
MAX_BASE_LOCAL_PART = MAX_LOCAL_PART - len(SEPARATOR) - MAX_TOKEN


def check_bounce_address(value: str) -> str:
    """The config check for `bounce_address`: empty (off) or a plain address with room for a token."""
    if not value:
        return value
    local, at, domain = value.rpartition("@")
    if not at or not local or "." not in domain or any(c in value for c in " <>\"'\r\n"):
        raise ValueError("is not an email address")
    if SEPARATOR in local:
        raise ValueError(f"must not contain {SEPARATOR!r} before the @ (the token goes there)")
    if len(local) > MAX_BASE_LOCAL_PART:
        raise ValueError(
            f"has {len(local)} characters before the @; at most {MAX_BASE_LOCAL_PART} leave room "
            f"for the token within the 64 an address allows"
        )
    if not value.isascii():
        raise ValueError("must be plain ASCII (it is the SMTP envelope sender)")
    return value


@dataclass(frozen=True)
class Verp:
    """Builds and reads the VERP addresses of one `bounce_address` under one signing key."""

    bounce_address: str
    tokens: Tokens

    @property
    def local(self) -> str:
        return self.bounce_address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.bounce_address.rpartition("@")[2]

    def address(self, key: str, recipient: str) -> str:
        """The envelope sender (and Return-Path) of the message `key` to `recipient`.

        A message that is no reader's issue or list mail (an operator's test send) goes out from the
        plain bounce address: a bounce of it acts on nobody."""
        if not BOUNCE_KEY.fullmatch(key):
            return self.bounce_address
        return f"{self.local}{SEPARATOR}{self.tokens.bounce(key, recipient)}@{self.domain}"

    def read(self, address: str) -> BounceClaim | None:
        """The claim of an address shaped like one of our VERP addresses; None for anything else.
        Whether the claim is ours is known with its message's row: `belongs`."""
        address = address.strip().strip("<>").strip()
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() != self.domain.lower():
            return None
        base, sep, token = local.partition(SEPARATOR)
        if not sep or base.lower() != self.local.lower():
            return None
        try:
            return self.tokens.read_bounce(token)
        except TokenError:
            return None

    def belongs(self, claim: BounceClaim, recipient: str) -> bool:
        """Whether `claim` was made for the message to `recipient` (the address our row says it went to)."""
        return self.tokens.bounce_belongs(claim, recipient)


def from_config(config: Config) -> Verp | None:
    """The VERP of `[transport.smtp] bounce_address` (also read from the old `[smtp]`); None when unset."""
    address = config.transport_section("smtp").bounce_address
    return Verp(address, Tokens(config.secret_key)) if address else None
