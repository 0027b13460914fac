"""What one run of the sender did: the counts `digest send`, the worker and the cycle report."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class SendSummary:
    """Counts of one run; threads of one process add to it under its lock."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    batches: int = 0
    failed_batches: int = 0
    retries: int = 0
    stopped: str | None = None
    paused: str | None = None  # an outage paused the send: why and since when
    deferred_batches: int = 0  # kept failing this run; pending again for the next one
    unconfirmed: int = 0  # deliveries of batches that may or may not have gone out (operator decides)
    owed: int = 0  # deliveries still queued when the run ended
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(
        self,
        *,
        sent: int = 0,
        failed: int = 0,
        batches: int = 0,
        failed_batches: int = 0,
        retries: int = 0,
        deferred_batches: int = 0,
        unconfirmed: int = 0,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self.sent += sent
            self.failed += failed
            self.batches += batches
            self.failed_batches += failed_batches
            self.retries += retries
            self.deferred_batches += deferred_batches
            self.unconfirmed += unconfirmed
            if error:
                self.errors.append(error)

    def stop(self, reason: str) -> None:
        with self._lock:
            self.stopped = self.stopped or reason
