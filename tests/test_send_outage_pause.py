"""Outages pause a send, they never fail or complete it (invariant 6); the send finishes once the
provider is back, by hand or by `digest serve` / `digest worker`, with nobody mailed twice."""

from __future__ import annotations

import re
import threading

from sqlalchemy import select

from digest.cli.sending import SendProgress  # noqa: F401 - imported so a broken CLI module fails here
from digest.delivery.transports import make_transport
from digest.delivery.worker import run_worker
from digest.preview.history import issue_history
from digest.reports.stats import issue_stats
from digest.storage.models import AttemptOutcome, Batch, BatchStatus, DeliveryStatus, Issue, IssueStatus, SendAttempt
from tests.fake_resend import FakeResend, FakeResendServer
from tests.support_delivery import (
    add_readers,
    assert_exactly_once,
    delivery_counts,
    digest_cli,
    resend_env,
    resend_project,
    resend_runtime,
    seed_for_cli,
)
from tests.support_serve import ServeProcess, free_port, serving, wait_for
from tests.test_delivery import NOW, WEEK, make_rt, prepare, send

READERS = 450


def test_an_outage_pauses_the_send_and_leaves_every_batch_pending(tmp_path, db_url) -> None:
    state = FakeResend()
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url, pause_after_failures=4, concurrency=2)
        readers = add_readers(rt, READERS)
        server.outage()
        paused = send(rt)
        s = paused.summary
        assert s is not None and s.sent == 0 and s.failed == 0 and s.owed == READERS
        assert s.paused and s.paused.startswith("provider unreachable since ")
        with rt.sessions() as db:
            issue = db.scalar(select(Issue))
            assert issue.status == IssueStatus.SENDING and issue.pause_reason == s.paused and issue.paused_at
            assert set(db.scalars(select(Batch.status))) == {BatchStatus.PENDING}
            assert set(db.scalars(select(SendAttempt.outcome))) == {AttemptOutcome.REFUSED}
            assert len(list(db.scalars(select(SendAttempt)))) <= 5  # it stopped attempting
            stats = issue_stats(db, issue)
        assert stats["owed"] == READERS and stats["failed"] == 0 and stats["paused"] == s.paused
        history = issue_history(rt).rows[0]  # the preview's History page
        assert history.owed == READERS and history.paused == s.paused and history.status == IssueStatus.SENDING
        assert delivery_counts(rt) == {DeliveryStatus.QUEUED: READERS}
        server.restore()
        resumed = send(rt)
        assert resumed.summary is not None and resumed.summary.sent == READERS and not resumed.summary.paused
        with rt.sessions() as db:
            issue = db.scalar(select(Issue))
            assert issue.status == IssueStatus.SENT and issue.pause_reason is None
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()


def test_digest_worker_resumes_a_paused_send_when_the_provider_is_back(tmp_path, db_url) -> None:
    state = FakeResend()
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url, pause_after_failures=2, resume_after_seconds=0.5, max_attempts=2)
        readers = add_readers(rt, 150)
        prepare(rt, WEEK, manual=True, now=NOW)
        server.outage()
        stop = threading.Event()
        transport = make_transport(rt.config)
        done: list[object] = []
        worker = threading.Thread(target=lambda: done.append(run_worker(rt, transport, stop=stop, poll_seconds=0.2)))
        worker.start()
        try:
            wait_for(lambda: len(list(_attempts(rt))) >= 4, 60, what="the worker trying during the outage")
            server.restore()
            wait_for(lambda: _issue_status(rt) == IssueStatus.SENT, 60, what="the worker finishing the issue")
        finally:
            stop.set()
            worker.join(30)
            transport.close()
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()


def _attempts(rt):  # type: ignore[no-untyped-def]
    with rt.sessions() as s:
        return list(s.scalars(select(SendAttempt.id)))


def _issue_status(rt) -> str | None:  # type: ignore[no-untyped-def]
    with rt.sessions() as s:
        return s.scalar(select(Issue.status))


def test_provider_down_for_the_first_send_then_a_plain_digest_send_finishes_it_once(tmp_path, db_url) -> None:
    state = FakeResend()
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url, max_attempts=6, concurrency=4)
        rt = resend_runtime(cfg, server.url, db_url)
        readers = seed_for_cli(rt, READERS)
        env = resend_env(server.url, db_url)
        server.outage()
        down = digest_cli(cfg, env, "send", timeout=120)  # gives up within two minutes
        assert down.returncode == 75, down.stdout + down.stderr
        lines = [line for line in down.stdout.splitlines() if "paused" in line]
        assert len(lines) == 1, down.stdout
        assert re.search(r"paused: provider unreachable since \d{4}-\d\d-\d\d \d\d:\d\d UTC", lines[0])
        assert f"{READERS} reader(s) still owed" in lines[0] and "nobody is mailed twice" in lines[0]
        assert "`digest send --week" in lines[0] and "digest serve" in lines[0]
        assert "sent" not in _issue_status(rt)  # not reported sent
        assert _issue_status(rt) == IssueStatus.SENDING and delivery_counts(rt)[DeliveryStatus.FAILED] == 0
        stats = digest_cli(cfg, env, "stats")
        assert "still owed" in stats.stdout and str(READERS) in stats.stdout and "paused" in stats.stdout
        server.restore()
        again = digest_cli(cfg, env, "send")
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"{READERS} sent, 0 failed" in again.stdout
        assert _issue_status(rt) == IssueStatus.SENT
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()


def test_provider_down_for_the_first_send_then_digest_serve_finishes_it_by_itself(tmp_path, db_url) -> None:
    state = FakeResend()
    with FakeResendServer(state) as server:
        cfg = resend_project(
            tmp_path / "project",
            server.url,
            max_attempts=2,
            pause_after_failures=3,
            resume_after_seconds=1.0,
            resume_max_seconds=2.0,
        )
        rt = resend_runtime(cfg, server.url, db_url)
        readers = seed_for_cli(rt, 250)
        env = resend_env(server.url, db_url)
        server.outage()
        down = digest_cli(cfg, env, "send", timeout=120)
        assert down.returncode == 75, down.stdout + down.stderr
        serve = ServeProcess(cfg, free_port(), env, tmp_path)
        with serving(serve):
            serve.wait_ready()
            wait_for(lambda: len(_attempts(rt)) > 10, 60, what="digest serve trying during the outage")
            assert _issue_status(rt) == IssueStatus.SENDING
            server.restore()
            wait_for(lambda: _issue_status(rt) == IssueStatus.SENT, 90, what="digest serve finishing the issue")
        assert "provider unreachable since" in serve.output(), serve.output()
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()
