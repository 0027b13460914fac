"""The sender: claim whole batches and send them, `concurrency` at a time, crash-safe, exactly once.

Claims are leases (digest.delivery.claims), each attempt is journaled before the provider is
called (digest.delivery.attempts), and one batch's attempts are digest.delivery.batch. Here:
the threads that keep `concurrency` batches in flight. A batch that must wait for a retry is
parked: its thread claims and sends another batch meanwhile, so backoffs and 429s never idle
the sending slots. The parked batches' claims are renewed while they wait, and given back
when the run stops or pauses, so the next run resumes them under the same keys.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from digest.delivery.batch import BatchSender, Work
from digest.delivery.claims import Claimed, claim_batch, release, renew, set_pending
from digest.delivery.completion import left_over, mark_sent_if_done, record_pause
from digest.delivery.leases import HEARTBEAT_SECONDS, LEASE_SECONDS, worker_name
from digest.delivery.ratelimit import RateLimiter, make_limiter
from digest.delivery.summary import SendSummary
from digest.delivery.transports.base import Transport
from digest.errors import ProviderAuthError
from digest.runtime import Runtime

PARKED_PER_THREAD = 8  # batches waiting for a retry per sending thread before no new one is claimed


class Sender:
    def __init__(
        self,
        rt: Runtime,
        transport: Transport,
        *,
        worker: str | None = None,
        max_attempts: int | None = None,
        lease_seconds: int = LEASE_SECONDS,
        limiter: RateLimiter | None | str = "auto",
        concurrency: int | None = None,
        backoff_base: float = 1.0,
        on_batch: Callable[[SendSummary], None] | None = None,
    ):
        self.rt = rt
        self.transport = transport
        self.worker = worker or worker_name()
        self.lease = timedelta(seconds=lease_seconds)
        # "auto" (the only string): the transport's own limiter.
        self.limiter: RateLimiter | None = make_limiter(rt, transport) if isinstance(limiter, str) else limiter
        if self.limiter is not None and hasattr(transport, "on_rate"):
            transport.on_rate = self.limiter.observe  # the provider's ratelimit-* headers set the pace
        self.concurrency = max(1, concurrency or int(getattr(transport, "max_in_flight", 1) or 1))
        self.on_batch = on_batch
        self.batches = BatchSender(
            rt,
            transport,
            limiter=self.limiter,
            max_attempts=max_attempts or rt.settings.transport.max_attempts,
            backoff_base=backoff_base,
        )

    def claim(self, issue_id: int, name: str | None = None) -> Claimed | None:
        with self.rt.sessions.begin() as session:
            return claim_batch(
                session,
                issue_id,
                name or f"{self.worker}:0",
                lease=self.lease,
                on_postgres=self.rt.on_postgres,
                aside=self.batches.aside,
            )

    def run(self, issue_id: int, stop: threading.Event | None = None) -> SendSummary:
        """Send until no batch is left to claim (or `stop` is set); `concurrency` batches in flight.

        A batch waiting for its retry is parked, not slept on: its thread sends another batch
        meanwhile, so backoffs never leave the provider's rate budget unused.
        """
        own_stop = stop is None
        stop = stop or threading.Event()
        summary = SendSummary()
        self.batches.new_run()
        crashed: list[BaseException] = []
        parked = Parked(room=self.concurrency * PARKED_PER_THREAD)
        try:
            self._threads(issue_id, stop, summary, parked, crashed)
        finally:
            self._unpark(parked)
        if crashed:
            raise crashed[0]
        if stop.is_set() and not summary.stopped and not own_stop:
            summary.stopped = "stopped on request"
        watch = self.batches.watch
        if watch.paused.is_set():
            summary.paused = watch.reason()
        record_pause(self.rt, issue_id, watch.since if summary.paused else None, summary.paused)
        summary.dropped, summary.owed = left_over(self.rt, issue_id)
        mark_sent_if_done(self.rt, issue_id)
        return summary

    def _threads(
        self, issue_id: int, stop: threading.Event, summary: SendSummary, parked: Parked, crashed: list[BaseException]
    ) -> None:
        """Run the sending loop on `concurrency` threads (on this one when it is 1) until all are done."""
        if self.concurrency == 1:
            self._loop(issue_id, 0, stop, summary, parked, crashed)
            return
        threads = [
            threading.Thread(
                target=self._loop, args=(issue_id, i, stop, summary, parked, crashed), name=f"sender-{i}", daemon=True
            )
            for i in range(self.concurrency)
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            stop.set()
            for t in threads:
                t.join()
            raise

    def _loop(
        self,
        issue_id: int,
        slot: int,
        stop: threading.Event,
        summary: SendSummary,
        parked: Parked,
        crashed: list[BaseException],
    ) -> None:
        """Take a parked batch whose retry is due, else claim a new one; park a batch that must wait."""
        name = f"{self.worker}:{slot}"
        paused = self.batches.watch.paused
        try:
            while not stop.is_set() and not paused.is_set():
                parked.renew(self._renew)
                work = parked.take_due()
                if work is None and parked.has_room():
                    batch = self.claim(issue_id, name)
                    work = self.batches.begin(issue_id, batch, name) if batch is not None else None
                if work is None:
                    if not parked.wait_for_due(stop, paused, self._renew):
                        return  # nothing to claim and nothing waiting: done
                    continue
                wait = self.batches.attempt(work, summary, stop)
                if wait is not None:
                    work.emails = {}  # a parked batch holds no bodies: memory stays that of the batches in flight
                    parked.put(work, wait)
                if self.on_batch:
                    self.on_batch(summary)
        except ProviderAuthError as exc:
            summary.stop(str(exc))
            stop.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            crashed.append(exc)
            stop.set()

    def _renew(self, works: list[Work]) -> None:
        """Keep the claims of parked batches alive while they wait for their retry."""
        renew(self.rt, [(work.batch, work.name) for work in works])

    def _unpark(self, parked: Parked) -> None:
        """Stopped or paused while batches waited: the next run resumes them with the same key."""
        for work in parked.drain():
            if self.batches.watch.paused.is_set():
                set_pending(self.rt, work.batch, work.name)
            else:
                release(self.rt, work.batch, work.name)


class Parked:
    """Batches of this process waiting for their retry, soonest first; shared by its sending threads."""

    def __init__(self, room: int):
        self.room = room
        self._heap: list[tuple[float, int, Work]] = []
        self._seq = 0
        self._renewed = time.monotonic()
        self._lock = threading.Condition()

    def put(self, work: Work, wait: float) -> None:
        with self._lock:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, wait), self._seq, work))
            self._lock.notify_all()

    def has_room(self) -> bool:
        with self._lock:
            return len(self._heap) < self.room

    def take_due(self) -> Work | None:
        with self._lock:
            if self._heap and self._heap[0][0] <= time.monotonic():
                return heapq.heappop(self._heap)[2]
            return None

    def wait_for_due(self, stop: threading.Event, paused: threading.Event, renew: Callable[[list[Work]], None]) -> bool:
        """Wait until the soonest parked batch is due (True), or return False at once when none is parked."""
        while not stop.is_set() and not paused.is_set():
            with self._lock:
                if not self._heap:
                    return False
                left = self._heap[0][0] - time.monotonic()
                if left <= 0:
                    return True
                self._lock.wait(min(left, 0.25))  # wakes early when a batch is parked; checks `stop`
            self.renew(renew)
        return True

    def renew(self, renew: Callable[[list[Work]], None]) -> None:
        with self._lock:
            if time.monotonic() - self._renewed < HEARTBEAT_SECONDS or not self._heap:
                return
            self._renewed = time.monotonic()
            works = [w for _, _, w in self._heap]
        renew(works)

    def drain(self) -> list[Work]:
        with self._lock:
            works, self._heap = [w for _, _, w in self._heap], []
            return works
