"""Crash safety: `digest send` killed with SIGKILL again and again, then resumed.

The harness kills the sender at random moments while it sends to the fake Resend
(one kill lands exactly after the provider accepted a batch and before the answer
reached the sender, the moment a naive sender would resend), starts it again, and
in the end checks recipient by recipient, from the fake's own record of accepted
emails, that every confirmed subscriber got exactly one copy.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from sqlalchemy import func, select

from digest.storage.models import Delivery, DeliveryStatus, Issue, IssueStatus
from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.support_delivery import (
    assert_exactly_once,
    digest_cli,
    digest_popen,
    resend_env,
    resend_project,
    resend_runtime,
    seed_for_cli,
)

READERS = 3000
KILLS = 5


def _wait_for_requests(state: FakeResend, proc: subprocess.Popen[str], more_than: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(state.log) <= more_than and proc.poll() is None:
        assert time.monotonic() < deadline, "the sender made no request"
        time.sleep(0.02)


def _kill(proc: subprocess.Popen[str]) -> bool:
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    return True


def test_sigkill_at_random_points_then_resume_mails_everyone_exactly_once(tmp_path, db_url) -> None:
    seed = random.randrange(1_000_000)
    print(f"crash test seed {seed}")
    rng = random.Random(seed)
    # Slow answers widen the window between "accepted by the provider" and "recorded by us".
    state = FakeResend(faults=Faults(slow_rate=0.3, slow_seconds=0.25, seed=seed))
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url, requests_per_second=20.0, batch_size=20, concurrency=4)
        rt = resend_runtime(cfg, server.url, db_url)
        readers = seed_for_cli(rt, READERS)
        env = resend_env(server.url, db_url)
        kills = 0
        for round_no in range(KILLS):
            proc = digest_popen(cfg, env, "send")
            if round_no == 1:
                # Kill the sender from inside the provider: its batch is accepted, the answer never arrives.
                state.on_accepted = lambda pid=proc.pid: os.kill(pid, signal.SIGKILL)
            _wait_for_requests(state, proc, len(state.log) + rng.randint(0, 4))
            time.sleep(rng.uniform(0.0, 0.5))
            state.on_accepted = None
            killed = _kill(proc) or round_no == 1
            kills += killed
            stdout, stderr = proc.communicate()
            assert killed or proc.returncode == 0, stdout + stderr
            print(
                f"round {round_no}: {'killed' if killed else 'finished'} after {len(state.log)} request(s), "
                f"{len(state.records)} email(s) accepted so far"
            )
        assert kills >= KILLS - 1, "the send finished before the harness could kill it often enough"
        final = digest_cli(cfg, env, "send")
        assert final.returncode == 0, final.stdout + final.stderr
        assert "sent" in final.stdout
    outcomes = state.summary()["outcomes"]
    assert outcomes.get("replayed", 0) >= 1, outcomes  # a batch that reached the provider was resent, same key
    assert_exactly_once(state.copies_by_recipient(), readers)
    with rt.sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.SENT))
            == READERS
        )
        assert s.scalar(select(Issue.status)) == IssueStatus.SENT
    rt.close()
