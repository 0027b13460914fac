"""A provider that accepts and then stalls or cuts the connection: whatever `digest send` suggests
next, every reader gets the issue exactly once (the fake's own record, recipient by recipient)."""

from __future__ import annotations

import re
import shlex

from sqlalchemy import select

from digest.storage.models import Issue, IssueStatus
from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.support_delivery import (
    assert_exactly_once,
    digest_cli,
    resend_env,
    resend_project,
    resend_runtime,
    seed_for_cli,
)

READERS = 300
SUGGESTED = re.compile(r"`(digest send[^`]*)`")


def test_stalls_and_dropped_answers_then_whatever_the_cli_suggests_mail_every_reader_once(tmp_path, db_url) -> None:
    faults = Faults(stall_rate=0.15, stall_seconds=2.5, accept_then_drop_rate=0.10, seed=20261130)
    state = FakeResend(faults=faults)
    with FakeResendServer(state) as server:
        # One attempt per batch per run: each lost answer leaves its batch for whatever comes next.
        cfg = resend_project(
            tmp_path / "project", server.url, max_attempts=1, timeout_seconds=1.0, batch_size=20, concurrency=2
        )
        rt = resend_runtime(cfg, server.url, db_url)
        readers = seed_for_cli(rt, READERS)
        env = resend_env(server.url, db_url)
        result = digest_cli(cfg, env, "send")
        runs = [result]
        suggestion: list[str] = []
        while result.returncode != 0 and len(runs) < 12:
            found = SUGGESTED.findall(result.stdout + result.stderr)
            suggestion = shlex.split(found[-1])[1:] if found else suggestion  # else: the last advice again
            assert suggestion, f"exit {result.returncode} without a suggestion:\n{result.stdout}{result.stderr}"
            args = suggestion
            assert "--accept-duplicates" not in args  # nothing here needs the operator to accept duplicates
            result = digest_cli(cfg, env, *args)
            runs.append(result)
        assert result.returncode == 0, result.stdout + result.stderr
        outcomes = state.summary()["outcomes"]
    assert len(runs) > 1  # the faults did strike
    assert outcomes.get("accepted+stalled", 0) > 0 and outcomes.get("accepted+dropped_after", 0) > 0
    assert outcomes.get("replayed", 0) > 0
    assert_exactly_once(state.copies_by_recipient(), readers)
    with rt.sessions() as s:
        assert s.scalar(select(Issue.status)) == IssueStatus.SENT
    rt.close()
