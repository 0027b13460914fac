"""The delivery engine against the fake Resend, on SQLite and PostgreSQL.

Each test names one promise of the sender: exactly once per subscriber, nobody
mailed who left, per-email rejections recorded and not retried, bounded retries,
429 honoured, leases taken over, the 24-hour idempotency window respected.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select, update

from digest.cli.sending import SendProgress
from digest.cycle.freeze import prepare
from digest.cycle.send import send_week
from digest.delivery.loop import Sender
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.summary import SendSummary
from digest.delivery.transports import make_transport
from digest.storage.installation import installation_id
from digest.storage.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryStatus,
    Edition,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.weeks import Week
from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.support_delivery import (
    active_emails,
    add_readers,
    assert_exactly_once,
    delivery_counts,
    resend_project,
    resend_runtime,
    seed_comparisons,
)

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W47
WEEK = Week.parse("2026-W47")


@pytest.fixture
def fake() -> Iterator[tuple[FakeResend, str]]:
    state = FakeResend()
    with FakeResendServer(state) as server:
        yield state, server.url


def make_rt(tmp_path: Path, url: str, db_url: str, **resend: object):  # type: ignore[no-untyped-def]
    rt = resend_runtime(resend_project(tmp_path / "project", url, **resend), url, db_url)
    seed_comparisons(rt, published=NOW - timedelta(days=1))
    return rt


def send(rt, **kw):  # type: ignore[no-untyped-def]
    return send_week(rt, WEEK, manual=True, now=NOW, **kw)


def test_every_active_subscriber_gets_one_copy_with_unsubscribe_headers_and_week_tag(fake, tmp_path, db_url) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url)
    readers = add_readers(rt, 250)
    add_readers(rt, 4, prefix="pending", status=SubscriberStatus.PENDING)
    add_readers(rt, 3, prefix="gone", status=SubscriberStatus.UNSUBSCRIBED)
    result = send(rt)
    assert result.summary is not None and result.summary.sent == 250 and result.summary.failed == 0
    assert_exactly_once(state.copies_by_recipient(), readers)
    for record in state.records:
        unsubscribe = record.headers["List-Unsubscribe"]
        assert unsubscribe.startswith("<http") and "mailto:" in unsubscribe
        assert record.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert record.tags["week"] in ("2026-W47", "2026_W47")
    keys = sorted({r.key for r in state.records})
    with rt.sessions() as s:
        install, issue_id = installation_id(s), s.scalar(select(Issue.id))
    assert keys == [f"digest-{install}-i{issue_id}-2026-W47-b{n}" for n in range(3)]
    assert max(e.emails for e in state.log) <= 100
    with rt.sessions() as s:
        rows = s.execute(select(Delivery.email, Delivery.provider_id, Delivery.status)).all()
        assert s.scalar(select(Issue.status)) == IssueStatus.SENT
    ids = {r.to: r.id for r in state.records}
    assert all(status == DeliveryStatus.SENT and ids[email] == pid for email, pid, status in rows)
    again = send(rt)
    assert again.summary is None and len(state.records) == 250  # a second run sends nothing


def test_enqueue_fixes_batches_of_at_most_100_in_subscriber_order(fake, tmp_path, db_url) -> None:
    _, url = fake
    rt = make_rt(tmp_path, url, db_url, batch_size=40)
    add_readers(rt, 130)
    add_readers(rt, 5, prefix="pending", status=SubscriberStatus.PENDING)
    prepared = prepare(rt, WEEK, manual=True, now=NOW)
    assert prepared.recipients == 130
    with rt.sessions() as s:
        rows = s.execute(select(Delivery.subscriber_id, Delivery.batch_no).order_by(Delivery.subscriber_id)).all()
        batches = s.scalars(select(Batch.batch_no).order_by(Batch.batch_no)).all()
    assert [b for _, b in rows] == [i // 40 for i in range(130)]
    assert batches == [0, 1, 2, 3]


def test_reader_who_leaves_after_enqueueing_is_not_mailed(fake, tmp_path, db_url) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url)
    readers = add_readers(rt, 150)
    prepare(rt, WEEK, manual=True, now=NOW)
    leaving = readers[120]
    with rt.sessions.begin() as s:
        s.execute(update(Subscriber).where(Subscriber.email == leaving).values(status=SubscriberStatus.UNSUBSCRIBED))
    result = send(rt)
    assert result.summary is not None and result.summary.dropped == 1
    assert_exactly_once(state.copies_by_recipient(), set(readers) - {leaving})
    with rt.sessions() as s:
        assert s.scalar(select(Delivery.status).where(Delivery.email == leaving)) == DeliveryStatus.DROPPED


def test_rejected_emails_are_recorded_per_delivery_and_not_retried(fake, tmp_path, db_url) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url)
    readers = add_readers(rt, 120)
    state.reject_to = {readers[3], readers[110]}
    result = send(rt)
    assert result.summary is not None and result.summary.failed == 2 and result.summary.sent == 118
    with rt.sessions() as s:
        failed = dict(
            s.execute(select(Delivery.email, Delivery.error).where(Delivery.status == DeliveryStatus.FAILED)).all()
        )
        assert s.scalar(select(Issue.status)) == IssueStatus.SENT
        assert set(s.scalars(select(Batch.status))) == {BatchStatus.SENT}
    assert set(failed) == {readers[3], readers[110]}
    assert all("cannot receive" in error for error in failed.values())
    assert len(state.log) == 2  # one request per batch: nothing retried
    send(rt)
    assert len(state.log) == 2


def test_5xx_is_retried_a_bounded_number_of_times_then_left_owed_and_resumed_under_the_same_key(
    fake, tmp_path, db_url
) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url, max_attempts=2)
    readers = add_readers(rt, 150)
    state.set_faults(Faults(error_rate=1.0))
    result = send(rt)
    s = result.summary
    assert s is not None and s.failed == 0 and s.owed == 150 and s.deferred_batches == 2 and not s.paused
    assert len(state.log) == 4  # 2 batches x 2 attempts, then left for the next run
    with rt.sessions() as db:
        errors = set(db.scalars(select(Batch.last_error)))
        keys = set(db.scalars(select(Batch.idem_key)))
        assert db.scalar(select(Issue.status)) == IssueStatus.SENDING  # never "sent" because batches gave up
    assert all(e and e.startswith("still owed after 2 attempt(s) in this run: Resend 500") for e in errors)
    assert delivery_counts(rt) == {"queued": 150}
    state.set_faults(Faults())
    again = send(rt)
    assert again.summary is not None and again.summary.sent == 150
    assert_exactly_once(state.copies_by_recipient(), readers)
    assert {r.key for r in state.records} == keys


def test_429_waits_for_retry_after_and_does_not_use_up_attempts(fake, tmp_path, db_url) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url, max_attempts=1)
    readers = add_readers(rt, 300)
    state.set_faults(Faults(rate_limit_rate=0.5, rate_limit_retry_after=0.2, seed=7))
    result = send(rt)
    assert result.summary is not None and result.summary.failed == 0
    assert sum(1 for e in state.log if e.outcome == "injected_429") > 0
    assert_exactly_once(state.copies_by_recipient(), readers)


def test_claim_of_a_dead_local_process_is_taken_over_but_a_live_one_is_left_alone(fake, tmp_path, db_url) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url)
    readers = add_readers(rt, 250)
    prepare(rt, WEEK, manual=True, now=NOW)
    dead_pid = 2**22 + 12345  # above pid_max defaults: no such process
    host = socket.gethostname()
    with rt.sessions.begin() as s:
        s.execute(
            update(Batch)
            .where(Batch.batch_no == 0)
            .values(
                status=BatchStatus.CLAIMED,
                claimed_by=f"{host}:{dead_pid}:0",
                claimed_at=NOW.replace(year=2100),
                attempts=1,
            )
        )
        s.execute(
            update(Batch)
            .where(Batch.batch_no == 2)
            .values(status=BatchStatus.CLAIMED, claimed_by=f"{host}:{os.getppid()}:0", claimed_at=datetime.now(UTC))
        )
    issue_id = prepare(rt, WEEK, manual=True, now=NOW).issue_id
    transport = make_transport(rt.config)
    summary = Sender(rt, transport).run(issue_id)
    transport.close()
    assert summary.sent == 200
    with rt.sessions() as s:
        assert s.scalar(select(Batch.status).where(Batch.batch_no == 2)) == BatchStatus.CLAIMED
        assert s.scalar(select(Issue.status)) == IssueStatus.SENDING
    assert_exactly_once(state.copies_by_recipient(), readers[:200])


def test_a_batch_first_tried_more_than_a_day_ago_without_an_answer_is_not_resent(fake, tmp_path, db_url) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url)
    readers = add_readers(rt, 150)
    issue_id = prepare(rt, WEEK, manual=True, now=NOW).issue_id
    long_ago = datetime.now(UTC) - timedelta(hours=25)
    with rt.sessions.begin() as s:  # an attempt with no recorded answer: it may have gone out
        s.execute(
            update(Batch)
            .where(Batch.batch_no == 1)
            .values(
                attempts=1,
                first_attempt_at=long_ago,
                status=BatchStatus.CLAIMED,
                claimed_at=long_ago,
                claimed_by="gone:1:0",
            )
        )
    transport = make_transport(rt.config)
    summary = Sender(rt, transport).run(issue_id)
    transport.close()
    assert summary.sent == 100 and summary.failed == 0 and summary.unconfirmed == 50 and summary.owed == 50
    assert "idempotency key has expired" in summary.errors[0]
    with rt.sessions() as s:
        assert s.scalar(select(Batch.status).where(Batch.batch_no == 1)) == BatchStatus.UNCONFIRMED
        assert s.scalar(select(Issue.status)) == IssueStatus.SENDING
    assert_exactly_once(state.copies_by_recipient(), readers[:100])


def test_rate_limiter_spaces_every_request_and_holds_off_after_429(tmp_path, db_url) -> None:
    from tests.conftest import make_runtime, write_project

    rt = make_runtime(write_project(tmp_path / "p"), db_url)
    limiter = RateLimiter(rt.engine, "test", per_second=20)
    other = RateLimiter(rt.engine, "test", per_second=20)  # a second worker shares the budget
    slots = [(limiter if i % 2 else other).reserve() for i in range(10)]
    steps = [b - a for a, b in zip(slots, slots[1:])]
    assert all(abs(step - limiter.interval) < 0.02 for step in steps), steps
    assert limiter.interval >= 1 / 20
    limiter.hold_off(3.0)
    assert limiter.reserve() - time.time() >= 2.5
    rt.close()


def test_progress_logs_a_line_without_a_terminal(fake, tmp_path, db_url) -> None:
    _, url = fake
    rt = make_rt(tmp_path, url, db_url)
    add_readers(rt, 200)
    prepare(rt, WEEK, manual=True, now=NOW)
    with rt.sessions.begin() as s:  # the first batch is done when the first report comes
        s.execute(update(Delivery).where(Delivery.batch_no == 0).values(status=DeliveryStatus.SENT))
    console = Console(record=True, width=200)
    progress = SendProgress(rt, "2026-W47", console=console, log_console=console, interactive=False, every=0)
    progress(SendSummary(sent=100))
    progress(SendSummary(sent=190, failed=10))
    text = console.export_text()
    assert "sending 2026-W47: 100/200 done (100 sent, 0 failed)" in text
    assert "sending 2026-W47: 200/200 done (190 sent, 10 failed)" in text and "emails/s" in text
    terminal = Console(record=True, width=160, force_terminal=True)
    bar = SendProgress(rt, "2026-W47", console=terminal, log_console=terminal)
    assert bar.interactive
    bar(SendSummary(sent=100))
    bar(SendSummary(sent=190, failed=10))
    bar.close()
    shown = terminal.export_text()
    assert "sending 2026-W47" in shown and "200/200" in shown and "sent 190" in shown and "failed 10" in shown


def test_counts_by_status_after_a_send(fake, tmp_path, db_url) -> None:
    state, url = fake
    rt = make_rt(tmp_path, url, db_url)
    add_readers(rt, 10)
    send(rt)
    assert delivery_counts(rt) == {DeliveryStatus.SENT: 10}
    assert active_emails(rt) == set(state.copies_by_recipient())


def test_resend_payload_json_is_exactly_the_personalized_email(tmp_path) -> None:
    """The pre-escaped JSON path (digest.delivery.jsonfast) must encode the very same HTML and text."""
    import json as jsonmod

    from digest.config import load_config
    from digest.delivery.jsonfast import PreEscaped, dumps
    from digest.delivery.messages import IssueMessages, Recipient
    from digest.links import Tokens
    from digest.providers.resend.transport import email_params
    from digest.render.personalize import marker, new_nonce
    from tests.conftest import write_project

    nonce = new_nonce()
    html = (
        f'<p class="x">{marker(nonce, "greeting")} “quotes” é 😀 \\ </p>\n'
        f'<a href="{marker(nonce, "unsubscribe_url")}">u</a>{marker(nonce, "name")}'
    )
    text = f'{marker(nonce, "greeting")}\n\t"tab" {marker(nonce, "unsubscribe_url")} ü'
    issue = Issue(id=7, week="2026-W47")
    main = Edition(issue_id=7, key="weekly/all", html=html, text=text, placeholder_nonce=nonce, subject="Subject “1”")
    settings = load_config(write_project(tmp_path / "p")).settings
    msgs = IssueMessages(
        settings, Tokens("secret-0123456789"), issue, main, installation="test-install", json_bodies=True
    )
    mail = msgs.build(Recipient(1, 5, "ada@example.com", 'Ada "<b>&</b>" Lövelace'))
    assert isinstance(mail.html, PreEscaped) and isinstance(mail.text, PreEscaped)
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in mail.html and "Hi Ada," in mail.text
    params = [email_params(mail)]
    body = dumps(params)
    assert jsonmod.loads(body) == jsonmod.loads(jsonmod.dumps(params))
    body.encode("ascii")  # ASCII only: encoding it is a copy
    again = msgs.build(Recipient(1, 5, "ada@example.com", 'Ada "<b>&</b>" Lövelace'))
    assert dumps([email_params(again)]) == body  # a retried batch is byte for byte the same request
