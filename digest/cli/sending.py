"""What `digest send` and `digest worker` share: the transport check, progress, and a clean stop.

An interactive send shows a rich progress bar (sent, failed, rate, time left);
without a terminal a line goes to stderr every few seconds, so logs of a
scheduled run show how far it got. SIGINT/SIGTERM finish the batches in flight
and stop; a second Ctrl-C quits at once (the next run resumes either way).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select

from digest.delivery.summary import SendSummary
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Transport
from digest.errors import UserError
from digest.runtime import Runtime
from digest.storage.models import Delivery, DeliveryStatus, Issue

LOG_EVERY_SECONDS = 5.0


def open_transport(rt: Runtime) -> Transport:
    """Build the transport before anything is frozen, so a missing key changes nothing."""
    try:
        return make_transport(rt.config)
    except (ImportError, ValueError) as exc:
        raise UserError(f"transport {rt.config.transport_kind!r} is not available: {exc}") from None


def queued_count(rt: Runtime, week: str | None) -> int:
    with rt.sessions() as session:
        q = select(func.count(Delivery.id)).where(Delivery.status == DeliveryStatus.QUEUED)
        if week is not None:
            q = q.join(Issue, Issue.id == Delivery.issue_id).where(Issue.week == week)
        return int(session.scalar(q) or 0)


class SendProgress:
    """Called after each batch (from sender threads); totals are read once, at the first call."""

    def __init__(
        self,
        rt: Runtime,
        week: str | None,
        *,
        console: Console,
        log_console: Console,
        interactive: bool | None = None,
        every: float = LOG_EVERY_SECONDS,
    ):
        self.rt = rt
        self.week = week
        self.console = console
        self.log_console = log_console
        self.interactive = console.is_terminal if interactive is None else interactive
        self.every = every
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._total: int | None = None
        self._last_line = self.started
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._done = 0
        self._first: tuple[float, int] | None = None

    def _begin(self, summary: SendSummary) -> None:
        done = summary.sent + summary.failed
        self._total = queued_count(self.rt, self.week) + done
        if self.interactive:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("sent {task.fields[sent]}  failed {task.fields[failed]}  {task.fields[rate]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task(
                f"sending {self.week or ''}".strip(), total=self._total, sent=0, failed=0, rate=""
            )
            self._progress.start()

    def __call__(self, summary: SendSummary) -> None:
        with self._lock:
            if self._total is None:
                self._begin(summary)
            self._done = summary.sent + summary.failed
            now = time.monotonic()
            if self._first is None:  # measure from the first finished batch: startup is not sending
                self._first = (now, self._done)
            since, base = self._first
            rate = (
                (self._done - base) / (now - since) if now - since > 0.5 else self._done / max(1e-6, now - self.started)
            )
            if self._progress is not None and self._task is not None:
                self._progress.update(
                    self._task, completed=self._done, sent=summary.sent, failed=summary.failed, rate=f"{rate:.0f}/s"
                )
            elif time.monotonic() - self._last_line >= self.every:
                self._last_line = time.monotonic()
                self.log_console.print(self.line(summary, rate), markup=False, highlight=False)

    def line(self, summary: SendSummary, rate: float) -> str:
        total = self._total or 0
        left = max(0, total - self._done)
        eta = f", about {_duration(left / rate)} left" if rate > 0 and total else ""
        where = f"{self.week}: " if self.week else ""
        of = f"/{total}" if total else ""
        return (
            f"sending {where}{self._done}{of} done ({summary.sent} sent, {summary.failed} failed), "
            f"{rate:.1f} emails/s{eta}"
        )

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


@contextlib.contextmanager
def stop_on_signals(log_console: Console) -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set the event (finish what is in flight); a second SIGINT interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        log_console.print(
            "stopping after the batches in flight (Ctrl-C again to quit now; the next run resumes either way)",
            markup=False,
        )

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def retry_failed_deliveries(rt: Runtime, week: str, *, accept_duplicates: bool = False) -> list[str]:
    """Re-queue the failed deliveries of a week's issue (digest.delivery.requeue); returns the lines to show."""
    from digest.delivery.requeue import requeue_failed

    with rt.sessions.begin() as session:
        issue = session.scalar(select(Issue).where(Issue.week == week))
        if issue is None or issue.enqueued_at is None:
            raise UserError(f"--retry-failed: issue {week} has not been sent yet; nothing to retry")
        done = requeue_failed(session, issue.id, accept_duplicates=accept_duplicates)
    lines = []
    if done.deliveries:
        how = ", ".join(
            part
            for part in (
                f"{done.same_key} under their unexpired key" if done.same_key else "",
                f"{done.new_key} as new requests" if done.new_key else "",
            )
            if part
        )
        lines.append(f"issue {week}: retrying {done.deliveries} deliveries in {done.batches} batch(es) ({how})")
    if done.duplicates_possible:
        lines.append(
            f"issue {week}: --accept-duplicates: {done.duplicates_possible} reader(s) may get this issue "
            f"twice (their earlier copy may have been delivered without an answer)"
        )
    if done.held:
        until = f"{done.held_until:%Y-%m-%d %H:%M} UTC" if done.held_until else "its key expires"
        lines.append(
            f"issue {week}: {done.held} delivery(ies) were refused by the provider one by one; under "
            f"their batch's unexpired key it would only repeat that answer, so they are retried after "
            f"{until}"
        )
    if done.unconfirmed:
        lines.append(
            f"issue {week}: {done.unconfirmed} reader(s) may or may not have received this issue (the "
            f"answer was lost and the provider's key expired, or it keeps none); not resent. "
            f"`digest send --week {week} "
            f"--retry-failed --accept-duplicates` resends them, and some may get it twice"
        )
    return lines or [f"issue {week}: no failed deliveries to retry"]
