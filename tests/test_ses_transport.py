"""Amazon SES v2 as a transport, against moto's server over real HTTP, on SQLite and PostgreSQL.

SES keeps no idempotency keys, so its declared guarantee is: every accepted message is
recorded (with SES's MessageId) before the next call; a call whose answer was lost, or
a process killed mid-call, leaves that reader `unconfirmed` for the operator and is
never sent again blindly; a call SES refused outright is sent again. Exactly-once is
checked against the messages moto recorded.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from digest.cycle.send import send_week
from digest.delivery.transports import make_transport
from digest.providers.ses.transport import SesTransport
from digest.storage.models import Batch, BatchStatus, Delivery, DeliveryStatus, SendAttempt
from digest.weeks import utcnow
from tests.conftest import make_runtime
from tests.support_delivery import (
    SECRET,
    add_readers,
    assert_exactly_once,
    digest_cli,
    digest_popen,
    seed_comparisons,
    seed_for_cli,
    this_week,
)
from tests.support_ses import AWS_ENV, Moto, moto_server, proxy_to, ses_project

pytestmark = pytest.mark.slow
READERS_AT_SCALE = 2_000


@pytest.fixture(scope="module")
def moto_module() -> Iterator[Moto]:
    with moto_server() as moto:
        yield moto


@pytest.fixture
def moto(moto_module: Moto) -> Moto:
    moto_module.reset()
    return moto_module


def _runtime(tmp_path, db_url, url, **section):  # type: ignore[no-untyped-def]
    rt = make_runtime(ses_project(tmp_path / "project", **section), db_url, AWS_ENDPOINT_URL=url, **AWS_ENV)
    seed_comparisons(rt, published=utcnow() - timedelta(days=1))
    return rt


def _unconfirmed_emails(rt) -> set[str]:  # type: ignore[no-untyped-def]
    with rt.sessions() as s:
        return set(
            s.scalars(
                select(Delivery.email)
                .join(Batch, (Batch.issue_id == Delivery.issue_id) & (Batch.batch_no == Delivery.batch_no))
                .where(Batch.status == BatchStatus.UNCONFIRMED, Delivery.status == DeliveryStatus.QUEUED)
            )
        )


def test_ses_sends_raw_messages_with_our_headers_and_stores_each_message_id(moto, tmp_path, db_url) -> None:
    rt = _runtime(tmp_path, db_url, moto.url, configuration_set="digest-events")
    assert isinstance(make_transport(rt.config), SesTransport)
    readers = add_readers(rt, 12)
    result = send_week(rt, this_week(rt), manual=True)
    assert result.summary is not None and result.summary.sent == 12
    assert_exactly_once(moto.copies(), readers)
    for msg in moto.messages():  # Raw content: SES sends our headers as they are (RFC 8058)
        assert str(msg["List-Unsubscribe"]).startswith("<http") and "mailto:" in str(msg["List-Unsubscribe"])
        assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    with rt.sessions() as s:
        assert set(s.scalars(select(Delivery.provider_id))) == moto.ids()  # h8's events match on these
        assert s.scalar(select(func.count()).select_from(Batch)) == 12  # one message per call
    rt.close()


def test_a_lost_answer_leaves_that_reader_unconfirmed_and_is_never_resent(moto, tmp_path, db_url) -> None:
    with proxy_to(moto, lose_answer={3}) as (url, proxy):
        rt = _runtime(tmp_path, db_url, url, concurrency=1, timeout_seconds=5.0)
        readers = add_readers(rt, 6)
        first = send_week(rt, this_week(rt), manual=True)
        assert first.summary is not None
        assert (first.summary.sent, first.summary.unconfirmed) == (5, 1)
        assert sum(moto.copies().values()) == 6  # SES accepted the third message too
        unconfirmed = _unconfirmed_emails(rt)
        assert unconfirmed == {readers[2]}
        again = send_week(rt, this_week(rt), manual=True)  # a resume does not resend it
        assert again.summary is None or again.summary.sent == 0
        assert_exactly_once(moto.copies(), readers)
        assert _unconfirmed_emails(rt) == unconfirmed
        with rt.sessions() as s:
            outcomes = list(s.scalars(select(SendAttempt.outcome).order_by(SendAttempt.id)))
        assert outcomes.count("ambiguous") == 1
        cfg_env = _cli_env(rt.config.database_url, url)
        stats = digest_cli(rt.config.path, cfg_env, "stats", "--json")
        assert stats.returncode == 0, stats.stdout + stats.stderr
        assert json.loads(stats.stdout)["unconfirmed"] == 1  # the operator sees it
        shown = digest_cli(rt.config.path, cfg_env, "stats")
        assert "unconfirmed (may have been delivered)" in shown.stdout, shown.stdout
        listed = digest_cli(rt.config.path, cfg_env, "send", "--week", this_week(rt).key, "--retry-failed")
        assert "1 reader(s) may or may not have received this issue" in listed.stdout, listed.stdout
        assert_exactly_once(moto.copies(), readers)  # listing it sent nothing
    rt.close()


def test_a_call_ses_refused_is_sent_again_once(moto, tmp_path, db_url) -> None:
    with proxy_to(moto, fail={2}) as (url, proxy):
        rt = _runtime(tmp_path, db_url, url, concurrency=1)
        readers = add_readers(rt, 4)
        result = send_week(rt, this_week(rt), manual=True)
        assert result.summary is not None and (result.summary.sent, result.summary.unconfirmed) == (4, 0)
        assert proxy.calls == 5
    assert_exactly_once(moto.copies(), readers)
    rt.close()


def _cli_env(db_url: str, url: str) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_TRANSPORT": "ses",
        "AWS_ENDPOINT_URL": url,
        **AWS_ENV,
    }


def test_kill_9_mid_send_then_resume_mails_2000_readers_at_most_once(moto, tmp_path, db_url) -> None:
    cfg = ses_project(tmp_path / "project", concurrency=4)
    env = _cli_env(db_url, moto.url)
    rt = make_runtime(cfg, db_url, AWS_ENDPOINT_URL=moto.url, **AWS_ENV)
    readers = seed_for_cli(rt, READERS_AT_SCALE)
    proc = digest_popen(cfg, env, "send")
    deadline = time.monotonic() + 300
    while len(moto.backend.sent_messages) < 400 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the send finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.communicate()
    at_kill = sum(moto.copies().values())

    resumed = digest_cli(cfg, env, "send", timeout=600)
    copies = moto.copies()
    unconfirmed = _unconfirmed_emails(rt)
    print(
        f"killed after {at_kill} accepted; {sum(copies.values())} after the resume; "
        f"{len(unconfirmed)} unconfirmed ({len(unconfirmed - set(copies))} of them never reached SES)"
    )
    # Declared guarantee: nobody twice; at most the calls in flight (concurrency) left unconfirmed.
    assert max(copies.values()) == 1
    assert len(unconfirmed) <= 4
    assert set(copies) | unconfirmed == set(readers)
    assert_exactly_once(copies, set(readers) - (unconfirmed - set(copies)))
    with rt.sessions() as s:
        sent = dict(
            s.execute(select(Delivery.email, Delivery.provider_id).where(Delivery.status == DeliveryStatus.SENT)).all()
        )
    assert set(sent) == set(readers) - unconfirmed and set(sent.values()) <= moto.ids()
    if unconfirmed:
        assert resumed.returncode == 1 and "may or may not have received it" in resumed.stdout, resumed.stdout
        listed = digest_cli(cfg, env, "send", "--week", this_week(rt).key, "--retry-failed")
        assert f"{len(unconfirmed)} reader(s) may or may not have received this issue" in listed.stdout, listed.stdout
    else:
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert max(moto.copies().values()) == 1  # listing them sent nothing
    rt.close()


def test_confirmation_mails_go_to_ses_one_per_call_within_its_rate(moto, tmp_path, db_url) -> None:
    from digest.delivery.mail_queue import drain, queue_mail
    from subscribers.api import add_subscriber

    rt = _runtime(tmp_path, db_url, moto.url)
    with rt.sessions.begin() as s:
        for i in range(3):
            sub = add_subscriber(s, f"new{i}@example.com").subscriber
            queue_mail(s, "confirm", sub.id)
    transport = make_transport(rt.config)
    sizes: list[int] = []
    send_batch = transport.send_batch
    transport.send_batch = lambda emails, *a, **k: sizes.append(len(emails)) or send_batch(emails, *a, **k)  # type: ignore[method-assign]
    result = drain(rt, transport)
    assert result.sent == 3
    assert sizes == [1, 1, 1]  # each call takes one slot of the shared send rate
    assert sorted(moto.copies()) == [f"new{i}@example.com" for i in range(3)]
    rt.close()
