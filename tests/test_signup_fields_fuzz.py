"""Property-based tests of the sign-up field cleaning: any Unicode string in email, name or
source either gets a clear refusal (one line, naming the field) or is accepted, stored and
mailed. Names never keep control characters, noncharacters, line breaks or links."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digest.delivery.mail_queue import drain
from subscribers.addresses import _NAME_LINK, MAX_EMAIL, MAX_NAME, AddressError, clean_name, normalize_email
from subscribers.signup import SignupRequest, clean_form_id, signup
from tests.support_subscribers import client, outbox_messages, runtime_with, subscriber

# Fixed seeds and no example database: the same run in CI and on a laptop, nothing written.
FAST = settings(max_examples=400, deadline=None, derandomize=True, database=None)
SLOW = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Every code point, surrogates included (JSON "\ud800" reaches us as one).
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=120)
NAMEISH = st.one_of(
    ANY_TEXT, st.text(st.characters(codec="utf-8", categories=("L", "M", "Zs", "Pd", "Po")), max_size=70)
)
EMAILISH = st.one_of(
    st.emails(),
    ANY_TEXT,
    st.builds(lambda local, host: f"{local}@{host}", ANY_TEXT, st.sampled_from(["example.com", "bücher.example"])),
)
_BAD_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ufdd0-\ufdef]")


def _is_noncharacter(c: str) -> bool:
    return (ord(c) & 0xFFFE) == 0xFFFE or 0xFDD0 <= ord(c) <= 0xFDEF


def _one_clear_line(exc: AddressError, field: str) -> None:
    message = str(exc)
    assert message.startswith(f"{field}: ") and "\n" not in message and len(message) < 300, message


@FAST
@given(NAMEISH)
def test_any_name_is_refused_clearly_or_comes_back_clean(raw: str) -> None:
    try:
        name = clean_name(raw)
    except AddressError as exc:
        _one_clear_line(exc, "name")
        return
    if name is None:
        assert raw.strip() == ""
        return
    assert name == name.strip() and len(name) <= MAX_NAME
    assert not _BAD_IN_NAME.search(name) and not any(_is_noncharacter(c) for c in name)
    assert not _NAME_LINK.search(name)
    name.encode("utf-8")  # storable and mailable
    assert clean_name(name) == name  # cleaning is stable


@FAST
@given(ANY_TEXT.map(lambda s: s + "\x01") | ANY_TEXT.map(lambda s: "\ufffe" + s) | ANY_TEXT.map(lambda s: s + "\x9b"))
def test_names_with_controls_or_noncharacters_are_always_refused(raw: str) -> None:
    with pytest.raises(AddressError):
        clean_name(raw)


@FAST
@given(EMAILISH)
def test_any_email_is_refused_clearly_or_normalized(raw: str) -> None:
    try:
        address = normalize_email(raw)
    except AddressError as exc:
        _one_clear_line(exc, "email")
        return
    assert address == address.lower() and len(address) <= MAX_EMAIL and "@" in address
    assert not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or c.isspace() for c in address)
    assert normalize_email(address) == address


@FAST
@given(st.one_of(st.none(), ANY_TEXT))
def test_any_source_becomes_a_short_slug(raw: str | None) -> None:
    assert re.fullmatch(r"[a-z0-9_.-]{1,40}", clean_form_id(raw))


@pytest.fixture
def srt(tmp_path_factory, db_url):
    rt = runtime_with(
        tmp_path_factory.mktemp("fuzz"),
        db_url,
        overrides={"subscribe": {"per_address_per_hour": 1000, "per_ip_per_minute": 100000, "per_ip_per_hour": 100000}},
    )
    yield rt
    rt.close()


@SLOW
@given(email=EMAILISH, name=st.one_of(st.none(), NAMEISH), source=ANY_TEXT)
def test_any_sign_up_is_refused_with_a_field_or_stored_and_its_confirmation_sent(srt, email, name, source) -> None:
    outcome = signup(srt, SignupRequest(email=email, name=name, form=source, ip="203.0.113.9"))
    if not outcome.accepted:
        assert outcome.status == "invalid" and outcome.field in ("email", "name") and outcome.message, outcome
        assert "\n" not in outcome.message
        return
    address = normalize_email(email)
    sub = subscriber(srt, address)
    assert sub is not None and sub.status == "pending"
    assume(outcome.queued)  # a repeat within the resend window is accepted without a new mail
    result = drain(srt)
    assert result.failed == 0 and result.deferred == 0, result.errors
    assert any(m for m in outbox_messages(srt) if str(m["To"]).lower() == address), address


@SLOW
@given(
    fields=st.dictionaries(
        st.sampled_from(["email", "name", "source", "next", "website"]),
        st.text(st.characters(codec="utf-8"), max_size=80),
        max_size=5,
    ),
    as_json=st.booleans(),
)
def test_the_form_answers_every_field_combination_without_a_server_error(srt, fields, as_json) -> None:
    c = client(srt)
    r = c.post("/subscribe", json=fields) if as_json else c.post("/subscribe", data=fields, follow_redirects=False)
    assert r.status_code in (200, 303, 400), (r.status_code, r.text[:200])
    if r.status_code == 400 and as_json:
        assert r.json()["field"] in ("email", "name") and r.json()["error"]
