"""`digest worker`: send the batches of every issue being sent, until stopped.

Many workers may run on PostgreSQL (batches are claimed with SKIP LOCKED and the
request rate is shared through the database). On SQLite one worker sends: a
second one finds the `delivery-worker` lease taken and says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from digest.delivery.loop import Sender
from digest.delivery.outage import ResumeBackoff
from digest.delivery.summary import SendSummary
from digest.delivery.transports.base import Transport
from digest.errors import UserError
from digest.runtime import Runtime
from digest.storage.lease import Lease
from digest.storage.models import Issue, IssueStatus

SQLITE_LEASE = "delivery-worker"
log = logging.getLogger("digest.worker")


@dataclass
class WorkerTotals(SendSummary):
    """The sums of every issue's SendSummary this worker ran, and which weeks it sent."""

    weeks: set[str] = field(default_factory=set)

    def merge(self, week: str, s: SendSummary) -> None:
        self.add(
            sent=s.sent,
            failed=s.failed,
            batches=s.batches,
            failed_batches=s.failed_batches,
            retries=s.retries,
            deferred_batches=s.deferred_batches,
            unconfirmed=s.unconfirmed,
        )
        self.errors.extend(s.errors)
        if s.batches or s.failed:
            self.weeks.add(week)
        self.paused = s.paused
        self.owed = s.owed


def sending_issues(rt: Runtime) -> list[tuple[int, str]]:
    with rt.sessions() as session:
        return [
            (i, w)
            for i, w in session.execute(
                select(Issue.id, Issue.week).where(Issue.status == IssueStatus.SENDING).order_by(Issue.week)
            )
        ]


def run_worker(
    rt: Runtime,
    transport: Transport,
    *,
    stop: threading.Event,
    poll_seconds: float = 5.0,
    until_idle: bool = False,
    on_batch: Callable[[SendSummary], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> WorkerTotals:
    """Loop over issues in `sending`; with `until_idle`, return once nothing is left to claim.

    Long because the polling loop, its idle rule and its stop checks read best in one place.
    """
    lease = None
    if not rt.on_postgres:
        lease = Lease(rt, SQLITE_LEASE, ttl=timedelta(seconds=60))
        if not lease.acquire():
            raise UserError(
                f"on SQLite one worker sends at a time, and {lease.current_holder() or 'another one'} "
                f"is running; use PostgreSQL (DIGEST_DATABASE_URL) for more workers"
            )
    totals = WorkerTotals()
    sender = Sender(rt, transport, on_batch=on_batch)
    settings = rt.settings.transport
    backoff: dict[int, ResumeBackoff] = {}
    not_before: dict[int, float] = {}  # a paused issue is tried again after a growing interval
    if on_ready is not None:
        on_ready()
    try:
        while not stop.is_set():
            if lease is not None and not lease.renew() and not lease.acquire():
                raise UserError("the SQLite worker lease was taken over by another worker; stopping")
            busy = False
            for issue_id, week in sending_issues(rt):
                if time.monotonic() < not_before.get(issue_id, 0.0):
                    continue
                summary = sender.run(issue_id, stop)
                totals.merge(week, summary)
                if summary.paused or (summary.owed and summary.deferred_batches):
                    wait = backoff.setdefault(
                        issue_id, ResumeBackoff(settings.resume_after_seconds, settings.resume_max_seconds)
                    ).next_delay()
                    not_before[issue_id] = time.monotonic() + wait
                    log.warning(
                        "issue %s: %s; trying again in %.0f s",
                        week,
                        f"paused: {summary.paused}" if summary.paused else f"{summary.owed} still owed",
                        wait,
                    )
                else:
                    backoff.pop(issue_id, None)
                    not_before.pop(issue_id, None)
                busy = busy or bool(summary.batches or summary.failed_batches)
                if summary.stopped and summary.stopped != "stopped on request":
                    totals.stopped = summary.stopped
                    return totals
                if stop.is_set():
                    break
            if until_idle and not busy:
                break
            if not busy:
                stop.wait(poll_seconds)
        if stop.is_set():
            totals.stopped = totals.stopped or "stopped on request"
        return totals
    finally:
        if lease is not None:
            lease.release()
