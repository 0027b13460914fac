"""Exactly once across editions: `digest send` killed with SIGKILL mid-send, then resumed.

Readers hold three choices (all topics, Open Models, Developer Tools + Image Generation), so the
week has three editions whose batches interleave; the sender is killed at random moments (once
from inside the provider, right after it accepted a batch), started again, and in the end every
reader has exactly one copy, of their own edition, by the fake provider's own record.
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta

from sqlalchemy import select

from digest.storage.models import Delivery, Edition
from digest.weeks import utcnow
from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.support_delivery import (
    add_readers,
    assert_exactly_once,
    digest_cli,
    digest_popen,
    resend_env,
    resend_project,
    resend_runtime,
)
from tests.support_editions import seed_categories, set_choice
from tests.test_crash import _kill, _wait_for_requests

READERS = 900
KILLS = 4


def test_sigkill_mid_send_across_editions_then_resume_mails_each_reader_their_edition_once(tmp_path, db_url) -> None:
    seed = random.randrange(1_000_000)
    print(f"edition crash test seed {seed}")
    rng = random.Random(seed)
    state = FakeResend(faults=Faults(slow_rate=0.3, slow_seconds=0.25, seed=seed))
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url, requests_per_second=20.0, batch_size=20, concurrency=4)
        rt = resend_runtime(cfg, server.url, db_url)
        seed_categories(rt, published=utcnow() - timedelta(days=1))
        readers = add_readers(rt, READERS)
        set_choice(rt, readers[1::3], topics="open-models")
        set_choice(rt, readers[2::3], topics="developer-tools+image-generation")
        env = resend_env(server.url, db_url)
        kills = 0
        for round_no in range(KILLS):
            proc = digest_popen(cfg, env, "send")
            if round_no == 1:
                state.on_accepted = lambda pid=proc.pid: os.kill(pid, signal.SIGKILL)
            _wait_for_requests(state, proc, len(state.log) + rng.randint(0, 4))
            time.sleep(rng.uniform(0.0, 0.4))
            state.on_accepted = None
            killed = _kill(proc) or round_no == 1
            kills += killed
            stdout, stderr = proc.communicate()
            assert killed or proc.returncode == 0, stdout + stderr
        assert kills >= KILLS - 1, "the send finished before the harness could kill it often enough"
        final = digest_cli(cfg, env, "send")
        assert final.returncode == 0, final.stdout + final.stderr
    assert_exactly_once(state.copies_by_recipient(), readers)
    with rt.sessions() as s:
        subjects = dict(s.execute(select(Edition.key, Edition.subject)).all())
        edition_of = dict(
            s.execute(select(Delivery.email, Edition.key).join(Edition, Edition.id == Delivery.edition_id)).all()
        )
    assert set(subjects) == {"weekly/all", "weekly/open-models", "weekly/developer-tools+image-generation"}
    assert len(set(subjects.values())) == 3  # three different issues
    for record in state.records:
        assert record.subject == subjects[edition_of[record.to]], record.to
    want = (
        {r: "weekly/all" for r in readers[0::3]}
        | {r: "weekly/open-models" for r in readers[1::3]}
        | {r: "weekly/developer-tools+image-generation" for r in readers[2::3]}
    )
    assert edition_of == want
    rt.close()
