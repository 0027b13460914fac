"""The `weekly-send` lease: one process works on the weekly issue at a time (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from digest.cycle.freeze import Prepared
from digest.cycle.send import CycleResult
from digest.runtime import Runtime
from digest.schedule.service import LEASE_NAME, WeeklyService
from digest.storage.lease import Lease
from digest.storage.models import Issue, IssueStatus, Lock
from digest.weeks import Week

UTC = UTC
NOW = datetime(2026, 11, 16, 9, 30, tzinfo=UTC)  # 30 minutes after the Monday 09:00 (GMT) slot of 2026-W47


class SlowSend:
    """Stands in for send_week: slow, records who sent, and leaves the issue sent."""

    def __init__(self, delay: float = 0.5):
        self.delay = delay
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def for_holder(self, holder: str):  # type: ignore[no-untyped-def]
        def send(rt: Runtime, week: Week, *, manual: bool, now=None, stop=None) -> CycleResult:  # type: ignore[no-untyped-def]
            with self.lock:
                self.calls.append((holder, week.key))
            time.sleep(self.delay)
            with rt.sessions.begin() as s:
                if s.scalar(select(Issue.id).where(Issue.week == week.key)) is None:
                    s.add(Issue(week=week.key, status=IssueStatus.SENT, pins=[], excludes=[]))
            return CycleResult(Prepared(None, week.key, IssueStatus.SENT))

        return send


def _service(rt: Runtime, holder: str, send) -> WeeklyService:  # type: ignore[no-untyped-def]
    return WeeklyService(rt, clock=lambda: NOW, send=send, holder=holder)


def test_two_services_racing_for_the_slot_send_once(rt: Runtime) -> None:
    slow = SlowSend()
    a = _service(rt, "host-a:1", slow.for_holder("a"))
    b = _service(rt, "host-b:2", slow.for_holder("b"))
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def run(name: str, service: WeeklyService) -> None:
        barrier.wait()
        outcomes[name] = service.run_due("schedule")

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [w for _, w in slow.calls] == ["2026-W47"]
    winner = slow.calls[0][0]
    loser = "b" if winner == "a" else "a"
    assert outcomes[winner].startswith("sent 2026-W47")
    # The loser either found the lease held or, coming second, the issue already sent.
    assert outcomes[loser].startswith("another process is sending") or outcomes[loser] == "nothing to do"
    with rt.sessions() as s:
        assert s.scalar(select(Lock).where(Lock.name == LEASE_NAME)) is None  # released after the run


def test_a_held_lease_stops_the_other_process(rt: Runtime) -> None:
    slow = SlowSend(0)
    other = Lease(rt, LEASE_NAME, "elsewhere:99", ttl=timedelta(minutes=5), clock=lambda: NOW)
    assert other.acquire()
    service = _service(rt, "here:1", slow.for_holder("here"))
    assert service.run_due("schedule") == "another process is sending (elsewhere:99)"
    assert slow.calls == []
    other.release()
    assert service.run_due("schedule").startswith("sent 2026-W47")


def test_an_expired_lease_is_taken_over(rt: Runtime) -> None:
    clock = [NOW]
    stale = Lease(rt, LEASE_NAME, "crashed:42", ttl=timedelta(minutes=5), clock=lambda: clock[0])
    assert stale.acquire()
    fresh = Lease(rt, LEASE_NAME, "new:43", ttl=timedelta(minutes=5), clock=lambda: clock[0])
    assert not fresh.acquire()
    assert fresh.current_holder() == "crashed:42"
    clock[0] = NOW + timedelta(minutes=6)
    assert fresh.acquire()
    assert not stale.renew()  # the old holder learns it lost the lease
    assert fresh.renew()


def test_a_lease_of_a_dead_local_process_is_taken_over_at_once(rt: Runtime) -> None:
    import socket

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = Lease(rt, LEASE_NAME, f"{socket.gethostname()}:{proc.pid}", clock=lambda: NOW)
    assert dead.acquire()
    assert Lease(rt, LEASE_NAME, "alive:1", clock=lambda: NOW).acquire()


def test_an_interrupted_send_is_resumed_first(rt: Runtime) -> None:
    """An issue left in `sending` (SIGTERM, crash) is resumed before the latest slot is looked at."""
    with rt.sessions.begin() as s:
        s.add(Issue(week="2026-W46", status=IssueStatus.SENDING, pins=[], excludes=[]))
    calls: list[str] = []

    def send(rt_: Runtime, week: Week, *, manual: bool, now=None, stop=None) -> CycleResult:  # type: ignore[no-untyped-def]
        calls.append(week.key)
        with rt_.sessions.begin() as s:
            issue = s.scalar(select(Issue).where(Issue.week == week.key))
            if issue is None:
                s.add(Issue(week=week.key, status=IssueStatus.SENT, pins=[], excludes=[]))
            else:
                issue.status = IssueStatus.SENT
        return CycleResult(Prepared(None, week.key, IssueStatus.SENT))

    service = _service(rt, "here:1", send)
    outcome = service.run_due("start")
    assert calls == ["2026-W46", "2026-W47"]
    assert outcome.startswith("resumed 2026-W46") and "sent 2026-W47" in outcome


def test_stop_event_prevents_new_work(rt: Runtime) -> None:
    slow = SlowSend(0)
    service = _service(rt, "here:1", slow.for_holder("here"))
    service.stop_event.set()
    assert service.run_due("schedule") == "stopping"
    assert slow.calls == []
