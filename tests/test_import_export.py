"""CSV import/export, erasure (`forget`) and the `digest subscribers` commands."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from digest.delivery.mail_queue import drain
from digest.errors import UserError
from digest.storage.models import Delivery, Event, OutgoingMail, Subscriber, SubscriberStatus
from subscribers.api import add_subscriber, is_suppressed
from subscribers.csvio import EXPORT_COLUMNS, export_csv, import_csv
from subscribers.erasure import forget
from tests.conftest import ROOT
from tests.support_subscribers import (
    counts,
    issue_copy,
    outbox_messages,
    runtime_with,
    seed_comparisons,
    send_issue,
    subscriber,
)

BAD_CSV = (
    "Name;E-mail\n"  # 1 header (semicolons, columns swapped)
    "Ann;ann@example.com\n"  # 2 ok
    "Bob;not-an-address\n"  # 3 bad: no @
    "\n"  # 4 blank: ignored
    "Cy;ANN@example.com\n"  # 5 duplicate of 2
    '"Eve\r\nBcc: x@example.com";eve@example.com\n'  # 6-7 bad: line break in the name
    ";" + "a" * 250 + "@example.com\n"  # 8 bad: too long
    "Dee;dee@example.com\n"  # 9 ok
    "'=HYPERLINK(\"x\");'-minus@example.com\n"  # 10 ok: defused cells are restored
)


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def write(tmp_path: Path, text: str, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reports_each_bad_line_dedupes_and_adds_the_rest_as_pending(srt, tmp_path) -> None:
    report = import_csv(srt, write(tmp_path, BAD_CSV))
    assert [line for line, _ in report.bad] == [3, 6, 8]
    assert "not a valid address" in report.bad[0][1] and "line breaks" in report.bad[1][1]
    assert "longer than 254" in report.bad[2][1]
    assert report.duplicates == [(5, 2)]
    assert report.added == 3 and report.confirmations == 3
    ann = subscriber(srt, "ann@example.com")
    assert ann.status == SubscriberStatus.PENDING and ann.name == "Ann" and ann.consent_source == "import:people.csv"
    assert subscriber(srt, "-minus@example.com").name == '=HYPERLINK("x")'
    assert subscriber(srt, "eve@example.com") is None
    assert drain(srt).sent == 3
    assert {m["To"] for m in outbox_messages(srt)} == {"ann@example.com", "dee@example.com", "-minus@example.com"}


def test_confirmed_import_needs_consent_and_records_it(srt, tmp_path) -> None:
    path = write(tmp_path, "email,name\nz@example.com,Zed\n")
    before = counts(srt)
    with pytest.raises(UserError, match="--consent"):
        import_csv(srt, path, confirmed=True)
    assert counts(srt) == before
    report = import_csv(srt, path, confirmed=True, consent="signed up on paper at the 2026 meetup")
    assert report.added == 1 and report.confirmations == 0
    z = subscriber(srt, "z@example.com")
    assert (
        z.status == SubscriberStatus.ACTIVE
        and z.consent_source == "import:people.csv: signed up on paper at the 2026 meetup"
    )
    assert counts(srt)["outgoing_mail"] == 0


def test_import_never_brings_back_forgotten_unsubscribed_or_suppressed_people(srt, tmp_path) -> None:
    with srt.sessions.begin() as s:
        add_subscriber(s, "gone@example.com", confirmed=True)
        add_subscriber(s, "left@example.com", confirmed=True)
        s.scalar(
            select(Subscriber).where(Subscriber.email == "left@example.com")
        ).status = SubscriberStatus.UNSUBSCRIBED
    forget(srt, "gone@example.com")
    path = write(tmp_path, "gone@example.com\nleft@example.com\nnew@example.com\n")
    report = import_csv(srt, path, confirmed=True, consent="old list")
    assert (report.suppressed, report.left, report.added) == (1, 1, 1)
    assert subscriber(srt, "gone@example.com") is None
    assert subscriber(srt, "left@example.com").status == SubscriberStatus.UNSUBSCRIBED


def test_unreadable_files_are_refused_with_a_clear_message(srt, tmp_path) -> None:
    before = counts(srt)
    with pytest.raises(UserError, match="file not found"):
        import_csv(srt, tmp_path / "missing.csv")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("email,name\nj@example.com,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        import_csv(srt, latin1)
    assert counts(srt) == before


def test_export_has_status_and_consent_and_defuses_formulas(srt, tmp_path) -> None:
    with srt.sessions.begin() as s:
        add_subscriber(
            s,
            "a@example.com",
            name="=cmd|' /C calc'!A0",
            confirmed=True,
            source="cli",
            ip="203.0.113.9",
            user_agent="UA",
        )
    target = tmp_path / "out.csv"
    assert export_csv(srt, target) == 1
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert list(rows[0]) == EXPORT_COLUMNS
    assert (
        rows[0]["status"] == "active" and rows[0]["consent_ip"] == "203.0.113.9" and rows[0]["consent_source"] == "cli"
    )
    assert rows[0]["name"].startswith("'=") and rows[0]["consent_at"].endswith("+00:00")
    # exported files import again unchanged
    report = import_csv(srt, target)
    assert report.unchanged == 1 and not report.bad
    with pytest.raises(UserError, match="folder not found"):
        export_csv(srt, tmp_path / "nope" / "x.csv")


def test_forget_erases_the_person_and_keeps_only_a_hash(srt) -> None:
    now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    seed_comparisons(srt, now.replace(day=17))
    with srt.sessions.begin() as s:
        add_subscriber(s, "erase.me@example.com", name="Erase Me", confirmed=True)
        add_subscriber(s, "stay@example.com", confirmed=True)
    send_issue(srt, "2026-W47", now)
    assert issue_copy(srt, "2026-W47", "erase.me@example.com") is not None
    result = forget(srt, "Erase.Me@Example.com")
    assert result.found and result.deliveries_cleared == 1 and result.files_removed == 1
    assert subscriber(srt, "erase.me@example.com") is None
    assert issue_copy(srt, "2026-W47", "erase.me@example.com") is None
    with srt.sessions() as s:
        assert is_suppressed(s, "erase.me@example.com")
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.email.like("%erase%"))) == 0
        assert s.scalar(select(func.count()).select_from(Delivery)) == 2  # the issue's counts stay right
        assert s.scalar(select(func.count()).select_from(Event).where(Event.subscriber_id.is_(None))) >= 1
        assert s.scalar(select(func.count()).select_from(OutgoingMail)) == 0
    assert subscriber(srt, "stay@example.com").status == SubscriberStatus.ACTIVE


def _cli(project_config: Path, db_url: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": "test-secret-key-0123456789",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DIGEST_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(project_config), "subscribers", *args],
        capture_output=True,
        env=env,
        input=stdin,
        timeout=120,
    )


def test_cli_import_export_count_list_forget(srt, tmp_path) -> None:
    cfg = srt.config.path
    url = srt.config.database_url
    path = write(tmp_path, BAD_CSV)
    r = _cli(cfg, url, "import", str(path))
    out = r.stdout.decode()
    assert r.returncode == 1, r.stderr
    assert f"{path}:3: email: 'not-an-address' is not a valid address" in out
    assert f"{path}:5: duplicate of line 2; skipped" in out
    assert "3 added (pending)" in out and "confirmations: 3 sent" in out
    assert len(outbox_messages(srt)) == 3
    r = _cli(cfg, url, "import", str(path), "--confirmed")
    assert r.returncode == 2 and "--consent" in r.stderr.decode() and "Traceback" not in r.stderr.decode()
    r = _cli(cfg, url, "count", "--json")
    assert r.returncode == 0 and '"pending": 3' in r.stdout.decode()
    r = _cli(cfg, url, "list", "--status", "pending")
    assert r.returncode == 0 and "dee@example.com" in r.stdout.decode()
    assert _cli(cfg, url, "list", "--status", "bogus").returncode == 2
    r = _cli(cfg, url, "export", "-")
    assert r.returncode == 0 and r.stdout.decode().count("\n") == 4
    r = _cli(cfg, url, "forget", "dee@example.com")
    assert r.returncode == 0 and "erased" in r.stdout.decode()
    r = _cli(cfg, url, "forget", "not an address")
    assert r.returncode == 2 and "not a valid address" in r.stderr.decode()
    r = _cli(cfg, url, "add", "new@example.com", "--name", "New")
    assert r.returncode == 0 and "added: new@example.com (pending)" in r.stdout.decode()
    r = _cli(cfg, url, "add", "dee@example.com", "--confirmed")
    assert r.returncode == 1 and "suppression list" in r.stdout.decode()
    r = _cli(cfg, url, "add", "bad\r\nBcc: x@example.com")
    assert r.returncode == 2 and "line breaks" in r.stderr.decode()
    from digest.links import Tokens

    r = _cli(cfg, url, "unsubscribe-mail", "-", stdin=b"From: ann@example.com\r\nSubject: unsubscribe\r\n\r\n")
    assert r.returncode == 0 and "nothing changed" in r.stdout.decode()  # the From line alone counts for nothing
    ann = subscriber(srt, "ann@example.com")
    token = Tokens("test-secret-key-0123456789").unsubscribe(ann.id, ann.email)
    r = _cli(
        cfg, url, "unsubscribe-mail", "-", stdin=f"From: x@y.example\r\nSubject: unsubscribe {token}\r\n\r\n".encode()
    )
    assert r.returncode == 0 and "unsubscribed" in r.stdout.decode()
    assert subscriber(srt, "ann@example.com").status == SubscriberStatus.UNSUBSCRIBED
