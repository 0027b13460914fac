"""Transports turn OutgoingEmail batches into sent mail: outbox (default), resend, smtp."""

from __future__ import annotations

from digest.config import Config
from digest.delivery.transports.base import Transport

# What each transport's provider reports back about a sent email (webhooks); the others stay unknown.
DELIVERY_EVENTS = ("delivered", "bounced", "complained", "opened", "clicked")


def reported_events(kind: str) -> frozenset[str]:
    """The delivery events a transport can measure: read from its class, no connection made."""
    cls: type
    if kind == "outbox":
        from digest.delivery.transports.outbox import OutboxTransport as cls
    elif kind == "resend":
        from digest.delivery.transports.resend_api import ResendTransport as cls
    elif kind == "smtp":
        from digest.delivery.transports.smtp import SmtpTransport as cls
    else:
        return frozenset()
    return frozenset(getattr(cls, "reports", ()))


def make_transport(config: Config) -> Transport:
    kind = config.transport_kind
    if kind == "outbox":
        from digest.delivery.transports.outbox import OutboxTransport

        return OutboxTransport(config.outbox_dir)
    if kind == "resend":
        from digest.delivery.transports.resend_api import ResendTransport

        return ResendTransport(config)
    if kind == "smtp":
        from digest.delivery.transports.smtp import SmtpTransport

        return SmtpTransport(config)
    raise ValueError(f"unknown transport {kind!r}")
