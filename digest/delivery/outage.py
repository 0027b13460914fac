"""Outages pause a send, they do not fail it (invariant 6).

`OutageWatch` counts transient failures in a row across every batch of one run
(connection refused, 5xx, timeouts; a 429 is an answer and counts for nothing).
Past the threshold the run stops attempting: batches go back to pending with their
keys, the issue stays `sending` with the reason. `ResumeBackoff` is the growing
interval at which `digest serve` and `digest worker` try a paused issue again.
"""

from __future__ import annotations

import threading
from datetime import datetime

from digest.delivery.leases import backoff
from digest.weeks import utcnow


class OutageWatch:
    def __init__(self, threshold: int):
        self.threshold = max(1, threshold)
        self.paused = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._since: datetime | None = None
        self._last = ""

    def failed(self, error: object) -> bool:
        """Count one transient failure; True once the send should pause."""
        with self._lock:
            self._count += 1
            self._since = self._since or utcnow()
            self._last = str(error)
            if self._count >= self.threshold:
                self.paused.set()
            return self.paused.is_set()

    def succeeded(self) -> None:
        with self._lock:
            self._count, self._since = 0, None

    @property
    def since(self) -> datetime | None:
        with self._lock:
            return self._since

    def reason(self) -> str:
        with self._lock:
            since = f"{self._since:%Y-%m-%d %H:%M} UTC" if self._since else "now"
            return (
                f"provider unreachable since {since} ({self._count} attempts in a row failed; last: {self._last[:300]})"
            )


class ResumeBackoff:
    """30 s, 60 s, 120 s, ... up to `ceiling`: how long to wait before trying a paused send again."""

    def __init__(self, first: float, ceiling: float):
        self.first = max(0.01, first)
        self.ceiling = max(self.first, ceiling)
        self._tries = 0

    def next_delay(self) -> float:
        self._tries += 1
        return backoff(self._tries, self.first, self.ceiling)

    def reset(self) -> None:
        self._tries = 0
