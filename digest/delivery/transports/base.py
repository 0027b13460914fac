"""The transport contract the sender relies on, and the ways a send can go wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from digest.errors import ProviderAuthError
from digest.mail import OutgoingEmail


@dataclass(frozen=True)
class SendResult:
    ok: bool
    provider_id: str | None = None
    error: str | None = None  # per-message rejection: recorded, never retried
    # Not sent yet, try again later (SMTP: the connection broke after earlier messages went out).
    # Only ever set together with ok=False and an error, so older callers count it as failed.
    retry: bool = False
    # The provider refused the request, but an earlier one under the same key may have sent this
    # email (Resend 409: a different payload under the key). Nobody knows: not resent blindly.
    unconfirmed: bool = False


class TransientError(Exception):
    """Retry the whole batch later (5xx, timeout, connection reset, 429), under the same key.

    `ambiguous`: the request may have reached the provider and been accepted before its answer
    was lost (a timeout or a cut connection after sending); otherwise it was definitively
    refused (connection refused, an error status). The sender records which (invariant 6).
    """

    def __init__(
        self, message: str, retry_after: float | None = None, rate_limited: bool = False, ambiguous: bool = False
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        self.ambiguous = ambiguous


class ProviderRefusal(ProviderAuthError):
    """The provider will take no more mail now (bad key, unverified sender, quota): stop the send."""


# Called with (index, result) the moment one email of a batch is accepted or refused for good.
OnResult = Callable[[int, SendResult], None]


class Transport(Protocol):
    """What the sender calls. What a transport *can do* is its provider's declared capabilities
    (digest.providers.registry), read from there, never copied onto the instance."""

    name: str
    # How many batches one process may have in flight through this transport at once.
    max_in_flight: int

    def prepare(self, emails: list[OutgoingEmail], idempotency_key: str) -> None:
        """Called before the batch waits for its rate slot, so the request leaves right at it
        (build the request body now); this thread's next send_batch of the same batch may use it."""
        ...

    def send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, folder: str, on_result: OnResult | None = None
    ) -> list[SendResult]:
        """Send every email once; the same key must never produce a second copy.

        Returns one result per email, in order; a request refused as a whole for a reason a
        retry cannot fix (4xx validation) gives every email a failed result with the reason.
        `folder` groups messages (the week key, `transactional`, `test`) for transports that
        store files. Raises TransientError to have the batch retried, ProviderAuthError to stop.
        A transport whose capabilities declare `per_message_results` (SMTP) reports each final
        result through `on_result` before sending the next, so a crash cannot forget what
        already went out.
        """
        ...

    def close(self) -> None: ...


class BaseTransport:
    """The defaults of the protocol: nothing to prepare, one batch in flight, nothing to close."""

    name = ""
    max_in_flight = 1

    def prepare(self, emails: list[OutgoingEmail], idempotency_key: str) -> None:
        """Nothing to build ahead: the request is built when the batch is sent."""

    def close(self) -> None:
        """Nothing held open."""
