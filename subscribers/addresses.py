"""Address validation and normalization (email-validator), shared by every way in."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from digest import plaintext
from digest.errors import UserError

MAX_EMAIL = 254
# Gmail ignores dots in the local part, and googlemail.com is the same mailbox as gmail.com.
_GMAIL = frozenset({"gmail.com", "googlemail.com"})
MAX_NAME = 60  # room for long full names ("Maria del Carmen Fernández-Villaverde"), not for messages
# A URL or something a mail client would turn into a link: scheme://, www., host.tld/path.
_NAME_BREAK = re.compile("[\r\n\0\u2028\u2029\x85]")
_NAME_LINK = re.compile(r"[a-z][a-z0-9+.-]*://|\bwww\.|[\w-]+\.[\w.-]*[a-z]{2,}\s*/", re.I)


class AddressError(UserError):
    """An address or name that cannot be accepted; the message says why."""


def normalize_email(raw: str, *, check_deliverability: bool = False) -> str:
    value = (raw or "").strip()
    if not value:
        raise AddressError("email: an address is required")
    if any(c in value for c in "\r\n\0"):
        raise AddressError("email: line breaks are not allowed in an address")
    if len(value) > MAX_EMAIL:
        raise AddressError(f"email: longer than {MAX_EMAIL} characters")
    try:
        info = validate_email(value, check_deliverability=check_deliverability, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise AddressError(f"email: {value[:80]!r} is not a valid address ({exc})") from None
    # An international domain is stored in its ASCII (punycode) form: the same mailbox is one row
    # however it was typed, and every transport can put it on the wire. A non-ASCII local part
    # has no ASCII form; it stays as typed (it needs SMTPUTF8, see the SMTP transport).
    address = f"{info.local_part}@{info.ascii_domain}" if info.ascii_domain else info.normalized
    # Lists treat addresses case-insensitively, as every major provider does.
    return address.lower()


# An address email-validator passes through unchanged but for the domain: a dot-atom of ASCII
# `atext` before the @ (RFC 5322 3.2.3, the library's own first pattern); after it ASCII letters,
# digits, dots and hyphens, or any character beyond ASCII (none of which the library splits at).
_PLAIN = re.compile(
    r"([a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*)"
    r"@([a-zA-Z0-9.\-\u0080-\U0010ffff]+)"
)


class BulkNormalizer:
    """`normalize_email` for a whole file: the same answer for every address, the domain checked once.

    Two thirds of email-validator's time goes to the domain (IDNA and UTS 46 per character),
    and a list of a million readers has a few thousand domains. For a plain address (see
    `_PLAIN`) the library's answer is its local part as given and the domain's ASCII form, after
    the same length checks (the address as given, and with the domain in each of its forms, in UTF-8):
    so the domain's result is kept per domain and those checks are repeated here. Anything
    else, and any address that fails a check, goes through `normalize_email` itself (so every
    refusal carries its exact message). tests/test_bulk_normalizer.py holds the two equal.
    """

    def __init__(self, max_domains: int = 100_000) -> None:
        self._domains: dict[str, tuple[str, int] | None] = {}
        self._max = max_domains

    def __call__(self, raw: str) -> str:
        value = (raw or "").strip()
        plain = _PLAIN.fullmatch(value) if len(value) <= MAX_EMAIL else None
        domain = self._domain(plain.group(2)) if plain else None
        if plain is None or domain is None or len(plain.group(1)) + 1 + domain[1] > MAX_EMAIL:
            return normalize_email(raw)
        return f"{plain.group(1)}@{domain[0]}".lower()

    def _domain(self, typed: str) -> tuple[str, int] | None:
        """The domain's ASCII form and the UTF-8 length of its longest form (typed, Unicode, ASCII),
        from email-validator's answer for `a@domain`; None when it is refused. Kept per domain as typed."""
        if typed not in self._domains:
            if len(self._domains) >= self._max:
                self._domains.clear()
            try:
                info = validate_email(f"a@{typed}", check_deliverability=False, allow_smtputf8=True)
            except EmailNotValidError:
                self._domains[typed] = None
            else:
                forms = (typed, info.domain, info.ascii_domain)
                self._domains[typed] = (info.ascii_domain, max(len(f.encode("utf-8")) for f in forms))
        return self._domains[typed]


def canonical_mailbox(address: str) -> str:
    """The mailbox a normalized address delivers to, for counting only (never stored or mailed).

    Sign-up limits and the confirmation budget key on it, so `victim+1@`, `victim+2@` ... (and
    `v.i.c.t.i.m@gmail.com`) share one budget. Only `+` starts a tag: `-` is part of too many
    real names (`anne-marie@`) to merge them, and each domain's hourly cap bounds the rest."""
    local, _, domain = address.lower().rpartition("@")
    local = local.split("+", 1)[0] or local  # "+tag@" alone: no name before the tag, keep it whole
    if domain in _GMAIL:
        local, domain = local.replace(".", "") or local, "gmail.com"
    return f"{local}@{domain}"


def clean_name(raw: str | None) -> str | None:
    """A person's name as it may appear in a greeting: one line of text, no links, no control codes.

    Names reach emails ("Hi Ann,"), so one that carries a URL is refused rather than mailed
    (a phishing line in someone else's greeting), and so is anything longer than a name needs.
    """
    if raw is None:
        return None
    if _NAME_BREAK.search(raw):
        raise AddressError("name: line breaks are not allowed in a name")
    # C0/C1 controls, tabs, lone surrogates (JSON "\\ud800", a non-UTF-8 byte in argv) and Unicode
    # noncharacters: they reach templates, headers and terminals, and a name never needs one.
    bad = plaintext.problem(raw)
    if bad:
        raise AddressError(f"name: not valid text: {bad}")
    value = " ".join(raw.split())
    if len(value) > MAX_NAME:
        raise AddressError(f"name: longer than {MAX_NAME} characters")
    if _NAME_LINK.search(value):
        raise AddressError("name: web addresses are not allowed in a name")
    return value or None
