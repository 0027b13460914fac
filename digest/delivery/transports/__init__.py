"""Transports turn OutgoingEmail batches into sent mail; each is declared by its provider (digest.providers)."""

from __future__ import annotations

from digest.config import Config
from digest.delivery.transports.base import Transport
from digest.providers import registry

# What a transport's provider may report back about a sent email (webhooks); the others stay unknown.
DELIVERY_EVENTS = ("delivered", "bounced", "complained", "opened", "clicked")


def reported_events(kind: str) -> frozenset[str]:
    """The delivery events a transport can measure: read from its capabilities, no connection made."""
    try:
        return registry.get(kind).capabilities.reports
    except KeyError:
        return frozenset()


def capabilities_of(transport: object) -> registry.Capabilities:
    """What the transport's provider declared (an unregistered one: the safest, not idempotent)."""
    try:
        return registry.get(getattr(transport, "name", "")).capabilities
    except KeyError:
        return registry.Capabilities(idempotent=False)


def make_transport(config: Config) -> Transport:
    """The configured transport, built by the factory its provider declared."""
    try:
        spec = config.transport_spec
    except KeyError as exc:
        raise ValueError(f"unknown transport: {exc.args[0]}") from None
    transport: Transport = spec.factory(config)
    return transport
