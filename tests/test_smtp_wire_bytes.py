"""The SMTP transport's own serialization sends exactly the bytes `smtplib.send_message` would."""

from __future__ import annotations

import io
from email.generator import BytesGenerator

from digest.delivery.transports.smtp_wire import mime, wire
from digest.mail import OutgoingEmail, to_mime


def _mail(**extra: str) -> OutgoingEmail:
    fields = {"from_addr": "Weekly AI Tool Verdicts <verdicts@example.com>", "to": "reader@example.com",
              "subject": "Week 47 \u2014 Cursor vs SmolLM3, and a subject long enough to be folded over two lines",
              "html": "<p>Gr\u00fc\u00dfe, &amp; a line with trailing space </p>\n.leading dot\n" * 400,
              "text": "Hello\n\n.leading dot\n" * 40, **extra}
    return OutgoingEmail(headers={"List-Unsubscribe": "<https://verdicts.example.com/u/tok>, <mailto:u@example.com>",
                                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}, key="k-1",
                         message_id="<d1.k-1@example.com>", **fields)


def test_wire_bytes_equal_what_the_email_generator_writes() -> None:
    msg = to_mime(_mail(), "example.com")
    sender, rcpts, data = wire(msg)  # type: ignore[misc]
    generated = io.BytesIO()
    BytesGenerator(generated).flatten(msg, linesep="\r\n")  # what send_message hands to sendmail
    assert data == generated.getvalue()
    assert (sender, rcpts) == ("verdicts@example.com", ["reader@example.com"])


def test_a_non_ascii_address_is_left_to_send_message() -> None:
    assert wire(to_mime(_mail(to="l\u00e9a@example.com"), "example.com")) is None


def test_fast_bodies_decode_to_the_same_text_under_the_same_headers() -> None:
    mail = _mail()
    fast, slow = mime(mail, "example.com"), to_mime(mail, "example.com")
    assert [(k, v) for k, v in fast.items() if k != "Date"] == [(k, v) for k, v in slow.items() if k != "Date"]
    fast_parts = [p for p in fast.walk() if not p.is_multipart()]
    slow_parts = [p for p in slow.walk() if not p.is_multipart()]
    assert [p.get_content_type() for p in fast_parts] == ["text/plain", "text/html"]
    for f, s in zip(fast_parts, slow_parts):
        assert list(f.items()) == list(s.items())
        assert f.get_content() == s.get_content()
        assert max(len(line) for line in f.get_payload().splitlines()) <= 76  # RFC 2045 line limit
