"""POST /webhooks/postmark: Postmark's Bounce, SpamComplaint and Delivery webhooks as DeliveryEvents.

Postmark does not sign its webhooks; it sends the HTTP Basic credentials written into the
webhook URL (`https://user:password@host/webhooks/postmark`). Those credentials are the
signature: both must match POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD (compared in
constant time), or the request is refused with 401 before its body is read as JSON.

The record's `MessageID` is the id the batch API returned for the message (what the transport
stored); `RecordType` says what happened, and for a bounce `Type`/`TypeCode` how bad it is.
The record's numeric `ID` names the bounce, so a replay is recognised by the applier.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from typing import Any

from digest.delivery.events import DeliveryEvent, EventError, EventKind, parse_time, text
from digest.web.schema import JSON_ERROR, JSON_OBJECT, TOO_LARGE, answer

PROVIDER = "postmark"
USER, PASSWORD = "POSTMARK_WEBHOOK_USER", "POSTMARK_WEBHOOK_PASSWORD"
# Bounce types that say the address cannot receive mail (Postmark deactivates it too).
HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
# Bounce types that may pass: counted, and suppress after a run of them.
SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "Undeliverable", "SMTPApiError"}
COMPLAINT = {"SpamComplaint"}


def verify(user: str, password: str, headers: Mapping[str, str]) -> None:
    """The Basic credentials of the webhook URL: 503 unconfigured, 401 wrong or missing."""
    if not user or not password:
        raise EventError(503, f"webhook credentials not configured (set {USER} and {PASSWORD})")
    scheme, _, value = headers.get("authorization", "").partition(" ")
    try:
        given = base64.b64decode(value.strip(), validate=True).decode("utf-8") if scheme.lower() == "basic" else ""
    except (binascii.Error, UnicodeDecodeError):
        given = ""
    given_user, sep, given_password = given.partition(":")
    ok = hmac.compare_digest(given_user.encode(), user.encode()) & hmac.compare_digest(
        given_password.encode(), password.encode()
    )
    if not sep or not ok:
        raise EventError(401, "invalid credentials")


def parse(body: bytes) -> list[DeliveryEvent]:
    """One record per request; 400 when the body is not one of Postmark's."""
    try:
        record = json.loads(body)
        record_type = record["RecordType"]
        if not isinstance(record, dict) or not isinstance(record_type, str):
            raise ValueError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise EventError(400, "body is not a Postmark webhook record (JSON with RecordType)") from None
    kind, detail = _kind(record_type, record)
    event_id = record.get("ID") if record_type != "Delivery" else record.get("MessageID")
    if not isinstance(event_id, (int, str)) or isinstance(event_id, bool) or not str(event_id):
        raise EventError(400, f"{record_type} record without an ID")
    when = record.get("DeliveredAt") if record_type == "Delivery" else record.get("BouncedAt")
    recipient = record.get("Recipient") if record_type == "Delivery" else record.get("Email")
    return [
        DeliveryEvent(
            kind=kind,
            provider=PROVIDER,
            provider_event_id=f"{record_type}:{event_id}"[:90],
            provider_type=(f"{record_type}:{text(record.get('Type'), 40)}" if record.get("Type") else record_type)[:64],
            message_id=text(record.get("MessageID"), 100) or None,
            recipient=recipient if isinstance(recipient, str) else None,
            occurred_at=parse_time(when, "BouncedAt"),
            detail=detail,
        )
    ]


def _kind(record_type: str, record: dict[str, Any]) -> tuple[EventKind, dict[str, str]]:
    if record_type == "Delivery":
        return EventKind.DELIVERED, {}
    bounce_type = text(record.get("Type"), 40)
    detail = {
        "type": bounce_type,
        "code": str(record.get("TypeCode", ""))[:12],
        "diagnostic": text(record.get("Details"), 300),
    }
    if record_type == "SpamComplaint" or bounce_type in COMPLAINT:
        return EventKind.COMPLAINED, detail
    if record_type != "Bounce":
        return EventKind.OTHER, detail  # Open, Click, SubscriptionChange: acknowledged, no effect
    if bounce_type in HARD:
        return EventKind.HARD_BOUNCE, detail
    return (EventKind.SOFT_BOUNCE if bounce_type in SOFT else EventKind.OTHER), detail


def receive(rt: Any, body: bytes, headers: Mapping[str, str]) -> list[DeliveryEvent]:
    config = rt.config
    verify(config.secret(PROVIDER, USER), config.secret(PROVIDER, PASSWORD), headers)
    return parse(body)


OPERATION: dict[str, Any] = {
    "summary": "Postmark's Bounce, SpamComplaint and Delivery webhooks, authenticated by the Basic "
    "credentials of the webhook URL.",
    "requestBody": {"required": False, "content": JSON_OBJECT},
    "responses": {
        "200": answer("Handled (or a duplicate).", JSON_OBJECT),
        "400": answer("Authenticated, but not a Postmark record.", JSON_ERROR),
        "401": answer("Missing or wrong credentials.", JSON_ERROR),
        "413": TOO_LARGE,
        "503": answer("No webhook credentials configured.", JSON_ERROR),
    },
}
