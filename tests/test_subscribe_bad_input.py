"""Every bad sign-up input gets a clear 4xx, changes nothing it must not, and never a 500."""

from __future__ import annotations

import pytest

from digest.storage.models import Subscriber, SubscriberStatus
from tests.support_subscribers import client, counts, outbox_messages, runtime_with, subscriber

BAD_ADDRESSES = [
    "",
    "   ",
    "not-an-address",
    "two@@example.com",
    "a@b",
    "name <a@example.com>",
    "a@example.com, b@example.com",
    "a" * 250 + "@example.com",  # over-long (254 max)
    "x@" + "d" * 300 + ".com",
    "victim@example.com\r\nBcc: everyone@example.com",  # header injection
    "victim@example.com\nBcc: x@example.com",
    "a@example.com\x00",
    "a@exa mple.com",
]
JSON = {"content-type": "application/json"}


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url, {"subscribe": {"per_ip_per_minute": 3, "per_address_per_hour": 2}})
    yield rt
    rt.close()


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_bad_addresses_are_refused_with_a_message_and_change_nothing(rt, address) -> None:
    c = client(rt)
    before = counts(rt)
    r = c.post("/subscribe", json={"email": address})
    assert r.status_code == 400 and r.json() == {"ok": False, "error": r.json()["error"], "field": "email"}
    assert r.json()["error"]
    page = c.post("/subscribe", data={"email": address})  # the no-JS form shows the page again, with the error
    assert page.status_code == 400 and 'role="status"' in page.text and 'aria-invalid="true"' in page.text
    assert "\r\nBcc" not in page.text
    assert counts(rt) == before


@pytest.mark.parametrize("name", ["Eve\r\nBcc: all@example.com", "Eve\nX-Evil: 1", "n" * 101])
def test_bad_names_are_refused_and_change_nothing(rt, name) -> None:
    before = counts(rt)
    r = client(rt).post("/subscribe", json={"email": "eve@example.com", "name": name})
    assert r.status_code == 400 and r.json()["field"] == "name"
    assert counts(rt) == before


@pytest.mark.parametrize(
    "body,ctype,status",
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"email": ["a@example.com"]}', "application/json", 400),
        (b'{"email": 42}', "application/json", 400),
        (b"\xff\xfe email=a@example.com", "application/x-www-form-urlencoded", 400),
        (b"email=a@example.com", "text/xml", 415),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400),
        (b"email=" + b"a" * 20000 + b"@example.com", "application/x-www-form-urlencoded", 413),
        (b"", "application/json", 400),
    ],
)
def test_malformed_bodies_get_4xx_and_change_nothing(rt, body, ctype, status) -> None:
    before = counts(rt)
    r = client(rt).post("/subscribe", content=body, headers={"Content-Type": ctype, "Accept": "application/json"})
    assert r.status_code == status, r.text
    assert counts(rt) == before


def test_filled_honeypot_looks_accepted_but_stores_and_sends_nothing(rt) -> None:
    c = client(rt)
    before = counts(rt)
    r = c.post("/subscribe", json={"email": "bot@example.com", "website": "http://spam.example"})
    normal = c.post("/subscribe", json={"email": "human@example.com"})
    assert r.status_code == 200 and r.json() == normal.json()
    form = c.post("/subscribe", data={"email": "bot2@example.com", "website": "x"}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"] == "/subscribe/thanks"
    assert subscriber(rt, "bot@example.com") is None and subscriber(rt, "bot2@example.com") is None
    after = counts(rt)
    assert after["subscribers"] == before["subscribers"] + 1  # only the human


def test_per_ip_limit_answers_429_with_retry_after_and_changes_nothing(srt) -> None:
    c = client(srt)
    for i in range(3):
        assert c.post("/subscribe", json={"email": f"ip{i}@example.com"}).status_code == 200
    before = counts(srt)
    r = c.post("/subscribe", json={"email": "ip3@example.com"})
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.json()["ok"] is False and r.json()["retry_after"] == int(r.headers["Retry-After"])
    page = c.post("/subscribe", data={"email": "ip3@example.com"})
    assert page.status_code == 429 and "Retry-After" in page.headers and "Too many" in page.text
    assert counts(srt) == before and subscriber(srt, "ip3@example.com") is None


def test_per_address_limit_is_shared_by_every_client(srt) -> None:
    from fastapi.testclient import TestClient

    from digest.web.app import create_app

    # Two separate apps (as two worker processes would be) over the same database.
    a = client(srt)
    b = TestClient(create_app(srt), client=("10.0.0.2", 5000))
    assert a.post("/subscribe", json={"email": "target@example.com"}).status_code == 200
    assert b.post("/subscribe", json={"email": "target@example.com"}).status_code == 200
    before = counts(srt)
    r = TestClient(create_app(srt), client=("10.0.0.3", 5000)).post("/subscribe", json={"email": "Target@example.com"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 60  # the hour window
    assert counts(srt) == before


def test_no_500_for_any_bad_input_and_nothing_sent(rt) -> None:
    c = client(rt)
    weird = [
        {"email": "a@example.com", "name": None},
        {"email": "a@example.com", "source": "<script>alert(1)</script>" * 10},
        {"email": "a@example.com", "next": "x" * 5000},
        {},
        {"name": "only a name"},
    ]
    for body in weird:
        r = c.post("/subscribe", json=body)
        assert r.status_code < 500, body
    assert c.get("/subscribe?next=javascript:alert(1)").status_code == 200
    assert all(m["To"] != "" for m in outbox_messages(rt))
    sub = subscriber(rt, "a@example.com")
    assert sub is not None and sub.status == SubscriberStatus.PENDING
    assert "<script>" not in (sub.consent_source or "")


def test_a_database_outage_answers_503_not_500(rt, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    import digest.web.signup

    def down(*_args):
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(digest.web.signup, "signup", down)
    r = client(rt).post("/subscribe", json={"email": "a@example.com"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "30" and r.json()["ok"] is False


def test_deeply_nested_json_signup_is_a_400_not_a_500(rt) -> None:
    before = counts(rt)
    r = client(rt).post("/subscribe", content=b"[" * 16000, headers=JSON)
    assert r.status_code == 400 and r.json()["ok"] is False
    assert counts(rt) == before


@pytest.mark.parametrize("field", ["email", "name"])
def test_lone_surrogate_in_a_json_signup_is_a_400_and_changes_nothing(rt, field) -> None:
    # "\ud800" is valid JSON but no valid text: PostgreSQL cannot store it (500), SQLite stored it as is.
    fields = {"email": '"a@example.com"', "name": '"Ann"'}
    fields[field] = '"x\\ud800"' if field == "name" else '"a\\ud800@example.com"'
    body = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
    before = counts(rt)
    r = client(rt).post("/subscribe", content=body.encode("ascii"), headers=JSON)
    assert r.status_code == 400 and r.json()["ok"] is False
    assert counts(rt) == before
    with rt.sessions() as s:
        assert s.query(Subscriber).count() == 0


def test_lone_surrogate_in_a_json_field_name_is_a_400(rt) -> None:
    r = client(rt).post("/subscribe", content=b'{"\\ud800": 1, "email": "k@example.com"}', headers=JSON)
    assert r.status_code == 400 and r.json()["ok"] is False


@pytest.mark.parametrize("nxt", ["http://[::1", "https://[bad/x"])
def test_unparsable_next_url_is_ignored_not_a_500(rt, nxt) -> None:
    c = client(rt)
    assert c.get("/subscribe", params={"next": nxt}).status_code == 200
    r = c.post("/subscribe", data={"email": "n@example.com", "next": nxt}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/subscribe/thanks"
