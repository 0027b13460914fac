"""Bad input found in review that answered 500 or stored something broken; each now gets a 4xx and changes nothing."""

from __future__ import annotations

import pytest

from digest.storage.models import Subscriber
from subscribers.addresses import AddressError, clean_name
from tests.support_subscribers import client, counts

JSON = {"content-type": "application/json"}


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


def test_clean_name_refuses_text_that_is_not_unicode() -> None:
    # A non-UTF-8 byte in a CLI argument arrives as a surrogate escape (`digest subscribers add --name`).
    with pytest.raises(AddressError, match="name:"):
        clean_name("Ann \udcff")


@pytest.mark.parametrize("nxt", ["http://[::1", "https://[bad/x"])
def test_unparsable_next_url_is_ignored_not_a_500(rt, nxt) -> None:
    c = client(rt)
    assert c.get("/subscribe", params={"next": nxt}).status_code == 200
    r = c.post("/subscribe", data={"email": "n@example.com", "next": nxt}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/subscribe/thanks"


def _active_reader(rt) -> str:
    from subscribers.tokens import Tokens

    with rt.sessions.begin() as s:
        sub = Subscriber(email="reader@example.com", status="active")
        s.add(sub)
        s.flush()
        return Tokens(rt.secret_key).unsubscribe(sub.id, sub.email)


def test_lone_surrogate_in_an_unsubscribe_reason_is_a_400_and_changes_nothing(rt) -> None:
    token = _active_reader(rt)
    body = b'{"action": "unsubscribe", "reason": "other", "reason_text": "spam \\ud800"}'
    r = client(rt).post(f"/u/{token}", content=body, headers=JSON, follow_redirects=False)
    assert r.status_code == 400
    with rt.sessions() as s:
        sub = s.query(Subscriber).one()
        assert sub.status == "active" and sub.unsubscribe_reason is None


def test_lone_surrogate_in_a_json_field_name_is_a_400(rt) -> None:
    r = client(rt).post("/subscribe", content=b'{"\\ud800": 1, "email": "k@example.com"}', headers=JSON)
    assert r.status_code == 400 and r.json()["ok"] is False


def test_raw_sign_up_statements_raise_sqlalchemy_errors(rt) -> None:
    """The sign-up fast path's retry (IntegrityError) and 503 (DBAPIError) need SQLAlchemy's classes."""
    import pytest as _pytest
    from sqlalchemy.exc import IntegrityError

    from subscribers.rawsql import Raw

    with rt.engine.connect() as conn:
        raw = Raw(conn)
        sql = "INSERT INTO suppressions (email_hash, reason, created_at) VALUES (:h, :r, :t)"
        params = {"h": "x" * 64, "r": "manual", "t": raw.ts(__import__("datetime").datetime.now())}
        raw.run(sql, params)
        with _pytest.raises(IntegrityError):
            raw.run(sql, params)
        raw.close()
        conn.rollback()


def test_transactional_batch_key_changes_with_the_payload() -> None:
    """A re-rendered confirmation (new token) must not reuse the key of the first try (409 would lose it)."""
    from digest.mail import OutgoingEmail
    from subscribers.mail_queue import _batch_key

    def mail(html: str) -> OutgoingEmail:
        return OutgoingEmail(to="a@example.com", subject="Confirm", html=html, text="t", from_addr="x <x@example.com>")

    assert _batch_key([(1, 0, mail("token-1"))]) == _batch_key([(1, 0, mail("token-1"))])
    assert _batch_key([(1, 0, mail("token-1"))]) != _batch_key([(1, 0, mail("token-2"))])
