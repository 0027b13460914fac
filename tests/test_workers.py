"""Many `digest worker` processes on PostgreSQL: whole batches each, one shared request budget.

Checked against the fake Resend's own records (every subscriber mailed exactly once) and against
the shared schedule itself, so that nothing depends on how busy the machine is:

- All four workers take part: the test holds the schedule's row lock while the issue starts, so
  every worker thread that claims a batch waits at its slot; the lock is let go only once batches
  are claimed by all four workers (a barrier, not a sleep).
- The budget is shared and kept: a trigger logs every slot reservation in the database. Each request
  the fake received took one reservation; any LIMIT + 1 consecutive slots span at least a second;
  and no request arrived before its slot (arrivals may be late on a busy machine, never early).
  A worker pacing alone would take no reservation, and a burst would arrive before its slots.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select, text

from digest.cycle.freeze import prepare
from digest.storage.models import Batch, BatchStatus, Issue, IssueStatus
from tests.fake_resend import FakeResend, FakeResendProcess, FakeResendServer
from tests.support_delivery import (
    assert_exactly_once,
    digest_cli,
    digest_popen,
    resend_env,
    resend_project,
    resend_runtime,
    seed_for_cli,
    this_week,
)

LIMIT = 8  # requests per second, for all workers together
WORKERS = 4
# Every UPDATE of the shared schedule, logged by the database itself: the slot a reservation took
# lies between OLD.next_slot and the later of it and the trigger's clock (the UPDATE read its clock
# just before). Only reservations return the slot (rate_limited's shift and hold_off return nothing).
SLOT_LOG = """
CREATE TABLE test_slot_log (id bigserial PRIMARY KEY, old_slot float8, new_slot float8, at float8,
                            reserve boolean);
CREATE FUNCTION test_log_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO test_slot_log (old_slot, new_slot, at, reserve)
  VALUES (OLD.next_slot, NEW.next_slot, EXTRACT(EPOCH FROM clock_timestamp())::float8,
          position('RETURNING NEXT_SLOT' in upper(current_query())) > 0);
  RETURN NEW;
END $$;
CREATE TRIGGER test_log_slot AFTER UPDATE ON send_rate FOR EACH ROW EXECUTE FUNCTION test_log_slot();
"""


class _Reader:
    """Collects a process's stderr lines in a thread (to see when it is ready without blocking)."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line)


def test_four_workers_on_postgresql_send_each_batch_once_within_the_shared_rate(tmp_path, pg_url) -> None:
    with FakeResendProcess(rate_limit=LIMIT, boost=True) as server:
        cfg = resend_project(
            tmp_path / "project", server.url, requests_per_second=float(LIMIT), batch_size=40, concurrency=3
        )
        rt = resend_runtime(cfg, server.url, pg_url)
        readers = seed_for_cli(rt, 3200)  # 80 batches: about 10 s at the limit
        with rt.engine.begin() as c:
            c.exec_driver_sql(SLOT_LOG)
        env = resend_env(server.url, pg_url)
        workers = [digest_popen(cfg, env, "worker", "--poll", "0.2") for _ in range(WORKERS)]
        logs = [_Reader(proc) for proc in workers]
        try:
            # Every worker is up (its limiter made the schedule's row), then the issue starts with the
            # schedule locked: claims go on, sending waits, until all four workers hold batches.
            wait_until(
                lambda: all(any(" ready: " in line for line in log.lines) for log in logs),
                workers,
                logs,
                "the workers did not start",
            )
            # The lock is an UPDATE that commits (not a SELECT FOR UPDATE rolled back): the waiting
            # reservations then see a new row version and read the clock again, as behind any other
            # reservation, instead of using the time they started waiting.
            with rt.engine.connect() as holder:
                holder.begin()
                locked = holder.execute(text("UPDATE send_rate SET next_slot = next_slot RETURNING name")).all()
                assert locked == [("resend",)]
                prepared = prepare(rt, this_week(rt), manual=True)
                assert prepared.recipients == len(readers)
                wait_until(
                    lambda: len(_claimers(rt)) == WORKERS,
                    workers,
                    logs,
                    f"batches were not claimed by {WORKERS} workers",
                )
                holder.commit()
            wait_until(
                lambda: _issue_status(rt) == IssueStatus.SENT,
                workers,
                logs,
                "the workers did not finish the issue",
                timeout=240,
            )
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGTERM)
            outputs = [proc.communicate(timeout=60)[0] for proc in workers]
        copies, outcomes, arrivals = server.copies_by_recipient(), server.summary()["outcomes"], server.arrivals()
    for proc, out, log in zip(workers, outputs, logs):
        assert proc.returncode == 0, out + "".join(log.lines)
    counted = sum(int(re.match(r"worker: (\d+) sent, 0 failed", out).group(1)) for out in outputs)  # type: ignore[union-attr]
    assert counted == len(readers)
    assert_exactly_once(copies, readers)
    # The fake refuses (429) what exceeds LIMIT in any one-second window of arrivals; a refused request
    # costs its batch a retry, never a second copy. How many there are depends on the machine's load.
    assert outcomes["accepted"] == 80 and set(outcomes) <= {"accepted", "rate_limited"}, outcomes
    with rt.engine.connect() as c:
        slots = c.execute(
            text("SELECT old_slot, GREATEST(old_slot, at) FROM test_slot_log WHERE reserve ORDER BY new_slot")
        ).all()
    assert len(slots) == len(arrivals), (len(slots), outcomes)  # every request took a slot of the shared schedule
    earliest, latest = [float(a) for a, _ in slots], [float(b) for _, b in slots]
    spans = [earliest[i + LIMIT] - latest[i] for i in range(len(slots) - LIMIT)]
    assert min(spans) >= 1.0, f"{LIMIT + 1} slots within {min(spans):.3f} s (slot {spans.index(min(spans))})"
    early = [(round(a, 4), round(b, 4)) for a, b in zip(arrivals, sorted(latest)) if a < b - 0.001]
    assert not early, f"requests arrived before their slots (arrival, slot): {early[:5]}"
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Batch).where(Batch.status != BatchStatus.SENT)) == 0
    rt.close()


def wait_until(
    done: Callable[[], bool], workers: list[subprocess.Popen[str]], logs: list[_Reader], what: str, timeout: float = 120
) -> None:
    """Poll `done`, failing early when a worker exits (its log says why)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: {[log.lines for log in logs]}"
        assert all(proc.poll() is None for proc in workers), [log.lines for log in logs]
        time.sleep(0.05)


def _claimers(rt) -> set[str]:
    """The worker processes holding a claimed batch now (claimed_by is `host:pid:thread`)."""
    with rt.sessions() as s:
        holders = s.scalars(select(Batch.claimed_by).where(Batch.status == BatchStatus.CLAIMED))
        return {h.split(":")[1] for h in holders if h}


def _issue_status(rt) -> str | None:
    with rt.sessions() as s:
        return s.scalar(select(Issue.status))


def test_on_sqlite_a_second_worker_says_one_worker_sends(tmp_path, sqlite_url) -> None:
    state = FakeResend()
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url)
        rt = resend_runtime(cfg, server.url, sqlite_url)
        env = resend_env(server.url, sqlite_url)
        first = digest_popen(cfg, env, "worker", "--poll", "0.2")
        try:
            deadline = time.monotonic() + 60
            from digest.storage.lease import Lease

            while Lease(rt, "delivery-worker").current_holder() is None:
                assert time.monotonic() < deadline and first.poll() is None, "the first worker did not start"
                time.sleep(0.05)
            second = digest_cli(cfg, env, "worker", "--until-idle")
        finally:
            first.terminate()
            first.communicate(timeout=30)
    assert second.returncode == 2
    assert "on SQLite one worker sends at a time" in second.stderr and "PostgreSQL" in second.stderr
    assert first.returncode == 0  # SIGTERM: finishes what is in flight and exits cleanly
    rt.close()
