"""What a mailbox provider reads: the raw bytes of every message we write (outbox) or hand to an
SMTP server (aiosmtpd), not a header parsed and decoded back by Python.

RFC 8058 one-click unsubscribe needs `List-Unsubscribe: <https://...>, <mailto:...>` as plain ASCII;
an RFC 2047 encoded-word there (`=?utf-8?q?=3Chttp...`) is not a URL and Gmail/Yahoo ignore it.
Subjects with non-ASCII text must still be RFC 2047 encoded (and decode back to what we meant).
"""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from digest.cycle.send import send_week
from digest.delivery.mail_builder import MailBuilder
from digest.mail import ascii_uri
from digest.providers.outbox.transport import OutboxTransport
from digest.storage.models import Subscriber
from digest.weeks import Week
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.support_delivery import add_readers, seed_comparisons
from tests.support_serve import free_port

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
WEEK = Week.parse("2026-W47")
# A long public URL makes the header far longer than 78 characters, as it is in production.
PUBLIC_URL = "https://newsletter.verdicts-of-the-week.example.com/with/a/long/path"


def raw_headers(data: bytes) -> dict[str, list[bytes]]:
    """Header name (lower case) -> its physical lines, exactly as in the bytes."""
    head = data.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in data else data.split(b"\n\n", 1)[0]
    out: dict[str, list[bytes]] = {}
    current: list[bytes] | None = None
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            continue
        name = line.split(b":", 1)[0].decode("ascii").lower()
        current = out.setdefault(name, [])
        if current:  # a second header of the same name: keep it visible to the assertion
            current.append(b"<<second header>>")
        current.append(line)
    return out


def assert_one_click_headers_verbatim(data: bytes) -> None:
    headers = raw_headers(data)
    for name, physical in headers.items():  # every header: ASCII, within the hard line limit
        assert all(line.isascii() and len(line) <= 998 for line in physical), (name, physical)
    lines = headers["list-unsubscribe"]
    for line in lines:
        assert line.isascii() and b"=?" not in line, lines
        assert len(line) <= 998, len(line)
    for prev in lines[:-1]:  # folded only after the comma between the two URIs
        assert prev.endswith(b","), lines
    value = b" ".join(line.strip() for line in lines).decode("ascii")
    assert re.fullmatch(r"List-Unsubscribe: <https://[^<>\s]+>, <mailto:[^<>\s]+>", value, re.I), value
    assert value.split(": ", 1)[1].startswith(f"<{PUBLIC_URL}/")
    assert headers["list-unsubscribe-post"] == [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"]


def _project(tmp_path: Path, site_name: str = "Weekly AI Tool Verdicts", **overrides: dict[str, object]) -> Path:
    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(cfg.read_text(), {"site": {"public_url": PUBLIC_URL, "name": site_name}, **overrides})
    )
    return cfg


def test_outbox_issue_carries_list_unsubscribe_as_plain_ascii(tmp_path, db_url) -> None:
    rt = make_runtime(_project(tmp_path), db_url)
    seed_comparisons(rt, published=NOW - timedelta(days=1))
    add_readers(rt, 2)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 2
    files = sorted((rt.config.outbox_dir / WEEK.key).glob("*.eml"))
    assert len(files) == 2
    for path in files:
        assert_one_click_headers_verbatim(path.read_bytes())


class _Box:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.contents.append(envelope.original_content or envelope.content)
        return "250 2.0.0 queued"


def test_smtp_issue_carries_list_unsubscribe_as_plain_ascii_on_the_wire(tmp_path, sqlite_url) -> None:
    box, port = _Box(), free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        cfg = _project(
            tmp_path,
            transport={"kind": "smtp"},
            **{"transport.smtp": {"host": "127.0.0.1", "port": port, "security": "none", "username": ""}},
        )
        rt = make_runtime(cfg, sqlite_url)
        seed_comparisons(rt, published=NOW - timedelta(days=1))
        add_readers(rt, 2)
        result = send_week(rt, WEEK, manual=True, now=NOW)
    finally:
        ctl.stop()
    assert result.summary is not None and result.summary.sent == 2
    assert len(box.contents) == 2
    for data in box.contents:
        assert_one_click_headers_verbatim(data)


def _transactional_bytes(
    tmp_path: Path, sqlite_url: str, kind: str, site_name: str, **overrides: dict[str, object]
) -> bytes:
    rt = make_runtime(_project(tmp_path, site_name=site_name, **overrides), sqlite_url)
    person = Subscriber(id=7, email="reader@example.com", name="Zoë")
    mail = MailBuilder(rt).build(11, kind, person)
    transport = OutboxTransport(tmp_path / "outbox")
    [result] = transport.send_batch([mail], "k", "transactional")
    assert result.ok
    [path] = (tmp_path / "outbox" / "transactional").glob("*.eml")
    return path.read_bytes()


def test_welcome_mail_carries_list_unsubscribe_as_plain_ascii(tmp_path, sqlite_url) -> None:
    assert_one_click_headers_verbatim(_transactional_bytes(tmp_path, sqlite_url, "welcome", "Weekly Verdicts"))


@pytest.mark.parametrize("kind", ["confirm", "welcome"])
def test_non_ascii_subject_is_rfc2047_encoded_and_every_header_line_is_ascii(tmp_path, sqlite_url, kind) -> None:
    site = "Les verdicts de la semaine — outils d’IA comparés pour les équipes produit"
    data = _transactional_bytes(
        tmp_path,
        sqlite_url,
        kind,
        site,
        sender={"from_name": "Zoë at the Verdicts desk — l’équipe éditoriale", "from_email": "reader-desk@example.com"},
    )
    headers = raw_headers(data)
    for name, lines in headers.items():
        for line in lines:
            assert line.isascii() and len(line) <= 998, (name, line)
    subject_lines = headers["subject"]
    assert any(b"=?utf-8?" in line for line in subject_lines)
    assert all(len(line) <= 78 for line in subject_lines)  # RFC 2047: encoded-words fold to short lines
    assert all(len(word) <= 75 for line in subject_lines for word in re.findall(rb"=\?[^?]+\?[qQbB]\?[^?]*\?=", line))
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert site in msg["Subject"]
    # An RFC 2047 decoder joins adjacent encoded-words (Python's own address parser adds a space there).
    raw_from = b" ".join(line.split(b": ", 1)[-1].strip() for line in headers["from"]).decode("ascii")
    assert (
        str(make_header(decode_header(raw_from)))
        == "Zoë at the Verdicts desk — l’équipe éditoriale <reader-desk@example.com>"
    )
    if kind == "confirm":
        assert "List-Unsubscribe" not in msg


def test_an_international_public_url_and_mailto_are_written_as_ascii_uris(tmp_path, sqlite_url) -> None:
    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(
            cfg.read_text(),
            {
                "site": {"public_url": "https://nouvelles.bücher.example/lettre-é"},
                "sender": {"unsubscribe_mailto": "désabonner@bücher.example"},
            },
        )
    )
    rt = make_runtime(cfg, sqlite_url)
    mail = MailBuilder(rt).build(3, "welcome", Subscriber(id=7, email="reader@example.com", name=None))
    [result] = OutboxTransport(tmp_path / "outbox").send_batch([mail], "k", "transactional")
    assert result.ok
    [path] = (tmp_path / "outbox" / "transactional").glob("*.eml")
    lines = raw_headers(path.read_bytes())["list-unsubscribe"]
    value = b" ".join(line.strip() for line in lines).decode("ascii")
    assert value.startswith("List-Unsubscribe: <https://nouvelles.xn--bcher-kva.example/lettre-%C3%A9/u/"), value
    assert "<mailto:d%C3%A9sabonner@xn--bcher-kva.example?subject=unsubscribe%20" in value, value


@pytest.mark.parametrize(
    "iri, uri",
    [
        # userinfo is part of the authority: dropping it sends the reader somewhere else
        ("https://user@exämple.com/", "https://user@xn--exmple-cua.com/"),
        ("https://üser:pä ss@exämple.com/", "https://%C3%BCser:p%C3%A4%20ss@xn--exmple-cua.com/"),
        # an IPv6 literal keeps its brackets: without them `::1:8080` is no host and port at all
        ("https://[::1]:8080/é", "https://[::1]:8080/%C3%A9"),
        ("http://[2001:db8::7]/ü?q=ö#ä", "http://[2001:db8::7]/%C3%BC?q=%C3%B6#%C3%A4"),
        # the port as given (0 included), its empty form dropped (RFC 3986 6.2.3)
        ("https://例え.jp:0/x", "https://xn--r8jz45g.jp:0/x"),
        ("https://例え.jp:/x", "https://xn--r8jz45g.jp/x"),
        (
            "https://例え.jp:8443/パス?キー=値#節",
            "https://xn--r8jz45g.jp:8443/%E3%83%91%E3%82%B9?%E3%82%AD%E3%83%BC=%E5%80%A4#%E7%AF%80",
        ),
        # RFC 6068: a mailto's local part %-encoded, its domain IDNA
        (
            "mailto:désabonner@bücher.example?subject=unsubscribe%20t",
            "mailto:d%C3%A9sabonner@xn--bcher-kva.example?subject=unsubscribe%20t",
        ),
    ],
)
def test_an_iri_becomes_the_uri_it_stands_for(iri: str, uri: str) -> None:
    assert ascii_uri(iri) == uri


@pytest.mark.parametrize(
    "iri",
    [
        "https://例え.jp:99999/x",  # port out of range
        "https://例え.jp:8o/x",  # not a port
        "https://例え.jp:٣/x",  # a digit, but not an ASCII one
        "https://例え..jp/x",  # an empty label: no domain name
        "https://" + "ü" * 64 + ".example/x",  # a label longer than 63 characters
        "https://[::ü]/x",  # no IP literal
        "https://[::1/é",  # an unclosed IP literal
    ],
)
def test_an_iri_with_no_uri_form_is_refused(iri: str) -> None:
    """An IRI whose authority cannot be written as a URI: a ValueError, never a %-encoded host that
    no browser resolves, nor a URI missing part of what was given."""
    with pytest.raises(ValueError):
        ascii_uri(iri)
