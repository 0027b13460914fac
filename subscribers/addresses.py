"""Address validation and normalization (email-validator), shared by every way in."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from digest import plaintext
from digest.errors import UserError

MAX_EMAIL = 254
MAX_NAME = 100


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
    # Lists treat addresses case-insensitively, as every major provider does.
    return info.normalized.lower()


def clean_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = " ".join(raw.split())
    if any(c in raw for c in "\r\n\0"):
        raise AddressError("name: line breaks are not allowed in a name")
    if len(value) > MAX_NAME:
        raise AddressError(f"name: longer than {MAX_NAME} characters")
    try:  # a lone surrogate (JSON "\\ud800", a non-UTF-8 byte in argv) cannot be stored or mailed
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AddressError("name: contains characters that are not valid text") from None
    bad = plaintext.problem(raw, multiline=True)  # controls and escape sequences reach templates and terminals
    if bad:
        raise AddressError(f"name: not valid text: {bad}")
    return value or None
