"""Transports turn OutgoingEmail batches into sent mail; each registers in digest.transport_registry."""

from __future__ import annotations

from digest import transport_registry
from digest.config import Config
from digest.delivery.transports.base import Transport

# What a transport's provider may report back about a sent email (webhooks); the others stay unknown.
DELIVERY_EVENTS = ("delivered", "bounced", "complained", "opened", "clicked")


def reported_events(kind: str) -> frozenset[str]:
    """The delivery events a transport can measure: read from its capabilities, no connection made."""
    try:
        return transport_registry.get(kind).capabilities.reports
    except KeyError:
        return frozenset()


def capabilities_of(transport: object) -> transport_registry.Capabilities:
    """What a transport declared when it registered (an unregistered one: what it says itself)."""
    try:
        return transport_registry.get(getattr(transport, "name", "")).capabilities
    except KeyError:
        return transport_registry.Capabilities(
            idempotent=False, per_message_results=bool(getattr(transport, "reports_each_result", False)))


def make_transport(config: Config) -> Transport:
    """The configured transport, built by the factory it registered."""
    try:
        spec = config.transport_spec
    except KeyError as exc:
        raise ValueError(f"unknown transport: {exc.args[0]}") from None
    transport: Transport = spec.factory(config)
    return transport
