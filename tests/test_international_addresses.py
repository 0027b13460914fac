"""International addresses never hurt anyone else (issue 10, item 4): IDN domains are stored in
their ASCII form; a local part that needs SMTPUTF8, sent to a server that does not offer it, fails
alone with a clear, permanent reason, and the rest of the batch and of the confirmation queue go out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select

from digest.cycle.send import send_week
from digest.delivery.mail_queue import drain, queue_mail
from digest.storage.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    MailStatus,
    OutgoingMail,
    Subscriber,
    SubscriberStatus,
)
from digest.weeks import utcnow
from subscribers.addresses import normalize_email
from tests.support_delivery import add_readers, assert_exactly_once
from tests.support_serve import free_port
from tests.test_smtp import NOW, WEEK, Mailbox, smtp_runtime

UTF8_LOCAL = "josé@example.com"


def test_an_idn_domain_is_stored_in_its_ascii_form() -> None:
    assert normalize_email("Ana@Bücher.Example") == "ana@xn--bcher-kva.example"
    assert normalize_email("ana@xn--bcher-kva.example") == "ana@xn--bcher-kva.example"
    assert normalize_email("zoë@bücher.example") == "zoë@xn--bcher-kva.example"  # the local part stays


@pytest.fixture
def plain_server() -> Iterator[tuple[Mailbox, int]]:
    """A server that does not offer SMTPUTF8 (aiosmtpd's default), no TLS, no login."""
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    ctl.start()
    yield box, port
    ctl.stop()


def _add(rt, email: str, status: str) -> int:  # type: ignore[no-untyped-def]
    with rt.sessions.begin() as s:
        return s.execute(
            insert(Subscriber)
            .values(
                email=email,
                name="José",
                status=status,
                created_at=utcnow(),
                confirmed_at=utcnow() if status == SubscriberStatus.ACTIVE else None,
            )
            .returning(Subscriber.id)
        ).scalar_one()


def test_an_smtputf8_address_fails_alone_in_an_issue_batch(plain_server, tmp_path, db_url) -> None:
    box, port = plain_server
    rt = smtp_runtime(tmp_path, db_url, port, "none", username="")
    readers = add_readers(rt, 3)
    _add(rt, UTF8_LOCAL, SubscriberStatus.ACTIVE)
    readers += add_readers(rt, 40, start=3)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 43 and result.summary.failed == 1
    assert_exactly_once(box.copies(), readers)
    with rt.sessions() as s:
        status, error = s.execute(select(Delivery.status, Delivery.error).where(Delivery.email == UTF8_LOCAL)).one()
        assert set(s.scalars(select(Delivery.status).where(Delivery.email != UTF8_LOCAL))) == {DeliveryStatus.SENT}
        assert s.scalar(select(Issue.status)) == IssueStatus.SENT
    assert status == DeliveryStatus.FAILED and "SMTPUTF8" in error and "not sent yet" not in error
    rt.close()


def test_an_smtputf8_address_does_not_hold_up_the_confirmation_queue(plain_server, tmp_path, sqlite_url) -> None:
    box, port = plain_server
    rt = smtp_runtime(tmp_path, sqlite_url, port, "none", username="")
    others = [f"new{i}@example.com" for i in range(4)]
    ids = [_add(rt, others[0], SubscriberStatus.PENDING), _add(rt, UTF8_LOCAL, SubscriberStatus.PENDING)]
    ids += [_add(rt, address, SubscriberStatus.PENDING) for address in others[1:]]
    with rt.sessions.begin() as s:
        for sid in ids:
            queue_mail(s, "confirm", sid)
    result = drain(rt)
    assert result.sent == 4 and result.failed == 1 and result.deferred == 0
    assert_exactly_once(box.copies(), others)
    with rt.sessions() as s:
        rows = {
            sub: (status, error)
            for sub, status, error in s.execute(
                select(OutgoingMail.subscriber_id, OutgoingMail.status, OutgoingMail.error)
            )
        }
    assert {rows[sid][0] for sid in ids if sid != ids[1]} == {MailStatus.SENT}
    assert rows[ids[1]][0] == MailStatus.FAILED and "SMTPUTF8" in rows[ids[1]][1]
    rt.close()


def test_confirmations_not_sent_yet_when_the_server_balks_are_retried_not_failed(
    plain_server, tmp_path, sqlite_url
) -> None:
    box, port = plain_server
    box.busy_at = 1  # the second message gets 451: the rest of that transport call is "not sent yet"
    rt = smtp_runtime(tmp_path, sqlite_url, port, "none", username="")
    people = [f"later{i}@example.com" for i in range(4)]
    ids = [_add(rt, address, SubscriberStatus.PENDING) for address in people]
    with rt.sessions.begin() as s:
        for sid in ids:
            queue_mail(s, "confirm", sid)
    first = drain(rt)
    assert first.sent == 1 and first.failed == 0 and first.deferred == 3
    with rt.sessions.begin() as s:  # their back-off is over
        s.execute(OutgoingMail.__table__.update().values(claimed_until=None))
    second = drain(rt)
    assert second.sent == 3 and second.failed == 0
    assert_exactly_once(box.copies(), people)
    rt.close()
