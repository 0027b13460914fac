"""Resend's webhooks (Svix-signed) as DeliveryEvents.

The signature is checked over the raw body before anything is parsed; the svix-id is the
event id, so a replay is recognised by the applier.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from svix.webhooks import Webhook

from digest.delivery.events import DeliveryEvent, EventError, EventKind, parse_time, section, text

log = logging.getLogger("digest.providers.resend.events")

PROVIDER = "resend"
SIGNATURE_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")
_KINDS = {
    "email.delivered": EventKind.DELIVERED,
    "email.opened": EventKind.OPENED,
    "email.clicked": EventKind.CLICKED,
    "email.complained": EventKind.COMPLAINED,
}


def verify(secret: str, body: bytes, headers: Mapping[str, str]) -> str:
    """Check the Svix signature; returns the svix-id. 503 for a missing or malformed secret, 401 for a bad request."""
    if not secret:
        raise EventError(503, "webhook secret not configured (set RESEND_WEBHOOK_SECRET)")
    try:
        verifier = Webhook(secret)
    except Exception:  # noqa: BLE001 - a secret that is not whsec_<base64>
        log.error("RESEND_WEBHOOK_SECRET is not a valid whsec_... secret")
        raise EventError(503, "webhook secret misconfigured") from None
    wanted = {k: headers.get(k, "") for k in SIGNATURE_HEADERS}
    try:
        verifier.verify(body, wanted)
    except Exception:  # noqa: BLE001 - any malformed header or body fails verification the same way
        raise EventError(401, "invalid signature") from None
    return wanted["svix-id"]


def parse(svix_id: str, body: bytes) -> list[DeliveryEvent]:
    """The verified body as one event (Resend sends one recipient per event); 400 when it is not one."""
    try:
        payload = json.loads(body)
        event_type = payload["type"]
        data = payload.get("data") or {}
        if not isinstance(event_type, str) or not isinstance(data, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise EventError(400, "body is not a Resend event (JSON with type and data)") from None
    kind, detail = _kind(event_type, data)
    to = data.get("to")
    first = to[0] if isinstance(to, list) and to else to
    return [
        DeliveryEvent(
            kind=kind,
            provider=PROVIDER,
            provider_event_id=svix_id,
            provider_type=event_type[:64],
            message_id=text(data.get("email_id"), 100) or None,
            recipient=first if isinstance(first, str) else None,
            occurred_at=parse_time(payload.get("created_at"), "created_at"),
            detail=detail,
        )
    ]


def _kind(event_type: str, data: dict[str, Any]) -> tuple[EventKind, dict[str, str]]:
    if event_type == "email.bounced":
        bounce = section(data, "bounce")
        kind = text(bounce.get("type"), 40)
        detail = {"type": kind, "subtype": text(bounce.get("subType"), 60)}
        return (EventKind.HARD_BOUNCE if kind.lower() == "permanent" else EventKind.SOFT_BOUNCE), detail
    if event_type == "email.clicked":
        click = section(data, "click")
        return EventKind.CLICKED, {"url": text(click.get("link"), 500)}
    return _KINDS.get(event_type, EventKind.OTHER), {}
