"""The SMTP transport against a real SMTP server (aiosmtpd): STARTTLS, implicit TLS, AUTH,
refusals, a connection lost halfway through a batch, and Resend's idempotency header."""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from digest.cycle.send import send_week
from digest.mail import OutgoingEmail
from digest.providers.smtp.transport import SmtpTransport, is_resend_smtp
from digest.storage.models import Delivery, DeliveryStatus
from digest.weeks import Week
from tests.conftest import apply_overrides, make_runtime, require_or_skip, write_project
from tests.support_delivery import add_readers, assert_exactly_once, seed_comparisons
from tests.support_serve import free_port

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
WEEK = Week.parse("2026-W47")
USER, PASSWORD = "digest", "s3cret-pass"


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it accepted and can refuse on demand."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)  # 550 at RCPT
    busy_at: int | None = None  # answer 451 once to the message with this number (0-based)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        if address in self.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if self.busy_at is not None and len(self.messages) == self.busy_at:
            self.busy_at = None
            return "451 4.3.0 try again later"
        self.sessions.add(id(session))
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"

    def copies(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, rcpts, _ in self.messages:
            for r in rcpts:
                counts[r] = counts.get(r, 0) + 1
        return counts


def _authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    require_or_skip(None if openssl else "no openssl binary to make a test certificate", "openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def trust(certificate, monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    """Our client trusts the test certificate the way an operator would trust a private CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    return certificate[0]


def _server_tls(certificate: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return ctx


@pytest.fixture
def starttls_server(certificate, trust) -> Iterator[tuple[Mailbox, int]]:  # type: ignore[no-untyped-def]
    box = Mailbox()
    port = free_port()
    ctl = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=_server_tls(certificate),
        require_starttls=True,
        authenticator=_authenticator,
        auth_required=True,
    )
    ctl.start()
    yield box, port
    ctl.stop()


def smtp_runtime(tmp_path: Path, db_url: str, port: int, security: str, username: str = USER, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(
            cfg.read_text(),
            {
                "transport": {"kind": "smtp"},
                "transport.smtp": {
                    "host": "localhost",
                    "port": port,
                    "security": security,
                    "username": username,
                    "timeout_seconds": 10.0,
                },
            },
        )
    )
    rt = make_runtime(cfg, db_url, DIGEST_SMTP_PASSWORD=password)
    seed_comparisons(rt, published=NOW - timedelta(days=1))
    return rt


def test_starttls_and_auth_send_each_reader_one_message_over_one_connection(starttls_server, tmp_path, db_url) -> None:
    box, port = starttls_server
    rt = smtp_runtime(tmp_path, db_url, port, "starttls")
    readers = add_readers(rt, 150)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 150
    assert_exactly_once(box.copies(), readers)
    assert len(box.sessions) <= 2  # connections are kept across messages: one per sending thread
    msg = email.message_from_bytes(box.messages[0][2], policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<http") and "mailto:" in msg["List-Unsubscribe"]
    assert {p.get_content_type() for p in msg.walk()} >= {"text/plain", "text/html"}
    assert "Resend-Idempotency-Key" not in msg
    with rt.sessions() as s:
        assert set(s.scalars(select(Delivery.status))) == {DeliveryStatus.SENT}


def test_connection_trouble_halfway_resends_only_the_messages_not_yet_accepted(
    starttls_server, tmp_path, db_url
) -> None:
    box, port = starttls_server
    box.busy_at = 30  # the 31st message of the first batch gets 451
    rt = smtp_runtime(tmp_path, db_url, port, "starttls")
    readers = add_readers(rt, 100)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 100 and result.summary.retries == 1
    assert_exactly_once(box.copies(), readers)


def test_refused_recipient_is_recorded_on_its_delivery_and_the_rest_go_out(
    starttls_server, tmp_path, sqlite_url
) -> None:
    box, port = starttls_server
    rt = smtp_runtime(tmp_path, sqlite_url, port, "starttls")
    readers = add_readers(rt, 5)
    box.refuse = {readers[2]}
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 4 and result.summary.failed == 1
    with rt.sessions() as s:
        status, error = s.execute(select(Delivery.status, Delivery.error).where(Delivery.email == readers[2])).one()
    assert status == DeliveryStatus.FAILED and "550" in error
    assert_exactly_once(box.copies(), set(readers) - {readers[2]})


def test_wrong_password_stops_the_send_with_one_clear_message(starttls_server, tmp_path, sqlite_url) -> None:
    box, port = starttls_server
    rt = smtp_runtime(tmp_path, sqlite_url, port, "starttls", password="wrong")
    add_readers(rt, 5)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 0
    assert result.summary.stopped is not None and "refused the login" in result.summary.stopped
    assert "DIGEST_SMTP_PASSWORD" in result.summary.stopped
    assert box.messages == []


def test_implicit_tls(certificate, trust, tmp_path, sqlite_url) -> None:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, ssl_context=_server_tls(certificate))
    ctl.start()
    try:
        rt = smtp_runtime(tmp_path, sqlite_url, port, "tls", username="")
        readers = add_readers(rt, 3)
        result = send_week(rt, WEEK, manual=True, now=NOW)
    finally:
        ctl.stop()
    assert result.summary is not None and result.summary.sent == 3
    assert_exactly_once(box.copies(), readers)


def test_resends_smtp_server_gets_an_idempotency_key_per_message(tmp_path) -> None:
    from digest.config import load_config

    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(
            cfg.read_text(),
            {"transport.smtp": {"host": "smtp.resend.com", "port": 465, "security": "tls", "username": "resend"}},
        )
    )
    transport = SmtpTransport(load_config(cfg, env={"DIGEST_SMTP_PASSWORD": "re_key"}))
    mail = OutgoingEmail(
        to="a@example.com", subject="s", html="<p>h</p>", text="h", from_addr="V <v@example.com>", key="d42"
    )
    msg = transport.message(mail, "digest-2026-W47-b3")
    assert msg["Resend-Idempotency-Key"] == "digest-2026-W47-b3/d42"
    assert msg["Message-ID"].endswith("@example.com>") and "d42" not in msg["Message-ID"]
    wire = transport.wire(mail, "digest-2026-W47-b3")  # the bytes actually sent carry it too
    assert wire is not None
    sent = email.message_from_bytes(wire.data, policy=email.policy.default)
    assert sent["Resend-Idempotency-Key"] == "digest-2026-W47-b3/d42"
    assert b"\r\nResend-Idempotency-Key: digest-2026-W47-b3/d42\r\n" in wire.data
    assert is_resend_smtp("smtp.resend.com") and not is_resend_smtp("localhost")
