"""Amazon SES events (delivered through SNS) as DeliveryEvents.

Reads both SES shapes: event publishing (`eventType`, from a configuration set) and the
older identity notifications (`notificationType`). One notification may name several
recipients; each becomes an event, all under the SNS MessageId, so they apply once together.
`mail.messageId` is the id SendEmail returned, which the SES transport stores per delivery.
"""

from __future__ import annotations

import json
from typing import Any

from digest.delivery.events import DeliveryEvent, EventError, EventKind, parse_time, section, text

PROVIDER = "ses"


def parse(sns_message_id: str, message: str) -> list[DeliveryEvent]:
    """The SES JSON inside an SNS notification's Message; 400 when it is not SES's."""
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):
        raise EventError(400, "SNS message is not an SES event (Message is not JSON)") from None
    if not isinstance(data, dict):
        raise EventError(400, "SNS message is not an SES event (Message is not an object)")
    event_type = data.get("eventType") or data.get("notificationType")
    if not isinstance(event_type, str):
        raise EventError(400, "SNS message is not an SES event (no eventType or notificationType)")
    mail = section(data, "mail")
    body = section(data, event_type[:1].lower() + event_type[1:])

    def event(kind: EventKind, recipient: str | None, **detail: str) -> DeliveryEvent:
        return DeliveryEvent(
            kind=kind,
            provider=PROVIDER,
            provider_event_id=sns_message_id,
            provider_type=event_type[:64],
            message_id=text(mail.get("messageId"), 100) or None,
            recipient=recipient,
            occurred_at=parse_time(body.get("timestamp"), f"{event_type}.timestamp"),
            detail=detail,
        )

    if event_type == "Bounce":
        bounce_type = text(body.get("bounceType"), 40)
        kind = EventKind.HARD_BOUNCE if bounce_type == "Permanent" else EventKind.SOFT_BOUNCE
        return [
            event(
                kind,
                text(r.get("emailAddress"), 320) or None,
                type=bounce_type,
                subtype=text(body.get("bounceSubType"), 60),
                diagnostic=text(r.get("diagnosticCode"), 300),
            )
            for r in _objects(body, "bouncedRecipients")
        ] or [event(EventKind.OTHER, None)]
    if event_type == "Complaint":
        feedback = text(body.get("complaintFeedbackType"), 60)
        kind = EventKind.OTHER if feedback == "not-spam" else EventKind.COMPLAINED
        return [
            event(kind, text(r.get("emailAddress"), 320) or None, feedback=feedback)
            for r in _objects(body, "complainedRecipients")
        ] or [event(EventKind.OTHER, None)]
    if event_type == "Delivery":
        return [event(EventKind.DELIVERED, _first(body.get("recipients")))]
    if event_type == "Open":
        return [event(EventKind.OPENED, _first(mail.get("destination")))]
    if event_type == "Click":
        return [event(EventKind.CLICKED, _first(mail.get("destination")), url=text(body.get("link"), 500))]
    return [event(EventKind.OTHER, None)]  # Send, Reject, DeliveryDelay, Rendering Failure, ...


def _objects(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _first(value: Any) -> str | None:
    first = value[0] if isinstance(value, list) and value else None
    return first if isinstance(first, str) else None
