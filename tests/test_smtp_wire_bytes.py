"""The SMTP transport's own serialization sends exactly the bytes `smtplib.send_message` would."""

from __future__ import annotations

import io
from email.generator import BytesGenerator

from digest.delivery.transports.smtp_wire import wire
from digest.mail import OutgoingEmail, to_mime


def _mail(**extra: str) -> OutgoingEmail:
    fields = {"from_addr": "Weekly AI Tool Verdicts <verdicts@example.com>", "to": "reader@example.com",
              "subject": "Week 47 \u2014 Cursor vs SmolLM3, and a subject long enough to be folded over two lines",
              "html": "<p>Gr\u00fc\u00dfe, &amp; a line with trailing space </p>\n.leading dot\n" * 400,
              "text": "Hello\n\n.leading dot\n" * 40, **extra}
    return OutgoingEmail(headers={"List-Unsubscribe": "<https://verdicts.example.com/u/tok>, <mailto:u@example.com>",
                                  "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}, key="k-1", **fields)


def test_wire_bytes_equal_what_the_email_generator_writes() -> None:
    msg = to_mime(_mail(), "example.com")
    sender, rcpts, data = wire(msg)  # type: ignore[misc]
    generated = io.BytesIO()
    BytesGenerator(generated).flatten(msg, linesep="\r\n")  # what send_message hands to sendmail
    assert data == generated.getvalue()
    assert (sender, rcpts) == ("verdicts@example.com", ["reader@example.com"])


def test_a_non_ascii_address_is_left_to_send_message() -> None:
    assert wire(to_mime(_mail(to="l\u00e9a@example.com"), "example.com")) is None
