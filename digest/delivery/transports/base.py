"""The transport contract the sender relies on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from digest.mail import OutgoingEmail


@dataclass(frozen=True)
class SendResult:
    ok: bool
    provider_id: str | None = None
    error: str | None = None  # per-message rejection: recorded, never retried


class TransientError(Exception):
    """Retry the whole batch later (5xx, timeout, connection reset, 429)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Transport(Protocol):
    name: str

    def send_batch(self, emails: list[OutgoingEmail], idempotency_key: str, folder: str) -> list[SendResult]:
        """Send every email once; the same key must never produce a second copy.

        `folder` groups messages (the week key, `transactional`, `test`) for transports that store files.
        Raises TransientError to have the batch retried, digest.errors.ProviderAuthError to stop.
        """
        ...

    def close(self) -> None: ...
