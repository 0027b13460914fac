"""The weekly schedule across daylight-saving changes, with an injected clock.

Two levels: the trigger's fire times (pure), and the real APScheduler with its
job persisted in the database (SQLite and PostgreSQL), driven by a fake clock
through weeks of spring and autumn changes in Europe/London and America/New_York,
with restarts in between.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import func, select

from digest.config import ScheduleSettings
from digest.cycle.freeze import Prepared
from digest.cycle.send import CycleResult
from digest.runtime import Runtime
from digest.schedule.service import JOB_ID, WeeklyService, apscheduler_clock
from digest.schedule.slots import latest_slot_week, make_trigger, slot_state
from digest.storage.models import Issue, IssueStatus, SchedulerJob
from digest.weeks import Week
from tests.conftest import apply_overrides, make_runtime, write_project

UTC = UTC

# (zone, weekday, time): the default slot, a wall time that falls into the spring gap or
# repeats in the autumn in each zone (DST changes happen early on Sunday morning).
SCHEDULES = [
    ("Europe/London", "monday", "09:00"),
    ("Europe/London", "sunday", "01:30"),  # gap 2026-03-29, repeated 2026-10-25
    ("America/New_York", "sunday", "02:30"),  # gap 2026-03-08
    ("America/New_York", "sunday", "01:30"),  # repeated 2026-11-01
    ("America/New_York", "saturday", "23:59"),
]
DST_DAYS = {
    "Europe/London": (date(2026, 3, 29), date(2026, 10, 25)),
    "America/New_York": (date(2026, 3, 8), date(2026, 11, 1)),
}


def _wall(moment: datetime, zone: str) -> tuple[date, time]:
    local = moment.astimezone(ZoneInfo(zone))
    return local.date(), local.time().replace(tzinfo=None)


def _same_instant(a: datetime, b: datetime) -> bool:
    # `==` between aware datetimes of different zones is False for ambiguous wall times (PEP 495).
    return a.timestamp() == b.timestamp()


@pytest.mark.parametrize("zone,day,at", SCHEDULES)
def test_trigger_fires_once_a_week_at_the_local_wall_time_across_dst(zone: str, day: str, at: str) -> None:
    schedule = ScheduleSettings(day=day, time=at, timezone=zone)
    trigger = make_trigger(schedule)
    hh, mm = schedule.hour_minute
    fires = []
    previous, now = None, datetime(2026, 1, 1, tzinfo=UTC)
    while now < datetime(2027, 1, 1, tzinfo=UTC):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        fires.append(fire)
        previous = now = fire
    weeks = [Week.of(_wall(f, zone)[0]) for f in fires]
    assert len(weeks) == len(set(weeks)), "a week fired twice"
    assert all(b == a.next() for a, b in zip(weeks, weeks[1:])), "a week was skipped"
    spring, autumn = DST_DAYS[zone]
    crossed = {Week.of(spring), Week.of(autumn)}
    assert crossed <= set(weeks)
    for fire, week in zip(fires, weeks):
        assert _same_instant(fire, week.slot(schedule)), "the trigger and the issue's slot disagree"
        local_day, local_time = _wall(fire, zone)
        assert local_day.weekday() == schedule.weekday_index
        if local_time != time(hh, mm):
            # Only a wall time that does not exist (spring gap) moves, one hour on, that day only.
            assert local_day == spring and local_time == time(hh + 1, mm)


@pytest.mark.parametrize("zone,day,at", SCHEDULES)
def test_trigger_from_any_moment_never_fires_the_repeated_hour(zone: str, day: str, at: str) -> None:
    """A restart inside the repeated hour (no previous fire time) does not fire a second time."""
    schedule = ScheduleSettings(day=day, time=at, timezone=zone)
    trigger = make_trigger(schedule)
    _, autumn = DST_DAYS[zone]
    start = datetime.combine(autumn, time(0, 0), ZoneInfo(zone)).astimezone(UTC) - timedelta(hours=2)
    for minutes in range(0, 8 * 60, 5):
        now = start + timedelta(minutes=minutes)
        fire = trigger.get_next_fire_time(None, now)
        assert fire is not None and fire >= now
        week = Week.of(_wall(fire, zone)[0])
        assert _same_instant(fire, week.slot(schedule))


def test_latest_slot_week_switches_at_the_slot() -> None:
    schedule = ScheduleSettings(day="monday", time="09:00", timezone="Europe/London")
    slot = Week.parse("2026-W14").slot(schedule)  # first Monday of British Summer Time: 08:00 UTC
    assert slot == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert latest_slot_week(schedule, slot - timedelta(seconds=1)).key == "2026-W13"
    assert latest_slot_week(schedule, slot).key == "2026-W14"


# -- the real scheduler and job store, driven by a fake clock ---------------------------------


class ManualScheduler(BaseScheduler):
    """APScheduler without its own thread: the test calls `_process_jobs` at each clock step."""

    def wakeup(self) -> None:
        pass

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class RecordingSend:
    """Stands in for digest.cycle.send.send_week: records the call and marks the week sent."""

    clock: FakeClock
    calls: list[tuple[str, datetime]] = field(default_factory=list)

    def __call__(
        self, rt: Runtime, week: Week, *, manual: bool, now: datetime | None = None, stop: threading.Event | None = None
    ) -> CycleResult:
        assert manual is False
        self.calls.append((week.key, self.clock()))
        with rt.sessions.begin() as s:
            s.add(Issue(week=week.key, status=IssueStatus.SENT, pins=[], excludes=[], sent_at=self.clock()))
        return CycleResult(Prepared(None, week.key, IssueStatus.SENT))


@dataclass
class Harness:
    rt: Runtime
    clock: FakeClock
    send: RecordingSend
    executed: list[datetime] = field(default_factory=list)
    missed: list[datetime] = field(default_factory=list)
    service: WeeklyService | None = None

    def start(self) -> WeeklyService:
        service = WeeklyService(
            self.rt,
            clock=self.clock,
            send=self.send,
            holder=f"test:{id(self)}",
            scheduler_factory=ManualScheduler,
            executor=DebugExecutor(),
        )
        service.scheduler.add_listener(self._event, EVENT_JOB_MISSED | EVENT_JOB_EXECUTED)
        service.start(watch=False)
        self.service = service
        self.step()
        return service

    def _event(self, event) -> None:  # type: ignore[no-untyped-def]
        if getattr(event, "job_id", None) != JOB_ID:
            return
        if event.code == EVENT_JOB_EXECUTED:
            self.executed.append(event.scheduled_run_time)
        elif event.code == EVENT_JOB_MISSED:
            self.missed.append(event.scheduled_run_time)

    def step(self) -> None:
        assert self.service is not None
        self.service.scheduler._process_jobs()

    def walk_until(self, end: datetime, step: timedelta = timedelta(hours=1)) -> None:
        """Advance like a real scheduler would wake: every hour, and exactly at each stored run time."""
        while self.clock.now < end:
            nxt = self.service.next_run_time() if self.service else None
            target = self.clock.now + step
            if nxt is not None and self.clock.now < nxt < target:
                target = nxt
            self.clock.now = min(target, end)
            self.step()

    def stop(self) -> None:
        assert self.service is not None
        self.service.shutdown(wait=True)
        self.service = None


def _runtime(tmp_path, db_url: str, zone: str, day: str, at: str) -> Runtime:
    cfg = write_project(tmp_path / f"p-{zone.replace('/', '-')}")
    text = apply_overrides(cfg.read_text(), {"schedule": {"timezone": zone, "day": day, "time": at}})
    cfg.write_text(text)
    return make_runtime(cfg, db_url)


@pytest.mark.parametrize("zone,day,at", [("Europe/London", "sunday", "01:30"), ("America/New_York", "sunday", "01:30")])
def test_persisted_job_fires_once_a_week_through_dst_and_restarts(
    tmp_path, db_url: str, zone: str, day: str, at: str
) -> None:
    rt = _runtime(tmp_path, db_url, zone, day, at)
    schedule = rt.settings.schedule
    spring, autumn = DST_DAYS[zone]
    clock = FakeClock(datetime.combine(spring - timedelta(days=12), time(12, 0), UTC))  # a Tuesday
    h = Harness(rt, clock, RecordingSend(clock))
    try:
        with apscheduler_clock(clock):
            h.start()
            # First start, Tuesday: Sunday's slot is 2 days past, longer than max_lateness: not sent.
            # Nothing went out before, so it is not flagged overdue: the newsletter starts next week.
            assert h.send.calls == []
            state = slot_state(rt, clock())
            assert state.too_late and not state.overdue
            h.walk_until(datetime.combine(spring + timedelta(days=16), time(12, 0), UTC))
            h.stop()

            # Down for months; restarted on the Tuesday before the autumn change. The stored job
            # is due (missed past its grace) and coalesced; the overdue week is not sent.
            with rt.sessions() as s:
                assert s.scalar(select(func.count()).select_from(SchedulerJob)) == 1
            clock.now = datetime.combine(autumn - timedelta(days=5), time(12, 0), UTC)
            h.start()
            assert len(h.missed) == 1
            assert slot_state(rt, clock()).overdue  # earlier issues went out: the operator is told
            h.walk_until(datetime.combine(autumn + timedelta(days=16), time(12, 0), UTC))
            h.stop()
    finally:
        rt.close()

    expected = []
    for first, last in [
        (spring - timedelta(days=12), spring + timedelta(days=16)),
        (autumn - timedelta(days=5), autumn + timedelta(days=16)),
    ]:
        week = latest_slot_week(schedule, datetime.combine(first, time(12, 0), UTC)).next()
        while week.slot(schedule) <= datetime.combine(last, time(12, 0), UTC):
            expected.append(week)
            week = week.next()
    assert Week.of(spring) in expected and Week.of(autumn) in expected
    # Each week: the job ran once for its slot, sent once, at the local wall time.
    assert [w for w, _ in h.send.calls] == [w.key for w in expected]
    assert [t.timestamp() for _, t in h.send.calls] == [w.slot(schedule).timestamp() for w in expected]
    assert [t.timestamp() for t in h.executed] == [w.slot(schedule).timestamp() for w in expected]
    for _, fired in h.send.calls:
        local_day, local_time = _wall(fired, zone)
        assert local_day.weekday() == 6
        # 01:30 does not exist on the morning London springs forward (01:00 -> 02:00): 02:30 BST then.
        gap = zone == "Europe/London" and local_day == spring
        assert local_time == (time(2, 30) if gap else time(1, 30))


def test_restart_within_max_lateness_sends_the_missed_issue_once(tmp_path, db_url: str) -> None:
    """Down over the slot for 2 h (past the 1 h misfire grace, within the 6 h max lateness): sent at start."""
    rt = _runtime(tmp_path, db_url, "Europe/London", "monday", "09:00")
    schedule = rt.settings.schedule
    clock = FakeClock(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    h = Harness(rt, clock, RecordingSend(clock))
    slot = Week.parse("2026-W14").slot(schedule)  # Monday 30 March, 09:00 BST
    try:
        with apscheduler_clock(clock):
            h.start()
            h.walk_until(slot - timedelta(minutes=30))
            h.stop()
            clock.now = slot + timedelta(hours=2)
            h.start()
            assert h.missed == [slot]
            h.walk_until(slot + timedelta(days=1))
            h.stop()
            # And 30 minutes late (within the grace): APScheduler runs it, the start check finds it sent.
            slot2 = Week.parse("2026-W15").slot(schedule)
            h.start()
            h.walk_until(slot2 - timedelta(minutes=1))
            h.stop()
            clock.now = slot2 + timedelta(minutes=30)
            h.start()
            h.walk_until(slot2 + timedelta(days=1))
            h.stop()
    finally:
        rt.close()
    assert h.send.calls == [("2026-W14", slot + timedelta(hours=2)), ("2026-W15", slot2 + timedelta(minutes=30))]


def test_overdue_slot_is_reported_and_not_sent(tmp_path, db_url: str) -> None:
    rt = _runtime(tmp_path, db_url, "America/New_York", "monday", "09:00")
    with rt.sessions.begin() as s:
        s.add(Issue(week="2026-W44", status=IssueStatus.SENT, pins=[], excludes=[]))
    slot = Week.parse("2026-W45").slot(rt.settings.schedule)
    clock = FakeClock(slot + timedelta(hours=7))
    h = Harness(rt, clock, RecordingSend(clock))
    try:
        with apscheduler_clock(clock):
            service = h.start()
            state = slot_state(rt, clock())
            assert state.week == "2026-W45" and state.overdue and state.issue_status is None
            assert "digest send --week 2026-W45" in state.message
            assert service.last_run is not None and "overdue" in service.last_run.outcome
            h.walk_until(clock.now + timedelta(hours=12))
            h.stop()
    finally:
        rt.close()
    assert h.send.calls == []
    # Within max_lateness it is not overdue.
    assert not slot_state(rt, slot + timedelta(hours=5)).overdue


# -- the weekly job itself: feeds, then the real cycle ----------------------------------------


def _feed_server(items: list[dict]) -> tuple[str, object]:  # type: ignore[type-arg]
    import http.server
    import json

    body = json.dumps(items).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/feed.json":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def test_weekly_job_refreshes_the_feeds_then_sends_the_issue(tmp_path, db_url: str) -> None:
    from digest.storage.models import Comparison
    from subscribers.api import add_subscriber
    from tests.support_serve import PLAIN

    second = {
        **PLAIN,
        "title": "Gamma Notes vs Delta Notes",
        "tools": [{**PLAIN["tools"][0], "name": "Gamma Notes"}, {**PLAIN["tools"][1], "name": "Delta Notes"}],
    }
    slot = Week.parse("2026-W47").slot(ScheduleSettings())
    items = [{**c, "published_at": (slot - timedelta(days=1)).isoformat()} for c in (PLAIN, second)]
    base, server = _feed_server(items)
    try:
        cfg = write_project(tmp_path / "p")
        cfg.write_text(
            apply_overrides(cfg.read_text(), {"schedule": {"feeds": [f"{base}/feed.json", f"{base}/missing.json"]}})
        )
        rt = make_runtime(cfg, db_url)
        with rt.sessions.begin() as s:
            for i in range(3):
                add_subscriber(s, f"feed{i}@example.com", confirmed=True)
        service = WeeklyService(rt, clock=lambda: slot + timedelta(seconds=5), holder="feeds:1")
        outcome = service.run_due("schedule", wait=True)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
    assert outcome.startswith("sent 2026-W47: 3 sent"), outcome
    with rt.sessions() as s:
        slugs = set(s.scalars(select(Comparison.slug)))
        issue = s.scalar(select(Issue).where(Issue.week == "2026-W47"))
    assert slugs == {"alpha-notes-vs-beta-notes", "gamma-notes-vs-delta-notes"}  # the 404 feed is skipped
    assert issue is not None and issue.status == IssueStatus.SENT
    assert len(list((rt.outbox_dir / "2026-W47").glob("*.eml"))) == 3
    # Running again (a second scheduler, a retry) sends nothing more.
    assert service.run_due("schedule", wait=True) == "nothing to do"
    assert len(list((rt.outbox_dir / "2026-W47").glob("*.eml"))) == 3
    rt.close()


def test_editing_the_schedule_moves_the_stored_job_and_a_restart_keeps_it(tmp_path, db_url: str) -> None:
    clock = FakeClock(datetime(2026, 11, 18, 12, 0, tzinfo=UTC))  # Wednesday
    rt = _runtime(tmp_path, db_url, "Europe/London", "monday", "09:00")
    h = Harness(rt, clock, RecordingSend(clock))
    with apscheduler_clock(clock):
        service = h.start()
        assert service.next_run_time() == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        h.stop()
        clock.now += timedelta(hours=1)
        service = h.start()  # unchanged config: the stored run time stays
        assert service.next_run_time() == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        h.stop()
    rt.close()
    moved = _runtime(tmp_path / "again", db_url, "America/New_York", "thursday", "07:15")
    h2 = Harness(moved, clock, RecordingSend(clock))
    with apscheduler_clock(clock):
        service = h2.start()
        assert service.next_run_time() == datetime(2026, 11, 19, 12, 15, tzinfo=UTC)  # 07:15 EST
        h2.stop()
    with moved.sessions() as s:
        assert s.scalar(select(func.count()).select_from(SchedulerJob)) == 1
    moved.close()


def test_a_job_stored_by_an_older_module_path_is_made_anew_not_a_crash(tmp_path, db_url: str) -> None:
    """Issue 22 moved the weekly job's module; a job persisted before names a path that no longer imports."""
    import pickle

    from sqlalchemy import update

    clock = FakeClock(datetime(2026, 11, 18, 12, 0, tzinfo=UTC))  # Wednesday
    rt = _runtime(tmp_path, db_url, "Europe/London", "monday", "09:00")
    h = Harness(rt, clock, RecordingSend(clock))
    with apscheduler_clock(clock):
        h.start()
        h.stop()
    with rt.sessions.begin() as s:
        state = pickle.loads(s.scalar(select(SchedulerJob.job_state)))
        state["func"] = "digest." + "scheduler:_weekly_job"  # where it lived before the move
        s.execute(update(SchedulerJob).values(job_state=pickle.dumps(state)))
    with apscheduler_clock(clock):
        service = h.start()
        assert service.next_run_time() == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        h.stop()
    with rt.sessions() as s:
        state = pickle.loads(s.scalar(select(SchedulerJob.job_state)))
        assert state["func"].endswith(":_weekly_job") and not state["func"].startswith("digest." + "scheduler:")
    rt.close()
