"""SMTP and kill -9: each message accepted by the server is recorded at once, so a crash repeats
at most the one message that was in flight (per connection), never the rest of its batch.

`digest send` runs as a child process against a real SMTP server (aiosmtpd, plain, no auth:
a local MTA), is killed with SIGKILL three times while it sends, and is then run to the end.
Every reader is checked against what the server itself received.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections import Counter

from aiosmtpd.controller import Controller
from sqlalchemy import select

from digest.storage.models import Issue, IssueStatus
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.support_delivery import SECRET, digest_cli, digest_popen, seed_for_cli
from tests.support_serve import free_port

READERS = 600
KILLS = 3


class SlowMailbox:
    """Accepts every message a few milliseconds after its data, like a busy MTA, and counts them."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.004)
        with self.lock:
            self.received.update(envelope.rcpt_tos)
            self.count += 1
        return "250 2.0.0 queued"


def test_three_kills_mid_send_repeat_at_most_one_message_each(tmp_path, db_url) -> None:
    seed = random.randrange(1_000_000)
    print(f"smtp crash seed {seed}")
    rng = random.Random(seed)
    box, port = SlowMailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        cfg = write_project(tmp_path / "project")
        cfg.write_text(
            apply_overrides(
                cfg.read_text(),
                {
                    "transport": {"kind": "smtp", "batch_size": 100},
                    "transport.smtp": {"host": "127.0.0.1", "port": port, "security": "none", "connections": 1},
                },
            )
        )
        rt = make_runtime(cfg, db_url)
        readers = seed_for_cli(rt, READERS)
        env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET}
        kills = 0
        for _ in range(KILLS):
            proc = digest_popen(cfg, env, "send")
            target = box.count + rng.randint(20, 80)  # somewhere inside a batch of 100
            deadline = time.monotonic() + 120
            while box.count < target and proc.poll() is None:
                assert time.monotonic() < deadline, "the sender did not get going"
                time.sleep(0.005)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
        assert kills == KILLS, "the send finished before it could be killed three times"
        final = digest_cli(cfg, env, "send")
        assert final.returncode == 0, final.stdout + final.stderr
    finally:
        controller.stop()
    missing = [r for r in readers if box.received[r] == 0]
    duplicates = sum(n - 1 for n in box.received.values() if n > 1)
    assert not missing, f"{len(missing)} reader(s) got nothing, e.g. {missing[:3]}"
    assert set(box.received) == set(readers)
    assert duplicates <= kills, f"{duplicates} duplicate message(s) after {kills} kill(s)"
    with rt.sessions() as s:
        assert s.scalar(select(Issue.status)) == IssueStatus.SENT
    rt.close()
