"""Signed tokens and the personal links built from them: unsubscribe (never expires) and confirm (expires).

A neutral module below both the weekly cycle (delivery, preview) and the subscriber lifecycle,
so neither side imports the other (the import contract in pyproject.toml says so).

Tokens carry the subscriber id and a short hash of the address, so a token stops
working when the address is erased or changed, and cannot be moved to another person.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, want_bytes

from digest.config import Settings


def email_hash(email: str) -> str:
    """The suppression-list hash: stable across case of the domain and surrounding spaces."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def _tie(email: str) -> str:
    return email_hash(email)[:10]


def _ties(email: str) -> tuple[str, ...]:
    """The ties a link to `email` may carry: its own and, for a punycode domain, the Unicode spelling's.

    Addresses stored before IDN normalisation were rewritten to punycode (migration 0003_h17); the
    links in emails sent before then were signed with the Unicode spelling and must keep working.
    """
    local, _, domain = email.rpartition("@")
    if "xn--" not in domain:
        return (_tie(email),)
    try:
        unicode_domain = domain.encode("ascii").decode("idna")
    except UnicodeError:
        return (_tie(email),)
    return (_tie(email), _tie(f"{local}@{unicode_domain}"))


@dataclass(frozen=True)
class UnsubscribeClaim:
    subscriber_id: int
    issue_id: int | None
    tie: str

    def matches(self, email: str) -> bool:
        return self.tie in _ties(email)


@dataclass(frozen=True)
class BounceClaim:
    """What a VERP bounce token says: one message, by its transport key, and a proof that binds the
    key to the address that message went to. The proof is checked against our own row for the
    message (`Tokens.bounce_belongs`), never against anything a report says."""

    key: str  # the message's key (`d<delivery id>`, `m<mail id>`): the transport stores `<kind>:<key>`
    proof: str  # 96-bit MAC of the key and its recipient's address ("" for a legacy token)
    legacy_tie: str | None = None  # tokens signed before the proof: 24 bits of the address's plain hash


BOUNCE_KEY = re.compile(r"[a-z][0-9]{1,12}")
_BOUNCE_TOKEN = re.compile(r"([a-z][0-9]{1,12})\.([a-z2-7]{20})")


class _BounceSigner(Signer):
    """itsdangerous' signer with a short, lower-case signature: a VERP token sits in an address's
    local part (64 octets at most, RFC 5321) and some mail systems change its case.

    96 bits of HMAC-SHA256 in base32: nobody guesses one, and each guess costs a bounce mail."""

    BYTES = 12

    def get_signature(self, value: str | bytes) -> bytes:
        sig = self.algorithm.get_signature(self.derive_key(), want_bytes(value))[: self.BYTES]
        return base64.b32encode(sig).rstrip(b"=").lower()

    def verify_signature(self, value: str | bytes, sig: str | bytes) -> bool:
        return hmac.compare_digest(self.get_signature(value), want_bytes(sig).lower())


class TokenError(Exception):
    """Forged, garbled or expired: the page says so without revealing anything."""


class Tokens:
    def __init__(self, secret: str):
        self._derive = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
        self._unsub = URLSafeSerializer(secret, salt="digest.unsubscribe")
        self._confirm = URLSafeTimedSerializer(secret, salt="digest.confirm")
        # Precomputed signing parts: an issue signs one token per reader, and itsdangerous re-derives the
        # key and tries zlib on every dumps() (~4x the cost). Same format; `read_unsubscribe` checks it.
        signer = self._unsub.make_signer()
        self._unsub_mac = hmac.new(signer.derive_key(), digestmod=hashlib.sha1)
        self._unsub_sep = signer.sep
        self._bounce = _BounceSigner(secret, salt="digest.bounce", sep=".", digest_method=hashlib.sha256)
        self._bounce_mac = hmac.new(self.derived_key("digest.bounce-recipient"), digestmod=hashlib.sha256)

    def derived_key(self, purpose: str) -> bytes:
        """A key for another use of the secret (e.g. Message-IDs), independent of the token keys."""
        mac = self._derive.copy()
        mac.update(purpose.encode("utf-8"))
        return mac.digest()

    def unsubscribe(self, subscriber_id: int, email: str, issue_id: int | None = None) -> str:
        # No timestamp: the same subscriber and issue always give the same token (stable batch payloads).
        payload = base64_encode(json.dumps([subscriber_id, issue_id or 0, _tie(email)], separators=(",", ":")))
        mac = self._unsub_mac.copy()
        mac.update(payload)
        return (payload + self._unsub_sep + base64_encode(mac.digest())).decode("ascii")

    def read_unsubscribe(self, token: str) -> UnsubscribeClaim:
        try:
            sid, iid, tie = self._unsub.loads(token)
            return UnsubscribeClaim(int(sid), int(iid) or None, str(tie))
        except (BadSignature, ValueError, TypeError):
            raise TokenError("invalid unsubscribe token") from None

    def confirm(self, subscriber_id: int, email: str) -> str:
        return self._confirm.dumps([subscriber_id, _tie(email)])

    def read_confirm(self, token: str, max_age_days: int) -> tuple[int, str]:
        try:
            sid, tie = self._confirm.loads(token, max_age=max_age_days * 86400)
            return int(sid), str(tie)
        except SignatureExpired:
            raise TokenError("expired confirmation link") from None
        except (BadSignature, ValueError, TypeError):
            raise TokenError("invalid confirmation token") from None

    def bounce(self, key: str, email: str) -> str:
        """`<key>.<proof>`, lower case, at most 34 characters (the VERP part of a bounce address).

        The proof is a keyed MAC of the key and the recipient's address: nobody without the secret can
        make one, or find another address that matches it (a plain 24-bit hash could be matched by a
        look-alike address in seconds), and a reused row id (a restore, SQLite handing out a deleted
        row's id again) does not carry the old message's token over to its new recipient."""
        if not BOUNCE_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a message key (a letter and up to 12 digits)")
        return f"{key}.{self._bounce_proof(key, email)}"

    def _bounce_proof(self, key: str, email: str) -> str:
        mac = self._bounce_mac.copy()
        mac.update(f"{key}\0{email.strip().lower()}".encode())
        return base64.b32encode(mac.digest()[:12]).decode("ascii").rstrip("=").lower()

    def read_bounce(self, token: str) -> BounceClaim:
        """The claim of a token's shape (any case: mail systems may fold it); TokenError for anything else.

        Whether it is ours is known only with the message's row: `bounce_belongs`. A legacy token
        (`<key>.<tie>.<signature>`, before the proof) is checked by its signature here."""
        token = token.lower()
        if len(token) > 64:
            raise TokenError("invalid bounce token")
        if found := _BOUNCE_TOKEN.fullmatch(token):
            return BounceClaim(found[1], found[2])
        try:
            key, tie = self._bounce.unsign(token).decode("ascii").split(".")
        except (BadSignature, ValueError, UnicodeDecodeError):
            raise TokenError("invalid bounce token") from None
        if not BOUNCE_KEY.fullmatch(key):
            raise TokenError("invalid bounce token")
        return BounceClaim(key, "", legacy_tie=tie)

    def bounce_belongs(self, claim: BounceClaim, email: str) -> bool:
        """Whether the claim was made for a message to `email`, the address our own row says it went to.

        A legacy token binds by 24 bits of a plain hash only, so it is taken for an issue's delivery (whose
        row is never deleted, so its id never goes to another reader), not for a confirmation or welcome
        mail (whose rows are deleted, and whose ids SQLite may hand out again)."""
        if claim.legacy_tie is not None:
            return claim.key.startswith("d") and any(claim.legacy_tie == t[:6] for t in _ties(email))
        return hmac.compare_digest(claim.proof, self._bounce_proof(claim.key, email))

    @staticmethod
    def tie(email: str) -> str:
        return _tie(email)

    @staticmethod
    def tie_matches(email: str, tie: str) -> bool:
        """Whether a confirmation token's tie belongs to `email` (either spelling of an IDN domain)."""
        return tie in _ties(email)


def personal_links(
    settings: Settings, tokens: Tokens, subscriber_id: int, email: str, issue_id: int | None, week: str | None
) -> dict[str, str]:
    """One reader's unsubscribe, manage and web-version links (the token is stable per subscriber and issue)."""
    base = settings.site.public_url
    token = tokens.unsubscribe(subscriber_id, email, issue_id)
    return {
        "unsubscribe_url": f"{base}/u/{token}",
        "manage_url": f"{base}/preferences/{token}",
        "view_url": f"{base}/archive/{week}" if week else f"{base}/archive",
        "token": token,
    }


@dataclass(frozen=True)
class ClickClaim:
    """What a click token names; `edition_id` None: the issue's own links (tokens made before editions)."""

    issue_id: int
    edition_id: int | None
    delivery_id: int
    link: int


class ClickTokens:
    """Short signed tokens for tracked links: `/c/<token>` names an issue, an edition, a delivery and a link.

    Layout (26 characters, URL-safe): 2 hex digits of the link's position in the edition's frozen
    links, 16 of base64url(issue id: 3 bytes, edition id: 4 bytes, delivery id: 5 bytes), 8 of
    base64url of a 48-bit tag. Tokens made before editions (22 characters) have no edition bytes
    and name a position in the issue's links; they keep working. The tags of one message are
    consecutive 6-byte pieces of one keyed SHAKE256 output over its head (the keyed-sponge
    construction KMAC uses), so a whole message costs one hash call, one base64 call and a few
    C-level maps (no Python loop per link), and changing the position, the edition, the delivery
    or the issue breaks the tag.
    """

    LENGTH = 26
    LEGACY_LENGTH = 22  # no edition: the issue's links (and the open pixel's tokens)
    MAX_LINKS = 256

    def __init__(self, tokens: Tokens, purpose: str = "digest.click"):
        self._key = tokens.derived_key(purpose)
        self._hex = [f"{i:02x}" for i in range(self.MAX_LINKS)]
        self._slices = [slice(8 * i, 8 * i + 8) for i in range(self.MAX_LINKS)]

    def for_message(
        self,
        issue_id: int,
        delivery_id: int,
        count: int,
        lead: Sequence[str] | None = None,
        edition_id: int | None = None,
    ) -> list[str]:
        """The tokens of links 0..count-1 of one reader's copy of an edition (None: the issue's links);
        `lead` (from `leads`) puts a URL in front of each in the same pass (the sender's per-reader cost)."""
        head = (
            issue_id.to_bytes(3, "big") + delivery_id.to_bytes(6, "big")
            if edition_id is None
            else issue_id.to_bytes(3, "big") + edition_id.to_bytes(4, "big") + delivery_id.to_bytes(5, "big")
        )
        tags = binascii.b2a_base64(hashlib.shake_256(self._key + head).digest(6 * count), newline=False)
        prefix = binascii.b2a_base64(head, newline=False).translate(_URLSAFE_B64).decode("ascii")
        chunks = map(tags.translate(_URLSAFE_B64).decode("ascii").__getitem__, self._slices[:count])
        return list(map(operator.add, map(operator.add, lead or self._hex, repeat(prefix, count)), chunks))

    def leads(self, base: str) -> list[str]:
        """`base` + each position's two hex digits: pass to `for_message` for whole URLs."""
        return [base + h for h in self._hex]

    def read(self, token: str) -> ClickClaim:
        """What the token names; TokenError for anything not made by `for_message`."""
        if len(token) not in (self.LENGTH, self.LEGACY_LENGTH) or not _URLSAFE.fullmatch(token):
            raise TokenError("invalid link token")
        try:
            link = int(token[:2], 16)
            head = base64.urlsafe_b64decode(token[2:-8])
            tag = base64.urlsafe_b64decode(token[-8:])
        except ValueError:
            raise TokenError("invalid link token") from None
        if token[:2] != self._hex[link]:  # one spelling only (lower-case hex)
            raise TokenError("invalid link token")
        expected = hashlib.shake_256(self._key + head).digest(6 * (link + 1))[6 * link :]
        if not hmac.compare_digest(expected, tag):
            raise TokenError("invalid link token")
        if len(head) == 12:
            return ClickClaim(
                int.from_bytes(head[:3], "big"), int.from_bytes(head[3:7], "big"), int.from_bytes(head[7:], "big"), link
            )
        return ClickClaim(int.from_bytes(head[:3], "big"), None, int.from_bytes(head[3:], "big"), link)


_URLSAFE_B64 = bytes.maketrans(b"+/", b"-_")
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")
