"""Bounces and complaints for SMTP senders: each message's envelope sender is a signed VERP
address, and `digest subscribers bounce-mail` / `bounce-poll` read the reports sent back to it.

The issue really goes out over SMTP (aiosmtpd); the reports are realistic samples of several
MTAs (tests/bounce_samples/*.eml) addressed to the VERP address each reader's copy had.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from digest.config import load_config
from digest.cycle.send import send_week
from digest.delivery.mail_queue import drain, queue_mail
from digest.delivery.verp import Verp, from_config
from digest.errors import ConfigError
from digest.links import Tokens
from digest.runtime import Runtime
from digest.storage.models import Delivery, Event, SubscriberStatus, Suppression
from digest.weeks import Week, utcnow
from subscribers.api import add_subscriber
from subscribers.bounce_mail import process_bounce_mail
from tests.conftest import ROOT, apply_overrides, make_runtime, write_project
from tests.support_imap import Imap, dovecot
from tests.support_serve import free_port
from tests.support_subscribers import counts, seed_comparisons, subscriber
from tests.test_smtp import Mailbox, certificate  # noqa: F401 - a fixture (openssl test certificate)

SAMPLES = Path(__file__).parent / "bounce_samples"
NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
WEEK = Week.parse("2026-W47")
BOUNCES = "bounces@example.com"

# sample -> what it does to the reader whose copy it reports
EFFECT = {
    "postfix_user_unknown.eml": SubscriberStatus.BOUNCED,
    "sendmail_user_unknown.eml": SubscriberStatus.BOUNCED,
    "gmail_no_such_account.eml": SubscriberStatus.BOUNCED,
    "office365_recipient_not_found.eml": SubscriberStatus.BOUNCED,
    "exim_plain_text.eml": SubscriberStatus.BOUNCED,  # not RFC 3464: flufl.bounce's Exim detector
    "qmail_plain_text.eml": SubscriberStatus.BOUNCED,  # not RFC 3464: flufl.bounce's qmail detector
    "yahoo_arf_complaint.eml": SubscriberStatus.COMPLAINED,
    "aol_arf_complaint.eml": SubscriberStatus.COMPLAINED,  # recipient redacted: the VERP token alone names the reader
    "exchange_mailbox_full.eml": SubscriberStatus.ACTIVE,  # 5.2.2: a soft bounce, counted
    "postfix_gave_up_mailbox_full.eml": SubscriberStatus.ACTIVE,  # 4.2.2 after retries: a soft bounce, counted
    "postfix_delayed_warning.eml": SubscriberStatus.ACTIVE,  # a warning, not a failure
    "vacation_reply.eml": SubscriberStatus.ACTIVE,  # an auto-reply to the Return-Path
}
READERS = {name: f"{name.split('.')[0].replace('_', '.')}@recipient.example" for name in EFFECT}


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


def bounce_project(root: Path, port: int = 25, kind: str = "smtp", **bounces: object) -> Path:
    cfg = write_project(root)
    overrides: dict[str, dict[str, object]] = {
        "transport": {"kind": kind},
        "transport.smtp": {"host": "127.0.0.1", "port": port, "security": "none", "bounce_address": BOUNCES},
    }
    if bounces:
        overrides["bounces"] = bounces
    cfg.write_text(apply_overrides(cfg.read_text(), overrides))
    return cfg


@pytest.fixture
def sent(smtp_server, tmp_path, db_url) -> Iterator[tuple[Runtime, Mailbox]]:
    """Every sample's reader got this week's issue over SMTP."""
    box, port = smtp_server
    rt = make_runtime(bounce_project(tmp_path / "project", port), db_url)
    seed_comparisons(rt, NOW - timedelta(days=1))
    with rt.sessions.begin() as s:
        for address in [*READERS.values(), "bystander@recipient.example"]:
            add_subscriber(s, address, confirmed=True)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == len(READERS) + 1
    yield rt, box
    rt.close()


def verp_of(box: Mailbox, to: str) -> str:
    [sender] = [mail_from for mail_from, rcpts, _ in box.messages if rcpts == [to]]
    return sender


def report(sample: str, verp: str, to: str, **extra: str) -> bytes:
    text = (SAMPLES / sample).read_text()
    for key, value in {"VERP": verp, "RCPT": to, "DATE": format_datetime(datetime.now(UTC)), **extra}.items():
        text = text.replace("{{" + key + "}}", value)
    return text.encode()


def delivery_of(rt: Runtime, to: str) -> Delivery:
    with rt.sessions() as s:
        found = s.scalar(select(Delivery).where(Delivery.email == to))
        assert found is not None
        return found


def cli(rt: Runtime, *args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    environ = {
        **os.environ,
        "DIGEST_DATABASE_URL": rt.config.database_url,
        "DIGEST_SECRET_KEY": rt.secret_key,
        "PYTHONPATH": str(ROOT),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(rt.config.path), "subscribers", *args],
        capture_output=True,
        env=environ,
        input=stdin,
        timeout=120,
    )


# -- the envelope sender -----------------------------------------------------------------------


def test_mail_from_is_each_readers_own_signed_verp_address(sent) -> None:
    rt, box = sent
    verp = from_config(rt.config)
    assert verp is not None
    senders = set()
    for mail_from, [to], data in box.messages:
        local, _, domain = mail_from.rpartition("@")
        assert local.startswith("bounces+") and domain == "example.com" and len(local) <= 64
        claim = verp.read(mail_from)
        assert claim is not None and claim.key == f"d{delivery_of(rt, to).id}" and verp.belongs(claim, to)
        assert delivery_of(rt, to).provider_id == f"smtp:{claim.key}"  # what the report's event looks up
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert msg["From"].addresses[0].addr_spec == "verdicts@example.com"  # the From line stays the sender's
        senders.add(mail_from)
    assert len(senders) == len(box.messages)  # one address per recipient


def test_outbox_files_carry_the_return_path_an_smtp_send_would_have(tmp_path, sqlite_url) -> None:
    rt = make_runtime(bounce_project(tmp_path / "project", kind="outbox"), sqlite_url)
    seed_comparisons(rt, NOW - timedelta(days=1))
    with rt.sessions.begin() as s:
        add_subscriber(s, "reader@recipient.example", confirmed=True)
    send_week(rt, WEEK, manual=True, now=NOW)
    [path] = (rt.outbox_dir / WEEK.key).glob("*.eml")
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("Return-Path: <bounces+") and first.endswith("@example.com>")
    verp = from_config(rt.config)
    assert verp is not None
    claim = verp.read(first.split("<", 1)[1].rstrip(">"))
    assert claim is not None and claim.key == f"d{delivery_of(rt, 'reader@recipient.example').id}"
    rt.close()


# -- reports ------------------------------------------------------------------------------------


def test_reports_of_each_mta_style_mark_the_reader_whose_copy_they_report(sent) -> None:
    rt, box = sent
    issue_id = delivery_of(rt, READERS["postfix_user_unknown.eml"]).issue_id
    for sample, to in READERS.items():
        outcome = process_bounce_mail(rt, report(sample, verp_of(box, to), to))
        assert outcome.changed is (sample not in ("postfix_delayed_warning.eml", "vacation_reply.eml")), (
            sample,
            outcome,
        )
    for sample, to in READERS.items():
        sub = subscriber(rt, to)
        assert sub is not None and sub.status == EFFECT[sample], sample
    assert subscriber(rt, "bystander@recipient.example").status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    with rt.sessions() as s:
        events = {
            (e.kind, e.subscriber_id): e
            for e in s.scalars(select(Event).where(Event.kind.in_(["bounced", "complained", "soft_bounce"])))
        }
        reasons = dict(s.execute(select(Suppression.reason, Suppression.reason)).all())
    assert set(reasons) == {"hard_bounce", "complaint"}
    hard = subscriber(rt, READERS["gmail_no_such_account.eml"])
    assert hard is not None
    bounced = events[("bounced", hard.id)]
    assert bounced.issue_id == issue_id and bounced.detail["status"] == "5.1.1"  # attributed to the issue
    assert delivery_of(rt, hard.email).bounced_at is not None
    assert delivery_of(rt, READERS["aol_arf_complaint.eml"]).complained_at is not None
    soft = subscriber(rt, READERS["exchange_mailbox_full.eml"])
    assert soft is not None and events[("soft_bounce", soft.id)].detail["status"] == "5.2.2"


def test_a_bounced_confirmation_email_marks_its_pending_subscriber(smtp_server, tmp_path, sqlite_url) -> None:
    """Confirmation mail has no delivery row: its outgoing mail row names the person."""
    box, port = smtp_server
    rt = make_runtime(bounce_project(tmp_path / "project", port), sqlite_url)
    to, other = "typo@recipient.example", "fine@recipient.example"
    with rt.sessions.begin() as s:
        for address in (to, other):
            queue_mail(s, "confirm", add_subscriber(s, address).subscriber.id)
    assert drain(rt).sent == 2
    verp = verp_of(box, to)
    assert verp.startswith("bounces+m")
    assert process_bounce_mail(rt, report("gmail_no_such_account.eml", verp, to)).changed
    assert subscriber(rt, to).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    # Another message's token with this address in the report: our row names someone else, nothing changes.
    assert not process_bounce_mail(rt, report("postfix_user_unknown.eml", verp_of(box, other), to)).changed
    assert subscriber(rt, other).status == SubscriberStatus.PENDING  # type: ignore[union-attr]
    rt.close()


def test_soft_bounces_in_a_row_suppress_at_the_configured_limit(smtp_server, tmp_path, db_url) -> None:
    box, port = smtp_server
    rt = make_runtime(bounce_project(tmp_path / "project", port, soft_bounce_limit=2), db_url)
    seed_comparisons(rt, NOW - timedelta(days=1))
    to = "full@recipient.example"
    with rt.sessions.begin() as s:
        add_subscriber(s, to, confirmed=True)
    send_week(rt, WEEK, manual=True, now=NOW)
    first = report(
        "postfix_gave_up_mailbox_full.eml",
        verp_of(box, to),
        to,
        DATE=format_datetime(datetime.now(UTC) - timedelta(minutes=10)),
    )
    assert process_bounce_mail(rt, first).message.endswith("soft bounce 1 of 2")
    again = process_bounce_mail(rt, first)  # the same report twice (pipe and mailbox): counted once
    assert not again.changed and again.message.endswith("already handled")
    assert subscriber(rt, to).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    # A sign of life since (a provider reported the mail delivered) starts the run again.
    with rt.sessions.begin() as s:
        s.execute(update(Delivery).where(Delivery.email == to).values(delivered_at=utcnow() - timedelta(minutes=5)))
    second = report("exchange_mailbox_full.eml", verp_of(box, to), to)
    assert process_bounce_mail(rt, second).message.endswith("soft bounce 1 of 2")
    third = second.replace(b"<5b3c9f1e-", b"<6c4d0a2f-")  # the next report (another Message-ID)
    assert process_bounce_mail(rt, third).message.endswith("suppressed (soft_bounces)")
    assert subscriber(rt, to).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    rt.close()


def test_forged_unsigned_or_foreign_reports_change_nothing_and_exit_0(sent, tmp_path) -> None:
    rt, box = sent
    to = READERS["postfix_user_unknown.eml"]
    real = verp_of(box, to)
    local, _, domain = real.rpartition("@")
    other_key = Verp(BOUNCES, Tokens("another-secret-key-0123456789")).address(f"d{delivery_of(rt, to).id}", to)
    forged = {
        "tampered": local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain,
        "unsigned": BOUNCES,
        "made-up": f"bounces+d{delivery_of(rt, to).id}.000000.aaaaaaaaaaaaaaaaaaaa@example.com",
        "other key": other_key,
        "other domain": f"{local}@elsewhere.example",
    }
    files = []
    for name, address in forged.items():
        path = tmp_path / f"{name.replace(' ', '-')}.eml"
        path.write_bytes(report("postfix_user_unknown.eml", address, to))
        files.append(str(path))
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"\x00\xff\xfe not a mail at all \r\n\r\n--")
    normal = tmp_path / "normal.eml"
    normal.write_bytes(b"From: someone@else.example\r\nTo: bounces@example.com\r\nSubject: hello\r\n\r\nhi\r\n")
    before = counts(rt)
    r = cli(
        rt,
        "bounce-mail",
        *files,
        str(garbage),
        str(normal),
        "-",
        stdin=report("yahoo_arf_complaint.eml", forged["tampered"], to),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"Traceback" not in r.stderr
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(files) + 3 and all(line.endswith("nothing changed") for line in lines), lines
    assert counts(rt) == before
    assert subscriber(rt, to).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_pipe_alias_reads_stdin_and_the_envelope_recipient_postfix_passes(sent) -> None:
    rt, box = sent
    to = READERS["sendmail_user_unknown.eml"]
    # A report whose headers name only the plain address (rewritten on the way): the envelope names the message.
    raw = report("sendmail_user_unknown.eml", BOUNCES, to)
    r = cli(rt, "bounce-mail", "-", stdin=raw, ORIGINAL_RECIPIENT=verp_of(box, to))
    assert r.returncode == 0 and "hard bounce (5.1.1)" in r.stdout.decode(), r.stdout + r.stderr
    assert subscriber(rt, to).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    missing = cli(rt, "bounce-mail", "/nonexistent/report.eml")
    assert missing.returncode == 2 and b"cannot be read" in missing.stderr + missing.stdout
    assert b"Traceback" not in missing.stderr


# -- the mailbox --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imap(certificate) -> Iterator[Imap]:  # type: ignore[no-untyped-def]  # noqa: F811
    with dovecot(certificate) as server:
        yield server


def _append(server: Imap, *messages: bytes) -> None:
    conn = imaplib.IMAP4("127.0.0.1", server.port)
    conn.login(server.user, server.password)
    for raw in messages:
        conn.append("INBOX", None, None, raw)
    conn.logout()


def _mailbox(server: Imap, folder: str) -> list[str]:
    """The flags of each message in `folder`."""
    conn = imaplib.IMAP4("127.0.0.1", server.port)
    conn.login(server.user, server.password)
    status, _ = conn.select(f'"{folder}"')
    flags: list[str] = []
    if status == "OK":
        _, found = conn.search(None, "ALL")
        for num in (found[0] or b"").split():
            _, data = conn.fetch(num, "(FLAGS)")
            flags.append(data[0].decode() if isinstance(data[0], bytes) else "")
        conn.close()
    conn.logout()
    return flags


def test_bounce_poll_reads_the_imap_mailbox_once_and_moves_what_it_read(imap, sent) -> None:
    rt, box = sent
    hard, angry = READERS["office365_recipient_not_found.eml"], READERS["yahoo_arf_complaint.eml"]
    _append(
        imap,
        report("office365_recipient_not_found.eml", verp_of(box, hard), hard),
        report("yahoo_arf_complaint.eml", verp_of(box, angry), angry),
        report("postfix_user_unknown.eml", BOUNCES, READERS["postfix_user_unknown.eml"]),
    )
    cfg = rt.config.path
    cfg.write_text(
        apply_overrides(
            cfg.read_text(),
            {
                "bounces": {
                    "imap_host": "127.0.0.1",
                    "imap_port": imap.port,
                    "imap_security": "none",
                    "imap_user": imap.user,
                    "imap_done_folder": f"Processed-{rt.config.path.parent.parent.name}",
                }
            },
        )
    )
    done = f"Processed-{rt.config.path.parent.parent.name}"
    r = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 reports read, 2 changed a subscriber" in r.stdout.decode()
    assert subscriber(rt, hard).status == SubscriberStatus.BOUNCED  # type: ignore[union-attr]
    assert subscriber(rt, angry).status == SubscriberStatus.COMPLAINED  # type: ignore[union-attr]
    assert subscriber(rt, READERS["postfix_user_unknown.eml"]).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]
    assert _mailbox(imap, "INBOX") == []
    moved = _mailbox(imap, done)
    assert len(moved) == 3 and all("$DigestProcessed" in f and "\\Seen" in f for f in moved)
    again = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert again.returncode == 0 and "0 reports read" in again.stdout.decode()


def test_bounce_poll_flags_in_place_without_a_done_folder_and_names_a_wrong_password(
    imap, tmp_path, sqlite_url
) -> None:
    rt = make_runtime(
        bounce_project(
            tmp_path / "project", imap_host="127.0.0.1", imap_port=imap.port, imap_security="none", imap_user=imap.user
        ),
        sqlite_url,
    )
    wrong = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD="not-it")
    assert wrong.returncode == 2 and b"refused the login" in wrong.stderr + wrong.stdout
    assert b"Traceback" not in wrong.stderr
    _append(imap, b"From: a@b.example\r\nTo: bounces@example.com\r\nSubject: hi\r\n\r\nhello\r\n")
    from digest.storage.lease import Lease

    serving = Lease(rt, "bounce-poll")  # as a `digest serve` reading the mailbox now holds it
    assert serving.acquire()
    busy = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert busy.returncode == 0 and b"is reading the mailbox now; nothing done" in busy.stdout, busy.stdout
    serving.release()
    first = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert first.returncode == 0 and "1 reports read, 0 changed" in first.stdout.decode(), first.stdout
    assert all("$DigestProcessed" in f for f in _mailbox(imap, "INBOX"))
    second = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert "0 reports read" in second.stdout.decode()
    rt.close()


def test_bounce_poll_over_implicit_tls(imap, certificate, tmp_path, sqlite_url) -> None:  # noqa: F811
    rt = make_runtime(
        bounce_project(
            tmp_path / "project",
            imap_host="localhost",
            imap_port=imap.tls_port,
            imap_security="tls",
            imap_user=imap.user,
        ),
        sqlite_url,
    )
    _append(imap, b"From: a@b.example\r\nTo: bounces@example.com\r\nSubject: over tls\r\n\r\nhello\r\n")
    untrusted = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password)
    assert untrusted.returncode == 2 and b"cannot connect" in untrusted.stderr + untrusted.stdout
    trusted = cli(rt, "bounce-poll", DIGEST_IMAP_PASSWORD=imap.password, SSL_CERT_FILE=str(certificate[0]))
    assert trusted.returncode == 0 and "reports read" in trusted.stdout.decode(), trusted.stdout + trusted.stderr
    assert "0 reports read" not in trusted.stdout.decode()
    rt.close()


# -- configuration and tokens ---------------------------------------------------------------


def test_bounce_address_is_checked_and_read_from_the_old_smtp_section(tmp_path) -> None:
    cfg = write_project(tmp_path / "project")
    base = cfg.read_text()
    for bad, why in (
        ("bounces+x@example.com", "must not contain '+'"),
        ("b" * 30 + "@example.com", "characters"),
        ("not-an-address", "is not an email address"),
    ):
        cfg.write_text(apply_overrides(base, {"transport.smtp": {"bounce_address": bad}}))
        with pytest.raises(ConfigError, match=re.escape(why)) as err:
            load_config(cfg, env={})
        assert "transport.smtp.bounce_address" in str(err.value) and "\n" not in str(err.value)
    legacy = write_project(tmp_path / "legacy")  # a config from before [transport.smtp]
    legacy.write_text(base.replace('bounce_address = ""', "", 1) + '\n[smtp]\nbounce_address = "bounces@example.com"\n')
    config = load_config(legacy, env={"DIGEST_SECRET_KEY": "test-secret-key-0123456789"})
    verp = from_config(config)
    assert verp is not None and verp.bounce_address == "bounces@example.com"


def test_verp_tokens_survive_case_folding_and_refuse_any_change() -> None:
    verp = Verp(BOUNCES, Tokens("test-secret-key-0123456789"))
    address = verp.address("d1234567890", "Reader@Example.com")
    assert len(address.split("@")[0]) <= 64
    claim = verp.read(address.upper())
    assert claim is not None and claim.key == "d1234567890" and verp.belongs(claim, "reader@example.com")
    assert not verp.belongs(claim, "someone-else@example.com")
    local = address.split("@")[0]
    for i in range(len("bounces+"), len(local)):  # any change: not ours (its shape may still read)
        changed = local[:i] + ("x" if local[i] != "x" else "y") + local[i + 1 :]
        changed_claim = verp.read(changed + "@example.com")
        assert changed_claim is None or not verp.belongs(changed_claim, "reader@example.com"), changed
    assert verp.address("test-issue-2026-W47-1", "a@example.com") == BOUNCES  # a test send: plain address
    # An issue's copy sent before the proof (`<key>.<tie>.<signature>`, the tie 24 bits of the address's
    # hash): its bounces still name the delivery, and only its own recipient.
    legacy = verp.read("bounces+d1234567890.d108b2.5r4j7ito5djqzywogatq@example.com")
    assert legacy is not None and legacy.key == "d1234567890" and verp.belongs(legacy, "reader@example.com")
    assert not verp.belongs(legacy, "someone-else@example.com")
    assert verp.read("bounces+d1234567890.d108b3.5r4j7ito5djqzywogatq@example.com") is None  # signature


def test_digest_serve_polls_the_bounce_mailbox_by_itself(imap, sent, tmp_path) -> None:
    """With `[bounces] imap_host` set, `digest serve` reads the mailbox every `poll_seconds` (no cron
    needed); a second serve process waits its turn (one lease), and a wrong password is one log line."""
    from tests.support_serve import ServeProcess, serving, wait_for

    rt, box = sent
    hard = READERS["gmail_no_such_account.eml"]
    done = f"Served-{rt.config.path.parent.parent.name}"
    cfg = rt.config.path
    cfg.write_text(
        apply_overrides(
            cfg.read_text(),
            {
                "bounces": {
                    "imap_host": "127.0.0.1",
                    "imap_port": imap.port,
                    "imap_security": "none",
                    "imap_user": imap.user,
                    "imap_done_folder": done,
                    "poll_seconds": 1,
                }
            },
        )
    )
    env = {
        "DIGEST_DATABASE_URL": rt.config.database_url,
        "DIGEST_SECRET_KEY": rt.secret_key,
        "DIGEST_IMAP_PASSWORD": imap.password,
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    first, second = ServeProcess(cfg, free_port(), env, logs), ServeProcess(cfg, free_port(), env, logs)
    with serving(first, second):
        first.wait_ready()
        second.wait_ready()
        _append(imap, report("gmail_no_such_account.eml", verp_of(box, hard), hard))
        wait_for(
            lambda: subscriber(rt, hard).status == SubscriberStatus.BOUNCED,
            60,  # type: ignore[union-attr]
            what="digest serve to read the bounce",
        )
        wait_for(lambda: len(_mailbox(imap, done)) == 1, 30, what="the report moved to the done folder")
        assert first.terminate() == 0 and second.terminate() == 0
    output = first.output() + second.output()
    assert output.count("bounce mailbox: 1 report(s) read, 1 changed a subscriber") == 1, output
    assert "Traceback" not in output

    wrong = ServeProcess(cfg, free_port(), {**env, "DIGEST_IMAP_PASSWORD": "wrong"}, logs)
    with serving(wrong):
        wrong.wait_ready()
        wait_for(lambda: "refused the login" in wrong.output(), 30, what="the failed poll in the log")
        assert wrong.terminate() == 0
    assert "Traceback" not in wrong.output()
