"""POST /webhooks/ses: Amazon SES events through an SNS HTTPS subscription.

The topic is checked before anything is fetched (a topic not ours gets the very answer a bad
signature gets: 401), then the SNS signature; the subscription handshake is answered here and
applies nothing; a notification's Message is parsed as SES's event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from digest.delivery.events import Acknowledged, DeliveryEvent, EventError
from digest.web.schema import JSON_ERROR, JSON_OBJECT, TEXT, TOO_LARGE, answer

log = logging.getLogger("digest.providers.ses.webhook")
MAX_BODY = 1024 * 1024  # SNS messages are up to 256 KiB before JSON escaping in the envelope


def receive(rt: Any, body: bytes, headers: Mapping[str, str]) -> list[DeliveryEvent] | Acknowledged:
    """SNS: check topic and signature, answer the subscription handshake, parse SES events."""
    from digest.providers.ses import events, sns  # cryptography: imported by the first event, not by every config

    topics = rt.settings.webhooks.sns_topic_arns
    trust = sns.SnsTrust.from_env(rt.config.env)
    if not topics:
        raise EventError(503, "no SNS topic configured (set webhooks.sns_topic_arns in config.toml)")
    message = sns.envelope(body)
    sns.acceptable(message, topics, trust)  # nothing is fetched for a message that is not
    sns.verify(message, trust)
    if message["Type"] == "SubscriptionConfirmation":
        sns.confirm_subscription(message, trust)
        log.info("confirmed the SNS subscription to %s", message["TopicArn"])
        return Acknowledged("subscription confirmed")
    if message["Type"] == "UnsubscribeConfirmation":
        log.warning("SNS says this endpoint was unsubscribed from %s", message["TopicArn"])
        return Acknowledged("unsubscribe noted")
    return events.parse(message["MessageId"], message["Message"])


OPERATION: dict[str, Any] = {
    "summary": "Amazon SES events through an SNS HTTPS subscription, verified by the SNS message signature.",
    "description": "Only topics in `webhooks.sns_topic_arns`; the SubscriptionConfirmation handshake is "
    "answered automatically. A topic not configured gets the same 401 as a bad signature, "
    "and nothing is fetched for it.",
    "requestBody": {"required": False, "content": {"text/plain": {"schema": TEXT}, **JSON_OBJECT}},
    "responses": {
        "200": answer("Handled, a duplicate, or the subscription confirmed.", JSON_OBJECT),
        "400": answer(
            "Not an SNS message (Type, or a field its Type needs), not an SES event, or a SubscribeURL not on SNS.",
            JSON_ERROR,
        ),
        "401": answer(
            "Not verified as ours: a topic not in webhooks.sns_topic_arns, a missing or "
            "bad signature, or a certificate not from sns.<region>.amazonaws.com "
            "(one answer for all).",
            JSON_ERROR,
        ),
        "413": TOO_LARGE,
        "502": answer("SNS did not accept the subscription confirmation.", JSON_ERROR),
        "503": answer("No topic configured, or SNS could not be reached for its certificate.", JSON_ERROR),
    },
}
