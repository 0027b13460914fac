"""A bounce or complaint names a message we sent; who it concerns comes from our row for that message.

The audit's attack, end to end: a stranger signs up a look-alike address whose hash shares the old
VERP tie (24 bits) with a reader's, reads the signed VERP address of their own confirmation mail,
and sends it a DSN (or an ARF complaint) naming the reader. Our row for that message says the
confirmation went to the stranger, so the report changes nothing. A poison report (a NUL in a
field, 300,000 recipient blocks) is read, logged and skipped: the genuine report after it acts.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError, InternalError

from digest.config import load_config
from digest.cycle.send import send_week
from digest.delivery.events import DeliveryEvent, EventKind
from digest.delivery.mail_queue import drain, queue_mail
from digest.delivery.verp import from_config
from digest.links import Tokens, email_hash
from digest.runtime import Runtime
from digest.storage.models import Delivery, OutgoingMail, SubscriberStatus, WebhookReceipt
from subscribers import bounce_mail
from subscribers.api import add_subscriber, is_suppressed
from subscribers.bounce_mail import process_bounce_mail
from subscribers.delivery_events import apply_events
from subscribers.erasure import forget
from tests.conftest import apply_overrides, make_runtime
from tests.support_imap import Imap
from tests.support_subscribers import counts, seed_comparisons, subscriber
from tests.test_bounce_mail import NOW, WEEK, _append, bounce_project, cli, imap, report, smtp_server, verp_of  # noqa: F401 - fixtures
from tests.test_smtp import certificate  # noqa: F401 - a fixture

VICTIM = "victim@recipient.example"
# Found by brute force in 5 s on one core: its address hash starts with the victim's 24 bits.
LOOKALIKE = "mallory3937936@attacker.example"


@pytest.fixture
def attacked(smtp_server, tmp_path, db_url):  # noqa: F811
    """The victim got this week's issue over SMTP; the stranger signed up and got a confirmation."""
    box, port = smtp_server
    rt = make_runtime(bounce_project(tmp_path / "project", port), db_url)
    seed_comparisons(rt, NOW - timedelta(days=1))
    with rt.sessions.begin() as s:
        add_subscriber(s, VICTIM, confirmed=True)
    send_week(rt, WEEK, manual=True, now=NOW)
    with rt.sessions.begin() as s:
        queue_mail(s, "confirm", add_subscriber(s, LOOKALIKE).subscriber.id)
    assert drain(rt).sent == 1
    yield rt, box
    rt.close()


def test_the_lookalike_really_shares_the_old_24_bit_tie() -> None:
    assert email_hash(LOOKALIKE)[:6] == email_hash(VICTIM)[:6]


def test_a_forged_dsn_or_complaint_to_ones_own_verp_address_leaves_the_victim_alone(attacked, tmp_path) -> None:
    rt, box = attacked
    own = verp_of(box, LOOKALIKE)
    assert own.startswith("bounces+m")
    files = []
    for sample in ("postfix_user_unknown.eml", "gmail_no_such_account.eml", "yahoo_arf_complaint.eml"):
        path = tmp_path / sample
        path.write_bytes(report(sample, own, VICTIM))
        files.append(str(path))
    before = counts(rt)
    r = cli(rt, "bounce-mail", *files)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stdout + r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 3 and all("another recipient" in line for line in lines), lines
    assert all(line.endswith("nothing changed") for line in lines), lines
    # Only the receipts of the reports were kept (a replay of one is then a duplicate).
    assert {**counts(rt), "webhook_receipts": 0} == {**before, "webhook_receipts": 0}
    assert subscriber(rt, VICTIM).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    assert subscriber(rt, LOOKALIKE).status == SubscriberStatus.PENDING  # type: ignore[union-attr]
    with rt.sessions() as s:
        assert not is_suppressed(s, VICTIM)
    # The victim's own issue bouncing still suppresses them.
    genuine = process_bounce_mail(rt, report("gmail_no_such_account.eml", verp_of(box, VICTIM), VICTIM))
    assert genuine.changed, genuine
    assert subscriber(rt, VICTIM).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]


def test_a_report_naming_nobody_acts_on_its_messages_own_recipient(attacked) -> None:
    """A complaint with the recipient redacted (AOL) names no one: the row names the person."""
    rt, box = attacked
    outcome = process_bounce_mail(rt, report("aol_arf_complaint.eml", verp_of(box, LOOKALIKE), LOOKALIKE))
    assert outcome.changed, outcome
    assert subscriber(rt, LOOKALIKE).status != SubscriberStatus.PENDING  # type: ignore[union-attr]
    assert subscriber(rt, VICTIM).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_new_verp_tokens_carry_no_tie_to_the_address(attacked) -> None:
    rt, box = attacked
    verp = from_config(rt.config)
    assert verp is not None
    token = verp_of(box, LOOKALIKE).partition("+")[2].partition("@")[0]
    assert email_hash(LOOKALIKE)[:6] not in token and token.count(".") == 1


def test_a_reused_row_id_does_not_carry_a_token_over_to_its_new_recipient(attacked) -> None:
    """The stranger is erased, the victim's confirmation gets the row id theirs had (SQLite hands out a
    deleted row's id again; a restored backup does too): their VERP address still names nobody else."""
    rt, box = attacked
    own = verp_of(box, LOOKALIKE)
    with rt.sessions() as s:
        mail_id = s.scalar(select(OutgoingMail.id).where(OutgoingMail.subscriber_id == subscriber(rt, LOOKALIKE).id))
    forget(rt, LOOKALIKE)
    with rt.sessions.begin() as s:
        victim = add_subscriber(s, "newcomer@recipient.example").subscriber
        s.add(
            OutgoingMail(
                id=mail_id, kind="confirm", subscriber_id=victim.id, status="sent", provider_id=f"smtp:m{mail_id}"
            )
        )
    for raw in (
        report("aol_arf_complaint.eml", own, "newcomer@recipient.example"),  # names nobody
        report("postfix_user_unknown.eml", own, "newcomer@recipient.example"),
    ):
        outcome = process_bounce_mail(rt, raw)
        assert not outcome.changed and "not the bounce address" in outcome.message, outcome
    assert subscriber(rt, "newcomer@recipient.example").status == SubscriberStatus.PENDING  # type: ignore[union-attr]


def test_a_legacy_token_counts_for_an_issues_copy_only(attacked) -> None:
    """Tokens made before the proof bind by 24 bits of a plain hash: taken for a delivery (its row is never
    deleted), not for a confirmation (a look-alike address matches them, and its row id may be reused)."""
    rt, box = attacked
    verp = from_config(rt.config)
    assert verp is not None
    legacy = Tokens(rt.secret_key)._bounce  # the old signer, as mail sent before the proof carries it
    with rt.sessions() as s:
        mail_id = s.scalar(select(OutgoingMail.id).where(OutgoingMail.subscriber_id == subscriber(rt, LOOKALIKE).id))
        delivery_id = s.scalar(select(Delivery.id).where(Delivery.email == VICTIM))
    tie = email_hash(LOOKALIKE)[:6]  # the victim's tie too
    to_mail = f"bounces+{legacy.sign(f'm{mail_id}.{tie}').decode()}@example.com"
    outcome = process_bounce_mail(rt, report("postfix_user_unknown.eml", to_mail, LOOKALIKE))
    assert not outcome.changed and "not the bounce address" in outcome.message, outcome
    to_delivery = f"bounces+{legacy.sign(f'd{delivery_id}.{email_hash(VICTIM)[:6]}').decode()}@example.com"
    assert process_bounce_mail(rt, report("gmail_no_such_account.eml", to_delivery, VICTIM)).changed
    assert subscriber(rt, VICTIM).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]


def test_a_provider_event_names_a_message_and_our_row_names_the_person(attacked, caplog) -> None:
    """Resend, SES: an event for an id we never stored, or naming another address than our row's, does nothing."""
    rt, _ = attacked
    with rt.sessions() as s:
        mail = s.scalar(select(OutgoingMail).where(OutgoingMail.subscriber_id == subscriber(rt, LOOKALIKE).id))
        assert mail is not None and mail.provider_id == f"smtp:m{mail.id}"  # stored when it was sent

    def bounce(message_id: str, recipient: str, event_id: str) -> str:
        return apply_events(
            rt,
            [
                DeliveryEvent(
                    kind=EventKind.HARD_BOUNCE,
                    provider="resend",
                    provider_event_id=event_id,
                    provider_type="email.bounced",
                    message_id=message_id,
                    recipient=recipient,
                    occurred_at=None,
                )
            ],
        )

    with caplog.at_level(logging.WARNING, logger="subscribers.events"):
        assert bounce("re_never_sent_by_us", VICTIM, "e1").startswith("ignored")
        assert bounce(mail.provider_id, VICTIM, "e2").startswith("ignored: the report names another recipient")
    assert any("another recipient" in r.getMessage() for r in caplog.records)
    assert subscriber(rt, VICTIM).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    assert bounce(mail.provider_id, LOOKALIKE.upper(), "e3") == "suppressed (hard_bounce)"
    assert subscriber(rt, LOOKALIKE).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]


# -- poison reports ---------------------------------------------------------------------------


def _use_mailbox(rt: Runtime, server: Imap) -> None:
    cfg = rt.config.path
    cfg.write_text(
        apply_overrides(
            cfg.read_text(),
            {
                "bounces": {
                    "imap_host": "127.0.0.1",
                    "imap_port": server.port,
                    "imap_security": "none",
                    "imap_user": server.user,
                    "imap_done_folder": f"Processed-{uuid.uuid4().hex[:8]}",
                }
            },
        )
    )
    rt.config = load_config(cfg, env={**rt.config.env, "DIGEST_IMAP_PASSWORD": server.password})


def _poison(verp: str, to: str) -> bytes:
    return report("postfix_user_unknown.eml", verp, to).replace(b"Status: 5.1.1", b"Status: 5.1.1\x00\x01\x1b[31m")


def test_control_characters_in_a_report_are_cleaned_before_storage(attacked) -> None:
    rt, box = attacked
    outcome = process_bounce_mail(rt, _poison(verp_of(box, VICTIM), VICTIM))
    assert outcome.changed, outcome
    assert subscriber(rt, VICTIM).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    with rt.sessions() as s:
        stored = s.scalars(select(WebhookReceipt.event_type)).all()
    assert stored and not any("\x00" in t or "\x1b" in t for t in stored)


def test_the_pipe_reads_past_a_poison_report_and_exits_0(attacked, tmp_path) -> None:
    rt, box = attacked
    bad, good = tmp_path / "bad.eml", tmp_path / "good.eml"
    bad.write_bytes(_poison(verp_of(box, LOOKALIKE), LOOKALIKE))
    good.write_bytes(report("gmail_no_such_account.eml", verp_of(box, VICTIM), VICTIM))
    r = cli(rt, "bounce-mail", str(bad), str(good))
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stdout + r.stderr
    assert len(r.stdout.decode().splitlines()) == 2, r.stdout
    assert subscriber(rt, VICTIM).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]


def test_a_report_that_still_fails_is_logged_marked_read_and_skipped(imap, attacked, monkeypatch, caplog) -> None:  # noqa: F811
    """Whatever still fails in one report (here: the database refuses it) never stops the ones after it."""
    rt, box = attacked
    _use_mailbox(rt, imap)
    _append(
        imap,
        report("postfix_user_unknown.eml", verp_of(box, LOOKALIKE), LOOKALIKE),
        report("office365_recipient_not_found.eml", verp_of(box, VICTIM), VICTIM),
    )
    real, calls = bounce_mail.apply_events, []

    def refuse_the_first(rt_, events):  # type: ignore[no-untyped-def]
        calls.append(events[0].provider_event_id)
        if len(calls) == 1:
            raise DataError("INSERT ...", {}, ValueError("the database refused a value"))
        return real(rt_, events)

    monkeypatch.setattr(bounce_mail, "apply_events", refuse_the_first)
    with caplog.at_level(logging.ERROR, logger="subscribers.bounces"):
        result = bounce_mail.poll_mailbox(rt)
    assert result.read == 2 and result.changed == 1
    assert any(calls[0] in r.getMessage() and "could not be applied" in r.getMessage() for r in caplog.records)
    assert subscriber(rt, VICTIM).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    assert subscriber(rt, LOOKALIKE).status == SubscriberStatus.PENDING  # type: ignore[union-attr]
    assert bounce_mail.poll_mailbox(rt).read == 0  # the failed one was marked read too


def test_a_database_error_is_not_taken_for_a_poison_report(imap, attacked, monkeypatch) -> None:  # noqa: F811
    """A read-only or not yet migrated database must not make the poll mark every report read and lose it."""
    rt, box = attacked
    _use_mailbox(rt, imap)
    _append(imap, report("office365_recipient_not_found.eml", verp_of(box, VICTIM), VICTIM))
    real = bounce_mail.apply_events

    def read_only(rt_, events):  # type: ignore[no-untyped-def]
        raise InternalError("UPDATE ...", {}, Exception("cannot execute UPDATE in a read-only transaction"))

    monkeypatch.setattr(bounce_mail, "apply_events", read_only)
    with pytest.raises(InternalError):
        bounce_mail.poll_mailbox(rt)
    monkeypatch.setattr(bounce_mail, "apply_events", real)
    assert bounce_mail.poll_mailbox(rt).read == 1  # still there, read once the database takes it
    assert subscriber(rt, VICTIM).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]


def test_the_pipe_asks_the_mail_system_to_retry_while_the_database_is_down(attacked, tmp_path) -> None:
    rt, box = attacked
    path = tmp_path / "bounce.eml"
    path.write_bytes(report("gmail_no_such_account.eml", verp_of(box, VICTIM), VICTIM))
    r = cli(rt, "bounce-mail", str(path), DIGEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert r.returncode == 75 and b"Traceback" not in r.stderr, r.stdout + r.stderr
    assert b"tries again later" in r.stderr


def test_a_report_with_300000_recipient_blocks_is_not_read(attacked) -> None:
    """The audit's 18 MB DSN, and blocks that name no recipient or end lines with a bare CR: all refused
    before parsing (parsing the 18 MB one took 460 MB), the genuine one-block report still read."""
    rt, box = attacked
    raw = report("postfix_user_unknown.eml", verp_of(box, VICTIM), VICTIM)
    head, sep, tail = raw.partition(b"Final-Recipient")
    block = b"Final-Recipient: rfc822;a@b.c\nAction: failed\nStatus: 5.1.1\n\n"
    huge = head + block * 300_000 + sep + tail
    assert 18_000_000 < len(huge) < 20_000_000
    for crafted, why in (
        (huge, "larger than"),
        (head + b"Action: failed\nStatus: 5.1.1\n\n" * 30_000 + sep + tail, "recipient blocks"),
        (head + b"Action: failed\rStatus: 5.1.1\r\r" * 30_000 + sep + tail, "recipient blocks"),
    ):
        outcome = process_bounce_mail(rt, crafted)
        assert not outcome.changed and why in outcome.message, outcome
    assert subscriber(rt, VICTIM).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    assert process_bounce_mail(rt, raw).changed


def test_one_poll_reads_past_a_poison_report_to_the_genuine_bounce(imap, attacked) -> None:  # noqa: F811
    rt, box = attacked
    _append(
        imap,
        _poison(verp_of(box, LOOKALIKE), LOOKALIKE),
        report("office365_recipient_not_found.eml", verp_of(box, VICTIM), VICTIM),
    )
    _use_mailbox(rt, imap)
    r = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert r.returncode == 0, r.stdout + r.stderr
    assert subscriber(rt, VICTIM).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    again = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert "0 reports read" in again.stdout.decode(), again.stdout
