"""The background sender of the transactional mail queue (digest.delivery.mail_queue).

It runs in the web's drainer process (digest.delivery.drainer_process), and in tests as a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from digest.delivery.mail_builder import MailBuilder
from digest.delivery.mail_queue import drain_batch
from digest.delivery.ratelimit import RateLimiter, make_limiter
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Transport
from digest.errors import ProviderAuthError, UserError
from digest.runtime import Runtime

# The operator's name for this mail in the logs since it lived in subscribers/: kept for their filters.
log = logging.getLogger("subscribers.mail")


class Drainer:
    """The web process's background sender: wakes on `wake()` (a sign-up in this process) or every `poll` s.

    Rendering and MIME-encoding a mail costs more CPU than a sign-up, and this thread shares
    the interpreter with the requests. So while sign-ups keep arriving (`note_request()`),
    it sends small batches with pauses, taking at most `busy_share` of the time: the queue
    still moves during a flood, and empties at full speed once the flood is over.
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        poll: float = 1.0,
        transport_factory: Callable[[], Transport] | None = None,
        housekeeping: Callable[[], None] | None = None,
        housekeeping_every: float = 60.0,
        busy_share: float = 0.05,
        idle_batch: int = 20,
    ):
        self.rt = rt
        self.idle_batch = idle_batch
        self.poll = poll
        self.busy_share = busy_share
        self._busy_until = 0.0
        self.transport_factory = transport_factory or (lambda: make_transport(rt.config))
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self._last_housekeeping = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = None
        self._limiter: RateLimiter | None = None
        self._builder: MailBuilder | None = None
        self._pause = 0.0  # after an error, the wait before the next try: doubles while errors repeat

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mail-drainer", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def note_request(self) -> None:
        """A sign-up is being served: yield the interpreter to requests for a moment."""
        self._busy_until = time.monotonic() + 0.25

    def busy(self) -> bool:
        return time.monotonic() < self._busy_until

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._step():
                    continue  # more may be waiting
            except ProviderAuthError as exc:
                log.error("transactional mail stopped: %s", exc)
                self._pause = 60.0
            except UserError as exc:  # e.g. an empty signing key: one clear line, then wait for the fix
                log.error("transactional mail waits: %s", exc)
                self._pause = min(max(self._pause * 2, 1.0), 30.0)
            except Exception:  # noqa: BLE001 - nothing unexpected may kill the thread silently
                log.exception("transactional mail drainer")
                self._pause = min(max(self._pause * 2, 1.0), 30.0)
            self._wake.wait(max(self.poll, self._pause))
            self._wake.clear()
        self._close()

    def _step(self) -> bool:
        """Send one batch; True when it handled rows and none was deferred (more may be due at once)."""
        if self._builder is None:  # reads the signing key: a bad key is logged by _run, and retried
            self._builder = MailBuilder(self.rt)
        if self._transport is None:
            self._transport = self.transport_factory()
            self._limiter = make_limiter(self.rt, self._transport)
        busy = self.busy()
        started = time.monotonic()
        # Busy: one mail at a time keeps each pause of the requests short; a rate-limited
        # provider (Resend) is better served by full batches, its budget being the limit.
        size = 1 if busy and self._limiter is None else self.idle_batch
        step = drain_batch(self.rt, self._transport, self._builder, size, self._limiter)
        for err in step.errors:
            log.warning("transactional mail: %s", err)
        self._pause = 0.0  # the transport answered: errors in a row start over
        if self.housekeeping and time.monotonic() - self._last_housekeeping > self.housekeeping_every:
            self._last_housekeeping = time.monotonic()
            self.housekeeping()
        if not step.handled or step.deferred:
            return False
        if busy:  # share the interpreter: work at most busy_share of the time
            took = time.monotonic() - started
            self._stop.wait(took * (1 - self.busy_share) / self.busy_share)
        return True

    def _close(self) -> None:
        if self._transport is not None:
            try:
                self._transport.close()
            except Exception:  # noqa: BLE001
                log.exception("transactional mail: closing the transport")
