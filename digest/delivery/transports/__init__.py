"""Transports turn OutgoingEmail batches into sent mail: outbox (default), resend, smtp."""

from __future__ import annotations

from digest.config import Config
from digest.delivery.transports.base import Transport


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
