"""Many `digest worker` processes on PostgreSQL: whole batches each, one shared request budget.

Checked against the fake Resend's own records: every subscriber mailed exactly
once, and the combined request rate of all workers within the configured limit
(from the fake's arrival timestamps; the fake also enforces the limit itself
with 429s, and may have had to only rarely, for arrivals that jittered).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

from sqlalchemy import func, select

from digest.cycle import prepare
from digest.storage.models import BATCH_SENT, ISSUE_SENT, Batch, Issue
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
# Arrival jitter allowed per one-second window: on 2 shared cores with other test runs, a request
# is seen up to ~0.15 s late now and then (a broken limiter is off by far more: each of 4 workers
# pacing alone would send 4 times the limit, and a burst would put 12 requests in one instant).
JITTER = 0.15


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
    # The fake runs in its own process at a raised priority (when allowed), so the arrival
    # times it records are not delayed by the test process or by other work on the machine.
    with FakeResendProcess(rate_limit=LIMIT, boost=True) as server:
        cfg = resend_project(tmp_path / "project", server.url, requests_per_second=float(LIMIT), batch_size=40,
                             concurrency=3)
        rt = resend_runtime(cfg, server.url, pg_url)
        readers = seed_for_cli(rt, 3200)  # 80 batches: about 10 s at the limit
        env = resend_env(server.url, pg_url)
        workers = [digest_popen(cfg, env, "worker", "--poll", "0.2") for _ in range(4)]
        logs = [_Reader(proc) for proc in workers]
        try:
            # Start sending only once every worker is up, so all four compete for the batches.
            deadline = time.monotonic() + 120
            while not all(any(" ready: " in line for line in log.lines) for log in logs):
                assert time.monotonic() < deadline, [log.lines for log in logs]
                assert all(proc.poll() is None for proc in workers), [log.lines for log in logs]
                time.sleep(0.05)
            prepared = prepare(rt, this_week(rt), manual=True)
            assert prepared.recipients == len(readers)
            deadline = time.monotonic() + 240
            while True:
                with rt.sessions() as s:
                    if s.scalar(select(Issue.status)) == ISSUE_SENT:
                        break
                assert time.monotonic() < deadline, "the workers did not finish the issue"
                time.sleep(0.2)
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
    # The fake counts arrivals strictly (at most LIMIT in any one-second window), and arrivals jitter on
    # a shared machine (as JITTER below allows): a 429 costs one slot and its batch is retried, never sent
    # twice. Workers that did not share the budget would see about as many 429s as accepted requests.
    assert outcomes["accepted"] == 80 and outcomes.get("rate_limited", 0) <= 8, outcomes
    assert set(outcomes) <= {"accepted", "rate_limited"}, outcomes
    spans = [arrivals[i + LIMIT] - arrivals[i] for i in range(len(arrivals) - LIMIT)]
    at = spans.index(min(spans))
    around = [round(b - a, 3) for a, b in zip(arrivals[max(0, at - 4):], arrivals[max(0, at - 4) + 1:at + LIMIT + 4])]
    assert spans[at] >= 1.0 - JITTER, (f"{LIMIT + 1} requests arrived within {spans[at]:.3f} s (request {at}); "
                                       f"gaps around: {around}")
    assert (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) <= LIMIT
    with rt.sessions() as s:
        holders = set(s.scalars(select(Batch.claimed_by)))
        assert s.scalar(select(func.count()).select_from(Batch).where(Batch.status != BATCH_SENT)) == 0
    pids = {h.split(":")[1] for h in holders if h}
    assert len(pids) == 4, f"only {len(pids)} of 4 workers got batches"
    rt.close()


def test_on_sqlite_a_second_worker_says_one_worker_sends(tmp_path, sqlite_url) -> None:
    state = FakeResend()
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url)
        rt = resend_runtime(cfg, server.url, sqlite_url)
        env = resend_env(server.url, sqlite_url)
        first = digest_popen(cfg, env, "worker", "--poll", "0.2")
        try:
            deadline = time.monotonic() + 60
            from digest.lease import Lease

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
