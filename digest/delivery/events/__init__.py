"""One shape for what a provider tells us happened to a message, whoever the provider is.

Each provider's event parser (declared with the provider, digest.providers; `bounce_mail`
here reads the standard bounce and complaint mails any SMTP relay sends back) checks its own
signature and turns its own wording into `DeliveryEvent`s;
`subscribers.delivery_events.apply_events` is the one place that acts on them. Nothing
here touches the database, so any layer may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from digest import plaintext
from digest.weeks import as_utc


class EventKind(StrEnum):
    DELIVERED = "delivered"
    HARD_BOUNCE = "hard_bounce"  # permanent: suppress now
    SOFT_BOUNCE = "soft_bounce"  # transient: counted, suppresses after a run
    COMPLAINED = "complained"
    OPENED = "opened"
    CLICKED = "clicked"
    OTHER = "other"  # acknowledged and de-duplicated, no effect (sent, delayed, rejected, ...)


@dataclass(frozen=True)
class DeliveryEvent:
    """One recipient's event. `provider_event_id` de-duplicates (one id may carry several recipients).

    The message names the person: the applier acts on the recipient of our own row for
    `message_id`, and `recipient` (with `aliases`) only has to agree with it. Every string is
    cleaned of control characters here, whoever built the event: a NUL in a stranger's report
    must not reach the database (PostgreSQL refuses it, and the report after it would wait)."""

    kind: EventKind
    provider: str
    provider_event_id: str
    provider_type: str  # the provider's own name for it, for logs ("email.bounced", "Bounce")
    message_id: str | None  # what the transport stored in deliveries.provider_id (or outgoing_mail's)
    recipient: str | None  # as the provider wrote it; checked against our row, never acted on
    occurred_at: datetime | None  # None: the provider did not say; the applier uses now
    detail: Mapping[str, str] = field(default_factory=dict)  # bounce type/subtype/diagnostic, clicked url
    aliases: tuple[str, ...] = ()  # other addresses the report gives for the same recipient (a forward's)

    def __post_init__(self) -> None:
        clean = plaintext.one_line
        for name in ("provider_event_id", "provider_type", "message_id", "recipient"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, clean(str(value)))
        object.__setattr__(self, "aliases", tuple(clean(str(a)) for a in self.aliases))
        object.__setattr__(self, "detail", {clean(str(k)): clean(str(v)) for k, v in self.detail.items()})

    @property
    def receipt_key(self) -> str:
        """The `webhook_receipts` key: provider-scoped so two providers' ids never collide."""
        return f"{self.provider}:{self.provider_event_id}"[:100]


@dataclass(frozen=True)
class Acknowledged:
    """A signed webhook request that carries no event but needs its own answer (a subscription
    handshake): the route answers 200 with `result` and applies nothing."""

    result: str


class EventError(Exception):
    """A provider request we refuse; `status` is the HTTP answer, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_time(value: Any, name: str) -> datetime | None:
    """An ISO-8601 instant in UTC; None when absent or unreadable (the applier then uses now).

    A date that reads but cannot be a UTC instant (year 1 east of UTC, year 9999 west of it)
    is a 400: a signed body can still be nonsense."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return as_utc(parsed)
    except OverflowError:
        raise EventError(400, f"{name}: {value[:40]!r} is out of range") from None


def text(value: Any, limit: int) -> str:
    """A provider field as a bounded string ('' when absent or not text)."""
    return value[:limit] if isinstance(value, str) else ""


def section(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A provider field that should be an object, as one ({} when absent or not an object)."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}
