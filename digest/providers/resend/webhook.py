"""POST /webhooks/resend: Resend's events, verified by their Svix signature over the raw body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from digest.delivery.events import DeliveryEvent
from digest.web.schema import JSON_ERROR, JSON_OBJECT, TOO_LARGE, answer

WEBHOOK_SECRET = "RESEND_WEBHOOK_SECRET"


def receive(rt: Any, body: bytes, headers: Mapping[str, str]) -> list[DeliveryEvent]:
    """Check the signature (401, or 503 without a secret), then parse the one event (400)."""
    from digest.providers.resend import events  # svix: imported by the first event, not by every config load

    svix_id = events.verify(rt.config.secret("resend", WEBHOOK_SECRET), body, headers)
    return events.parse(svix_id, body)


OPERATION: dict[str, Any] = {
    "summary": "Resend delivery events, verified by their Svix signature.",
    "requestBody": {"required": False, "content": JSON_OBJECT},
    "responses": {
        "200": answer("Handled (or a duplicate).", JSON_OBJECT),
        "400": answer("Signed, but not a Resend event.", JSON_ERROR),
        "401": answer("Missing or bad signature.", JSON_ERROR),
        "413": TOO_LARGE,
        "503": answer("No webhook secret configured.", JSON_ERROR),
    },
}
