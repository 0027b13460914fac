"""The weekly schedule inside `digest serve`: APScheduler 3.x, a cron trigger in the configured
time zone, the job persisted in the same database.

One rule decides every automatic send, whether the cron job fired on time, late, or
the service just started: the week whose slot passed most recently gets its issue,
unless it is already sending/sent, and unless the slot is more than
`schedule.max_lateness_hours` ago — then only an operator sends it
(`digest send --week`), and the log, /healthz and the preview say so
(`slot_state`). An issue left in `sending` (SIGTERM, crash) is always resumed.

Every process runs the same job; the `weekly-send` lease and the unique week key
make sure one issue goes out per week, however many `digest serve` are running.

Long because the service's lifecycle, the one send rule and its run records are one class.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import ConflictingIdError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import select

from digest.cycle.send import CycleResult, send_week
from digest.delivery.outage import ResumeBackoff
from digest.errors import UserError
from digest.runtime import Runtime
from digest.schedule.feeds import refresh_feeds
from digest.schedule.slots import SlotState, make_trigger, slot_state
from digest.storage.lease import Lease, default_holder
from digest.storage.models import Issue, IssueStatus
from digest.weeks import Week, as_utc, utcnow

log = logging.getLogger("digest.schedule.service")

JOB_ID = "weekly-issue"
WATCH_JOB_ID = "watch"
START_JOB_ID = "start"
RESUME_JOB_ID = "resume"
BOUNCE_JOB_ID = "bounce-poll"
LEASE_NAME = "weekly-send"
JOBS_TABLE = "apscheduler_jobs"
WATCH_INTERVAL = timedelta(minutes=5)

Clock = Callable[[], datetime]


class SendFn(Protocol):
    def __call__(
        self, rt: Runtime, week: Week, *, manual: bool, now: datetime | None = None, stop: threading.Event | None = None
    ) -> CycleResult: ...


@dataclass
class RunRecord:
    at: datetime
    reason: str
    outcome: str
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "reason": self.reason, "outcome": self.outcome, "error": self.error}


# APScheduler persists the weekly job by reference (`digest.schedule.service:_weekly_job`), so it
# cannot carry the Runtime; the one service running in this process registers here.
_active: WeeklyService | None = None


def _weekly_job() -> None:
    service = _active
    if service is None:
        log.error("weekly job fired but no service is running in this process")
        return
    service.run_due("schedule", wait=True)


class WeeklyService:
    """The scheduler of one `digest serve` process: the persisted cron job plus a watchdog.

    The watchdog runs at start and every few minutes with the same rule as the cron job:
    it resumes interrupted sends and catches a slot APScheduler missed (a misfire past
    its grace, a suspended machine), so the cron job only decides *when*, never *whether*.
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        clock: Clock = utcnow,
        send: SendFn = send_week,
        holder: str | None = None,
        lease_ttl: timedelta = timedelta(minutes=5),
        watch_interval: timedelta = WATCH_INTERVAL,
        scheduler_factory: Callable[..., BaseScheduler] = BackgroundScheduler,
        executor: Any = None,
    ):
        self.rt = rt
        self.clock = clock
        self.send = send
        self.stop_event = threading.Event()
        self.lease = Lease(rt, LEASE_NAME, holder or default_holder(), ttl=lease_ttl, clock=clock)
        self.watch_interval = watch_interval
        self.last_run: RunRecord | None = None
        self.last_state: SlotState | None = None
        self._run_lock = threading.Lock()
        self._warned_overdue: str | None = None
        # A paused send (an outage) is tried again on a growing interval, with no operator.
        self.resume_backoff = ResumeBackoff(
            rt.settings.transport.resume_after_seconds, rt.settings.transport.resume_max_seconds
        )
        self._owed: list[str] = []
        self.scheduler = scheduler_factory(
            jobstores={
                "default": SQLAlchemyJobStore(engine=rt.engine, tablename=JOBS_TABLE),
                "memory": MemoryJobStore(),
            },
            executors={"default": executor or ThreadPoolExecutor(max_workers=3)},  # send, watchdog, bounces
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": rt.settings.schedule.misfire_grace_seconds,
            },
            timezone=ZoneInfo(rt.settings.schedule.timezone),
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, *, watch: bool = True) -> None:
        global _active
        _active = self
        self.scheduler.start(paused=True)
        self.ensure_job()
        now = self.clock()
        self.scheduler.add_job(
            self.run_due,
            "date",
            args=["start"],
            id=START_JOB_ID,
            jobstore="memory",
            run_date=now,
            misfire_grace_time=None,
            replace_existing=True,
        )
        if watch:
            self.scheduler.add_job(
                self.run_due,
                "interval",
                args=["watchdog"],
                id=WATCH_JOB_ID,
                jobstore="memory",
                seconds=self.watch_interval.total_seconds(),
                start_date=now + self.watch_interval,
                replace_existing=True,
            )
        bounces = self.rt.settings.bounces
        if bounces.imap_host and bounces.poll_seconds:
            self.scheduler.add_job(
                self.poll_bounces,
                "interval",
                id=BOUNCE_JOB_ID,
                jobstore="memory",
                seconds=bounces.poll_seconds,
                replace_existing=True,
                start_date=now + timedelta(seconds=min(bounces.poll_seconds, 10)),
            )
        self.scheduler.resume()
        log.info("scheduler started; next issue at %s", self.next_run_time())

    def shutdown(self, wait: bool = True) -> None:
        """Stop after the batch in flight: the sender checks `stop_event` between batches."""
        global _active
        self.stop_event.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        if _active is self:
            _active = None

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running) and not self.stop_event.is_set()

    def ensure_job(self) -> None:
        """Create the persisted cron job, or update it when config.toml's schedule changed.

        An unchanged job is left alone so its stored next run time survives a restart.
        """
        trigger = make_trigger(self.rt.settings.schedule)
        grace = self.rt.settings.schedule.misfire_grace_seconds
        job = self._stored_job()
        if job is None:
            try:
                self.scheduler.add_job(
                    _weekly_job, trigger, id=JOB_ID, jobstore="default", name="weekly issue", misfire_grace_time=grace
                )
                return
            except ConflictingIdError:  # another process created it a moment ago
                job = self.scheduler.get_job(JOB_ID, jobstore="default")
                if job is None:
                    return
        if repr(job.trigger) != repr(trigger) or job.misfire_grace_time != grace:
            log.info("schedule changed: %s -> %s", job.trigger, trigger)
            job.modify(misfire_grace_time=grace)
            job.reschedule(trigger)

    def _stored_job(self) -> Any:
        """The persisted cron job, or None; a job stored under an older module path is dropped and made anew.

        APScheduler stores the job's function by reference (`module:name`); one stored before the code
        moved (the old `scheduler` module's `_weekly_job`, before issue 22) cannot be restored, and would
        stop every start.
        """
        try:
            return self.scheduler.get_job(JOB_ID, jobstore="default")
        except (LookupError, ImportError, AttributeError, ValueError) as exc:
            log.warning("the stored weekly job could not be read (%s); it is created again", exc)
            self.scheduler.remove_job(JOB_ID, jobstore="default")
            return None

    def next_run_time(self) -> datetime | None:
        try:
            job = self.scheduler.get_job(JOB_ID, jobstore="default")
        except Exception:  # noqa: BLE001 - the database may be down; /healthz reports that
            return None
        return as_utc(job.next_run_time) if job is not None and job.next_run_time else None

    # -- the rule -----------------------------------------------------------------------

    def run_due(self, reason: str, *, wait: bool = False) -> str:
        """Resume interrupted sends, then send the latest slot's issue if it is due and not overdue.

        `wait`: the cron job waits for a watchdog run in progress; a watchdog run skips instead.
        """
        if not self._run_lock.acquire(blocking=wait):
            return "busy"
        try:
            outcome = self._run_due_locked(reason)
        except UserError as exc:  # a template or setting the operator must fix: one line, retried later
            self.last_run = RunRecord(self.clock(), reason, "error", str(exc))
            log.error("weekly job (%s) failed: %s; retried within %s", reason, exc, self.watch_interval)
            return "error"
        except Exception as exc:  # noqa: BLE001 - e.g. the database is down; the watchdog retries
            self.last_run = RunRecord(self.clock(), reason, "error", f"{type(exc).__name__}: {exc}")
            log.exception("weekly job (%s) failed; retried within %s", reason, self.watch_interval)
            return "error"
        finally:
            self._run_lock.release()
        self._schedule_resume()
        self.last_run = RunRecord(self.clock(), reason, outcome)
        log.log(
            logging.INFO if reason != "watchdog" or outcome != "nothing to do" else logging.DEBUG,
            "weekly job (%s): %s",
            reason,
            outcome,
        )
        return outcome

    def poll_bounces(self) -> str:
        """Read the bounce mailbox (`[bounces] imap_host`) as `digest subscribers bounce-poll` does, so
        bounces count without a cron job; one process at a time, errors logged and tried again."""
        from subscribers.bounce_mail import poll_mailbox

        if self.stop_event.is_set():
            return "stopping"
        every = self.rt.settings.bounces.poll_seconds
        try:
            result = poll_mailbox(self.rt, holder=self.lease.holder)
            if result.busy:
                return "busy"  # another `digest serve` (or a cron bounce-poll) is reading it
        except UserError as exc:  # unreachable, refused login, no such folder: one line, tried again
            log.error("bounce mailbox: %s; tried again in %ss", exc, every)
            return "error"
        except Exception:  # noqa: BLE001 - e.g. the database is down; the next poll tries again
            log.exception("bounce mailbox: the poll failed; tried again in %ss", every)
            return "error"
        if result.read:
            log.info("bounce mailbox: %d report(s) read, %d changed a subscriber", result.read, result.changed)
        return "ok"

    def _run_due_locked(self, reason: str) -> str:
        if self.stop_event.is_set():
            return "stopping"
        with self.lease.held() as ours:
            if not ours:
                return f"another process is sending ({self.lease.current_holder() or 'lease just released'})"
            done = []
            for week in self._unfinished_weeks():
                if self.stop_event.is_set():
                    return "stopped"
                log.info("resuming the interrupted send of %s", week.key)
                result = self.send(self.rt, week, manual=False, now=self.clock(), stop=self.stop_event)
                self._note(week, result)
                done.append(f"resumed {week.key}: {_summary(result)}")
            if self.stop_event.is_set():
                return "; ".join(done + ["stopped"])
            state = slot_state(self.rt, self.clock())
            self.last_state = state
            if state.issue_status in (IssueStatus.SENDING, IssueStatus.SENT):
                return "; ".join(done) or "nothing to do"
            if state.too_late:
                if self._warned_overdue != state.week:
                    (log.warning if state.overdue else log.info)("%s", state.message)
                    self._warned_overdue = state.week
                return "; ".join(done + [f"{state.week} overdue" if state.overdue else f"{state.week} not sent (late)"])
            if state.issue_status == IssueStatus.SKIPPED and reason == "watchdog":
                return "; ".join(done) or "nothing to do"  # a skip is retried at the slot and at start only
            refresh_feeds(self.rt)
            week = Week.parse(state.week)
            log.info("sending issue %s (%s)", week.key, reason)
            result = self.send(self.rt, week, manual=False, now=self.clock(), stop=self.stop_event)
            self._note(week, result)
            self.last_state = slot_state(self.rt, self.clock())
            return "; ".join(done + [f"sent {week.key}: {_summary(result)}"])

    def _note(self, week: Week, result: CycleResult) -> None:
        s = result.summary
        if s is not None and (s.paused or (s.owed and s.deferred_batches)):
            self._owed.append(
                f"issue {week.key}: " + (f"paused: {s.paused}" if s.paused else f"{s.owed} reader(s) still owed")
            )

    def _schedule_resume(self) -> None:
        """Try a paused send again after a growing interval; back to the first interval once none is."""
        owed, self._owed = self._owed, []
        if not owed:
            self.resume_backoff.reset()
            return
        if self.stop_event.is_set() or not self.scheduler.running:
            return
        delay = self.resume_backoff.next_delay()
        log.warning("%s; trying again in %.0f s", "; ".join(owed), delay)
        self.scheduler.add_job(
            self.run_due,
            "date",
            args=["resume"],
            id=RESUME_JOB_ID,
            jobstore="memory",
            run_date=self.clock() + timedelta(seconds=delay),
            misfire_grace_time=None,
            replace_existing=True,
        )

    def _unfinished_weeks(self) -> list[Week]:
        with self.rt.sessions() as session:
            weeks = session.scalars(select(Issue.week).where(Issue.status == IssueStatus.SENDING).order_by(Issue.week))
            return [Week.parse(w) for w in weeks]

    def _on_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED and event.job_id == BOUNCE_JOB_ID:
            log.info(
                "bounce mailbox: the poll due at %s ran too late and was skipped; the next one reads what is there",
                event.scheduled_run_time,
            )
        elif event.code == EVENT_JOB_MISSED:
            log.warning(
                "job %s missed its run time %s; the watchdog checks whether the issue is still due",
                event.job_id,
                event.scheduled_run_time,
            )
        elif event.code == EVENT_JOB_ERROR:
            log.error("job %s failed: %s", event.job_id, event.exception)

    # -- what /healthz shows ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        nxt = self.next_run_time()
        return {
            "running": self.running,
            "next_run_time": nxt.isoformat() if nxt else None,
            "last_run": self.last_run.as_dict() if self.last_run else None,
        }


def _summary(result: CycleResult) -> str:
    p = result.prepared
    if p.skip_reason:
        return f"skipped ({p.skip_reason})"
    s = result.summary
    if s is None:
        return p.status
    text = f"{s.sent} sent, {s.failed} failed, {s.dropped} dropped"
    if s.paused:
        text += f", {s.owed} still owed, paused: {s.paused}"
    elif s.owed:
        text += f", {s.owed} still owed"
    return text + (f", stopped: {s.stopped}" if s.stopped else "")


# -- an injectable clock for APScheduler itself (tests) -------------------------------------


@contextlib.contextmanager
def apscheduler_clock(clock: Clock) -> Iterator[None]:
    """Make APScheduler read `clock` instead of the system time (it only calls `datetime.now`).

    Only for tests that walk weeks of schedule in a moment; patches two module globals.
    """
    import apscheduler.executors.base as executors_base
    import apscheduler.schedulers.base as schedulers_base

    class _ClockDatetime(datetime):
        @classmethod
        # The test clock stands in for datetime.now; its signature differs only in tz's overload types.
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            moment = clock()
            return moment.astimezone(tz) if tz is not None else moment.astimezone(UTC).replace(tzinfo=None)

    saved = (schedulers_base.datetime, executors_base.datetime)
    schedulers_base.datetime = _ClockDatetime
    executors_base.datetime = _ClockDatetime
    try:
        yield
    finally:
        schedulers_base.datetime, executors_base.datetime = saved
