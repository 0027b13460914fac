"""Unsubscribe by mail acts on the signed token only (subject or body), never on the From line,
and `digest subscribers unsubscribe-mail` exits 0 for requests that change nothing, so a
bounce never tells a stranger who is on the list."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from digest.delivery.mail_queue import drain
from digest.storage.models import SubscriberStatus
from subscribers.api import add_subscriber
from subscribers.mailto import process_unsubscribe_mail
from tests.conftest import ROOT
from tests.support_subscribers import (
    client,
    counts,
    issue_copy,
    link_in,
    outbox_messages,
    path_of,
    runtime_with,
    seed_comparisons,
    send_issue,
    subscriber,
)

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.fixture
def sent(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    seed_comparisons(rt, NOW.replace(day=17))
    with rt.sessions.begin() as s:
        add_subscriber(s, "reader@example.com", confirmed=True)
        add_subscriber(s, "other@example.com", confirmed=True)
    send_issue(rt, "2026-W47", NOW)
    yield rt
    rt.close()


def _mailto(msg) -> tuple[str, str]:
    """The mailto: of List-Unsubscribe as a mail client reads it: (address, decoded subject)."""
    raw = str(msg["List-Unsubscribe"]).split("<mailto:", 1)[1].split(">", 1)[0]
    address, _, query = raw.partition("?")
    assert query.startswith("subject="), raw
    return address, unquote(query[len("subject=") :])


def _cli(rt, *files: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DIGEST_DATABASE_URL": rt.config.database_url,
        "DIGEST_SECRET_KEY": rt.secret_key,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(rt.config.path), "subscribers", "unsubscribe-mail", *files],
        capture_output=True,
        env=env,
        input=stdin,
        timeout=120,
    )


def test_a_forged_from_line_alone_unsubscribes_nobody_and_exits_0(sent, tmp_path) -> None:
    before = counts(sent)
    forged = tmp_path / "forged.eml"
    forged.write_bytes(
        b"From: Reader <READER@example.com>\r\nTo: unsubscribe@example.com\r\n"
        b"Subject: unsubscribe\r\n\r\nplease take me off\r\n"
    )
    assert process_unsubscribe_mail(sent, forged.read_bytes()).changed is False
    stranger = tmp_path / "stranger.eml"
    stranger.write_bytes(b"From: nobody@nowhere.example\r\nSubject: unsubscribe abcdefghijklmnop\r\n\r\n\r\n")
    junk = tmp_path / "junk.eml"
    junk.write_bytes(b"\x00\xff garbage")
    r = _cli(sent, str(forged), str(stranger), str(junk))
    assert r.returncode == 0, r.stdout + r.stderr
    assert b"Traceback" not in r.stderr
    assert subscriber(sent, "reader@example.com").status == SubscriberStatus.ACTIVE
    assert counts(sent) == before
    # The output for a known and an unknown sender is the same: nothing reveals who is on the list.
    lines = r.stdout.decode().splitlines()
    assert lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1]


def test_the_issue_mailto_carries_the_token_and_a_reply_to_it_unsubscribes(sent) -> None:
    msg = issue_copy(sent, "2026-W47", "reader@example.com")
    address, subject = _mailto(msg)
    assert address == sent.settings.sender.unsubscribe_mailto and subject.startswith("unsubscribe ")
    raw = (f"From: Somebody Else <x@elsewhere.example>\r\nTo: {address}\r\nSubject: {subject}\r\n\r\n\r\n").encode()
    r = _cli(sent, "-", stdin=raw)
    assert r.returncode == 0 and subscriber(sent, "reader@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert subscriber(sent, "other@example.com").status == SubscriberStatus.ACTIVE
    again = _cli(sent, "-", stdin=raw)  # repeating it changes nothing and is no error
    assert again.returncode == 0


def test_a_token_in_the_body_works_when_the_client_rewrote_the_subject(sent) -> None:
    msg = issue_copy(sent, "2026-W47", "other@example.com")
    _, subject = _mailto(msg)
    raw = (
        f"From: x@elsewhere.example\r\nSubject: Re: your newsletter\r\nContent-Type: text/plain\r\n\r\n> {subject}\r\n"
    ).encode()
    outcome = process_unsubscribe_mail(sent, raw)
    assert outcome.changed and subscriber(sent, "other@example.com").status == SubscriberStatus.UNSUBSCRIBED


def test_the_welcome_mail_mailto_carries_the_token_too(tmp_path, db_url) -> None:
    rt = runtime_with(tmp_path / "w", db_url)
    try:
        c = client(rt)
        c.post("/subscribe", json={"email": "w@example.com"})
        drain(rt)
        c.post(path_of(link_in(outbox_messages(rt, to="w@example.com")[-1], "/confirm/")))
        drain(rt)
        welcome = outbox_messages(rt, to="w@example.com")[-1]
        _, subject = _mailto(welcome)
        outcome = process_unsubscribe_mail(rt, f"From: a@b.example\r\nSubject: {subject}\r\n\r\n".encode())
        assert outcome.changed and subscriber(rt, "w@example.com").status == SubscriberStatus.UNSUBSCRIBED
    finally:
        rt.close()
