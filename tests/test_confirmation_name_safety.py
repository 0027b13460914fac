"""The confirmation mail goes to an address nobody has verified yet: it never prints the name the
visitor typed, and names that carry a URL or are longer than a name needs are refused."""

from __future__ import annotations

import pytest

from digest.delivery.mail_queue import drain
from subscribers.addresses import MAX_NAME, AddressError, clean_name
from tests.support_subscribers import client, counts, outbox_messages, runtime_with, subscriber, text_of


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


PHISHY = [
    "Your account is locked, visit http://evil.example/login",
    "see https://x.example",
    "Claim at www.prize-example.com",
    "Go to paypal.example.com/verify now",
    "bit.ly/abc",
    "hxxp://x",
    "ftp://files.example/x",
    "a" * (MAX_NAME + 1),
]


def test_the_confirmation_mail_does_not_print_the_visitor_supplied_name(srt) -> None:
    c = client(srt)
    assert c.post("/subscribe", json={"email": "n@example.com", "name": "Zebulon Quux"}).status_code == 200
    assert subscriber(srt, "n@example.com").name == "Zebulon Quux"  # kept for later issues
    drain(srt)
    [mail] = outbox_messages(srt, to="n@example.com")
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "Zebulon" not in text_of(mail) and "Zebulon" not in html and "Zebulon" not in str(mail["Subject"])


@pytest.mark.parametrize("name", PHISHY)
def test_names_with_urls_or_too_long_are_refused_with_a_clear_field_message(srt, name) -> None:
    c = client(srt)
    before = counts(srt)
    r = c.post("/subscribe", json={"email": "p@example.com", "name": name})
    assert r.status_code == 400 and r.json()["field"] == "name", r.text
    assert "name" in r.json()["error"].lower()
    form = c.post("/subscribe", data={"email": "p@example.com", "name": name})
    assert form.status_code == 400 and 'aria-invalid="true"' in form.text
    assert counts(srt) == before


@pytest.mark.parametrize(
    "name", ["Ann", "J.R.R. Tolkien", "Dr. Ann-Marie O’Neil", "Zoë", "李小龍", "Mr. Smith Jr.", "a" * MAX_NAME]
)
def test_ordinary_names_are_accepted(name) -> None:
    assert clean_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "a\x01b",
        "tab\there",
        "bell\x07",
        "c1\x85x",
        "del\x7f",
        "non\ufdd0char",
        "end\uffff",
        "plane\U0001fffe",
        "line\nbreak",
        "\u2028sep",
    ],
)
def test_names_with_control_characters_or_noncharacters_are_refused(name) -> None:
    with pytest.raises(AddressError, match="^name: "):
        clean_name(name)
