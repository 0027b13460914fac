"""Sending one claimed batch: an attempt, and what follows from the provider's answer.

Each attempt is journaled before the call (digest.delivery.attempts) and its answer recorded
(digest.delivery.completion). Transient failures never fail a delivery: a failed attempt
returns the wait before the next one (the provider's retry-after, else a backoff that grows
with the failures in a row across batches), and a batch that keeps failing goes back to
pending for the next run. A run of failures across batches (an outage) pauses the whole send.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from digest.delivery.attempts import Attempt, ClaimOutcome, finish_attempt, key_ttl, start_attempt
from digest.delivery.claims import Claimed, SetAside, release, set_pending
from digest.delivery.completion import record, recorder
from digest.delivery.copies import IssueCopies
from digest.delivery.leases import backoff
from digest.delivery.messages import Recipient
from digest.delivery.outage import OutageWatch
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.results import ResultWriter
from digest.delivery.summary import SendSummary
from digest.delivery.transports import capabilities_of
from digest.delivery.transports.base import SendResult, TransientError, Transport
from digest.errors import ProviderAuthError
from digest.mail import OutgoingEmail
from digest.runtime import Runtime
from digest.storage.models import AttemptOutcome

log = logging.getLogger("digest.sender")

MAX_BACKOFF = 60.0
MAX_RATE_LIMITED = 50  # 429s per batch before it waits for the next run (they are not counted as attempts)


@dataclass
class Work:
    """A claimed batch between its attempts: what it sends, how its retries stand."""

    issue_id: int
    batch: Claimed
    name: str  # the claim's holder; any sending thread of this process may carry on under it
    recipients: list[Recipient]
    emails: dict[int, OutgoingEmail]
    week: str
    failures: int = 0
    rate_limited: int = 0


class BatchSender:
    """The attempts of claimed batches, for every sending thread of one process."""

    def __init__(
        self, rt: Runtime, transport: Transport, *, limiter: RateLimiter | None, max_attempts: int, backoff_base: float
    ):
        self.rt = rt
        self.transport = transport
        self.limiter = limiter
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        caps = capabilities_of(transport)
        self.key_ttl = key_ttl(caps)
        self._per_message = caps.per_message_results
        self.copies = IssueCopies(rt, transport)
        # Transient failures in a row across this process's batches: the backoff grows with it, so a
        # provider that fails now and then (others succeed) is retried soon, one that is down less often.
        self._streak = 0
        self._streak_lock = threading.Lock()
        self.new_run()

    def new_run(self) -> None:
        """Per run: a fresh outage watch, and no batch set aside yet."""
        self.watch = OutageWatch(self.rt.settings.transport.pause_after_failures)
        self.aside = SetAside()

    def begin(self, issue_id: int, batch: Claimed, name: str) -> Work:
        """Everything a batch's attempts need: its readers and their emails."""
        msgs = self.copies.messages_for(issue_id)
        recipients = self.copies.recipients(issue_id, batch.batch_no)
        return Work(issue_id, batch, name, recipients, self.copies.build_all(issue_id, recipients), msgs.week)

    def attempt(self, work: Work, summary: SendSummary, stop: threading.Event) -> float | None:
        """One attempt of a batch; returns None when done with it, else the seconds before its retry.

        The sending loop parks a batch that must wait and uses its thread for another one meanwhile.
        """
        if self.watch.paused.is_set():  # another batch found the provider unreachable
            set_pending(self.rt, work.batch, work.name)
            return None
        started = start_attempt(
            self.rt, self.copies.installation(), self.key_ttl, work.issue_id, work.week, work.batch, work.name
        )
        if not self._may_send(work, started, summary):
            return None
        payload = self._payload(work, started.key)
        if self.limiter is not None and not self.limiter.acquire(stop):
            finish_attempt(self.rt, started.attempt_id, AttemptOutcome.REFUSED, "stopped before sending")
            release(self.rt, work.batch, work.name)
            return None
        reported: dict[int, SendResult] = {}
        try:
            results = self._call(work, payload, started, reported, summary)
        except TransientError as exc:
            return self._after_transient(work, exc, summary)
        return self._after_answer(work, results, reported, started.attempt_id, summary)

    def _may_send(self, work: Work, started: Attempt, summary: SendSummary) -> bool:
        """Whether the journal let the attempt go ahead; on a first attempt, only those still on the list."""
        batch_no = work.batch.batch_no
        if started.outcome is ClaimOutcome.LOST:
            log.warning("batch %s: claim taken over by another worker; leaving it to them", batch_no)
            return False
        if started.outcome is ClaimOutcome.EMPTY:
            summary.add(batches=1)
            return False
        if started.outcome is ClaimOutcome.UNCONFIRMED:
            log.error("batch %s: %s", batch_no, started.reason)
            summary.add(unconfirmed=started.failed, error=f"batch {batch_no}: {started.reason}")
            return False
        if started.queued is not None:
            work.recipients = [r for r in work.recipients if r.delivery_id in started.queued]
        return True

    def _payload(self, work: Work, key: str) -> list[OutgoingEmail]:
        if not work.emails:  # parked: rebuilt, byte for byte the same (building is deterministic and cheap)
            work.emails = self.copies.build_all(work.issue_id, work.recipients)
        payload = [work.emails[r.delivery_id] for r in work.recipients]
        self.transport.prepare(payload, key)  # the body is built before the slot: the request leaves right at it
        return payload

    def _call(
        self,
        work: Work,
        payload: list[OutgoingEmail],
        started: Attempt,
        reported: dict[int, SendResult],
        summary: SendSummary,
    ) -> list[SendResult]:
        """The provider call; a failure closes the attempt in the journal (an auth error gives the claim back)."""
        writer = ResultWriter(self.rt.engine) if self._per_message else None
        try:
            if writer is not None:
                return self.transport.send_batch(
                    payload, started.key, work.week, on_result=recorder(work.recipients, reported, summary, writer)
                )
            return self.transport.send_batch(payload, started.key, work.week)
        except ProviderAuthError as exc:
            finish_attempt(self.rt, started.attempt_id, AttemptOutcome.REFUSED, str(exc))
            release(self.rt, work.batch, work.name)
            raise
        except TransientError as exc:
            finish_attempt(
                self.rt,
                started.attempt_id,
                AttemptOutcome.AMBIGUOUS if exc.ambiguous else AttemptOutcome.REFUSED,
                str(exc),
            )
            raise
        finally:
            if writer is not None:
                writer.close()

    def _after_answer(
        self,
        work: Work,
        results: list[SendResult],
        reported: dict[int, SendResult],
        attempt_id: int | None,
        summary: SendSummary,
    ) -> float | None:
        """Record the answer; messages the transport has not sent yet (SMTP) are retried on their own."""
        recipients = work.recipients
        if len(results) != len(recipients):
            raise RuntimeError(
                f"transport {self.transport.name} answered {len(results)} results for {len(recipients)} emails"
            )
        self.watch.succeeded()
        if self.limiter is not None:
            self.limiter.succeeded()
        with self._streak_lock:
            self._streak = 0
        later = [r for r, res in zip(recipients, results) if res.retry]
        record(
            self.rt,
            work.batch,
            [(r, res) for i, (r, res) in enumerate(zip(recipients, results)) if not res.retry and i not in reported],
            summary,
            finished=not later,
            attempt_id=attempt_id,
            reported=list(reported.values()),
        )
        if not later:
            return None
        # Part of the batch went out (SMTP); the rest is retried on its own.
        work.recipients = later
        work.failures += 1
        reason = next(res.error for res in results if res.retry)
        if work.failures >= self.max_attempts:
            self._set_aside(work, f"still owed after {work.failures} attempt(s) in this run: {reason}", summary)
            return None
        summary.add(retries=1)
        return self._backoff(failed=True)

    def _after_transient(self, work: Work, exc: TransientError, summary: SendSummary) -> float | None:
        """Count the failure and say when to retry: the provider's retry-after, else the backoff."""
        if exc.rate_limited:
            work.rate_limited += 1
            if self.limiter is not None:
                self.limiter.rate_limited(exc.retry_after)
        else:
            work.failures += 1
            if self.watch.failed(exc):
                log.error("batch %s: %s; pausing the send", work.batch.batch_no, exc)
                set_pending(self.rt, work.batch, work.name, str(exc))
                return None
        if work.failures >= self.max_attempts or work.rate_limited >= MAX_RATE_LIMITED:
            self._set_aside(
                work, f"still owed after {work.failures + work.rate_limited} attempt(s) in this run: {exc}", summary
            )
            return None
        wait = exc.retry_after if exc.retry_after is not None else self._backoff(failed=not exc.rate_limited)
        summary.add(retries=1)
        log.warning("batch %s: %s; retrying in %.1fs", work.batch.batch_no, exc, wait)
        return wait

    def _backoff(self, *, failed: bool) -> float:
        """1 s, 2 s, 4 s ... MAX_BACKOFF (with jitter) by the failures in a row across batches."""
        with self._streak_lock:
            self._streak += 1 if failed else 0
            streak = self._streak
        return backoff(streak, self.backoff_base, MAX_BACKOFF, jitter=True)

    def _set_aside(self, work: Work, reason: str, summary: SendSummary) -> None:
        """Transient failures never fail a delivery: the batch waits for the next run, its readers owed."""
        self.aside.add(work.batch.id)  # before it is pending again, so no thread of this run claims it
        set_pending(self.rt, work.batch, work.name, reason)
        log.error("batch %s: %s", work.batch.batch_no, reason)
        summary.add(deferred_batches=1, error=f"batch {work.batch.batch_no}: {reason}")
