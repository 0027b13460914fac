"""Sign-up: API, hosted form, no-JS redirects, double opt-in, and that the answer reveals nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from digest.delivery.mail_queue import drain
from digest.storage.models import Event, MailStatus, OutgoingMail, Subscriber, SubscriberStatus
from digest.weeks import utcnow
from subscribers.erasure import forget
from subscribers.lifecycle import suppress
from tests.support_subscribers import client, counts, link_in, outbox_messages, path_of, runtime_with, subscriber

ORIGIN = "http://localhost:8000"  # in the default allowed_origins


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def test_json_signup_creates_pending_subscriber_with_consent_and_queues_confirmation(srt) -> None:
    c = client(srt)
    r = c.post(
        "/subscribe",
        json={"email": "Reader@Example.COM", "name": "Ann Reader", "source": "homepage"},
        headers={"Origin": ORIGIN, "Referer": f"{ORIGIN}/compare/x?utm=abc", "User-Agent": "UA/1.0"},
    )
    assert r.status_code == 200 and r.json()["ok"] is True
    sub = subscriber(srt, "reader@example.com")
    assert sub is not None and sub.status == SubscriberStatus.PENDING and sub.name == "Ann Reader"
    assert sub.consent_at is not None and sub.consent_ip == "testclient" and sub.consent_user_agent == "UA/1.0"
    assert sub.consent_source == f"web:homepage on {ORIGIN}/compare/x"  # no query string kept
    with srt.sessions() as s:
        mails = s.execute(select(OutgoingMail.kind, OutgoingMail.status)).all()
    assert mails == [("confirm", MailStatus.QUEUED)]  # queued in the request, not sent
    assert outbox_messages(srt) == []


def test_form_post_redirects_303_to_thanks_and_to_a_safe_next_only(srt) -> None:
    c = client(srt)
    r = c.post("/subscribe", data={"email": "a@example.com"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/subscribe/thanks"
    r = c.post("/subscribe", data={"email": "b@example.com", "next": f"{ORIGIN}/thanks?x=1"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"{ORIGIN}/thanks?x=1"
    for evil in (
        "https://evil.example/phish",
        "//evil.example/x",
        "javascript:alert(1)",
        f"{ORIGIN}@evil.example/",
        "http://localhost:8000\r\nSet-Cookie: x=1",
        "/\\evil.example",
    ):
        r = c.post("/subscribe", data={"email": f"c{len(evil)}@example.com", "next": evil}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/subscribe/thanks", evil
    r = c.post("/subscribe", data={"email": "d@example.com", "next": "/archive"}, follow_redirects=False)
    assert r.headers["location"] == "/archive"
    thanks = c.get("/subscribe/thanks")
    assert thanks.status_code == 200 and "Check your inbox" in thanks.text


def test_multipart_signup_is_accepted(srt) -> None:
    r = client(srt).post(
        "/subscribe",
        files={"email": (None, "m@example.com"), "name": (None, "M")},
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200 and r.json()["ok"]
    assert subscriber(srt, "m@example.com").status == SubscriberStatus.PENDING


def _answer(c, address: str):
    r = c.post("/subscribe", json={"email": address}, headers={"Origin": ORIGIN})
    return r.status_code, r.text, sorted((k, v) for k, v in r.headers.items() if k not in ("date", "content-length"))


def test_answer_is_identical_for_new_pending_active_unsubscribed_and_suppressed(srt) -> None:
    c = client(srt)
    first = _answer(c, "new@example.com")  # new
    assert _answer(c, "new@example.com") == first  # pending now
    with srt.sessions.begin() as s:
        s.add(Subscriber(email="active@example.com", status=SubscriberStatus.ACTIVE))
        s.add(Subscriber(email="gone@example.com", status=SubscriberStatus.UNSUBSCRIBED))
        suppress(s, "bounced@example.com", "hard_bounce")
    assert _answer(c, "active@example.com") == first
    assert _answer(c, "gone@example.com") == first
    assert _answer(c, "bounced@example.com") == first
    assert subscriber(srt, "active@example.com").status == SubscriberStatus.ACTIVE  # untouched
    assert subscriber(srt, "bounced@example.com") is None  # suppressed: never created


def test_a_confirmation_over_the_mailboxs_daily_budget_gets_the_same_answer_and_sends_nothing(srt) -> None:
    c = client(srt)
    first = _answer(c, "sam+1@example.com")
    assert _answer(c, "sam+2@example.com") == first and _answer(c, "Sam+3@example.com") == first
    with srt.sessions() as s:
        assert len(s.scalars(select(OutgoingMail.id)).all()) == 3
    assert _answer(c, "sam+4@example.com") == first  # the mailbox had its three today: silently nothing
    form = c.post("/subscribe", data={"email": "sam@example.com"}, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert form.status_code == 303 and form.headers["location"] == "/subscribe/thanks"
    with srt.sessions() as s:
        assert len(s.scalars(select(OutgoingMail.id)).all()) == 3
    assert subscriber(srt, "sam+4@example.com") is None and subscriber(srt, "sam@example.com") is None


def test_pending_resend_at_most_once_per_window_and_unsubscribed_must_confirm_again(srt) -> None:
    c = client(srt)
    c.post("/subscribe", json={"email": "p@example.com"})
    c.post("/subscribe", json={"email": "p@example.com"})
    with srt.sessions() as s:
        assert s.scalar(select(OutgoingMail.id).where(OutgoingMail.id > 1)) is None  # still one confirmation
    with srt.sessions.begin() as s:  # eleven minutes later
        s.execute(update(Subscriber).values(confirmation_sent_at=utcnow() - timedelta(minutes=11)))
    c.post("/subscribe", json={"email": "p@example.com"})
    with srt.sessions() as s:
        assert len(s.scalars(select(OutgoingMail.id)).all()) == 2
        s.execute(update(Subscriber).values(status=SubscriberStatus.UNSUBSCRIBED, confirmation_sent_at=None))
        s.commit()
    c.post("/subscribe", json={"email": "p@example.com"})
    sub = subscriber(srt, "p@example.com")
    assert sub.status == SubscriberStatus.PENDING  # goes through confirmation again, gets no issue meanwhile
    with srt.sessions() as s:
        assert len(s.scalars(select(OutgoingMail.id)).all()) == 3


def test_confirm_link_activates_sends_welcome_and_is_safe_to_open_twice(srt) -> None:
    c = client(srt)
    c.post("/subscribe", json={"email": "c@example.com", "name": "Cee"})
    assert drain(srt).sent == 1
    [confirm_mail] = outbox_messages(srt, to="c@example.com")
    assert confirm_mail["List-Unsubscribe"] is None  # not a list mail yet
    url = link_in(confirm_mail, "/confirm/")
    assert (
        c.get(path_of(url)).status_code == 200 and subscriber(srt, "c@example.com").status == SubscriberStatus.PENDING
    )
    r = c.post(path_of(url))  # the page's "Confirm my subscription" button
    assert r.status_code == 200 and "You’re in!" in r.text
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Referrer-Policy"] == "no-referrer"
    sub = subscriber(srt, "c@example.com")
    assert sub.status == SubscriberStatus.ACTIVE and sub.confirmed_at is not None
    assert drain(srt).sent == 1
    welcome = outbox_messages(srt, to="c@example.com")[-1]
    assert "Welcome" in welcome["Subject"] and welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    again = c.post(path_of(url))
    assert again.status_code == 200 and "already subscribed" in again.text
    with srt.sessions() as s:
        assert [k for (k,) in s.execute(select(Event.kind).order_by(Event.id))] == ["subscribed", "confirmed"]


def test_expired_and_forged_confirm_links(srt, monkeypatch) -> None:
    from digest.links import Tokens

    c = client(srt)
    c.post("/subscribe", json={"email": "e@example.com"})
    sid = subscriber(srt, "e@example.com").id
    import itsdangerous.timed

    real = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() - 8 * 86400)
    old = Tokens(srt.secret_key).confirm(sid, "e@example.com")
    monkeypatch.undo()
    before = counts(srt)
    r = c.get(f"/confirm/{old}")
    assert r.status_code == 400 and "expired" in r.text and "<form" in r.text
    assert c.post(f"/confirm/{old}").status_code == 400
    for bad in ("garbage", old[:-3] + "abc", Tokens("another-secret-key").confirm(sid, "e@example.com"), "x" * 400):
        for r in (c.get(f"/confirm/{bad}"), c.post(f"/confirm/{bad}")):
            assert r.status_code == 400 and "This link doesn’t work" in r.text and 'action="/subscribe"' in r.text
    assert subscriber(srt, "e@example.com").status == SubscriberStatus.PENDING and counts(srt) == before


def test_drainer_skips_confirmations_no_longer_wanted(srt) -> None:
    c = client(srt)
    c.post("/subscribe", json={"email": "s@example.com"})
    with srt.sessions.begin() as s:
        s.execute(update(Subscriber).values(status=SubscriberStatus.ACTIVE))
    result = drain(srt)
    assert result.sent == 0 and result.skipped == 1
    with srt.sessions() as s:
        assert s.scalar(select(OutgoingMail.status)) == MailStatus.SKIPPED


def test_forgotten_person_may_come_back_through_double_opt_in(srt) -> None:
    c = client(srt)
    c.post("/subscribe", json={"email": "f@example.com"})
    forget(srt, "f@example.com")
    assert subscriber(srt, "f@example.com") is None
    c.post("/subscribe", json={"email": "f@example.com"})
    assert subscriber(srt, "f@example.com").status == SubscriberStatus.PENDING
    drain(srt)
    c.post(path_of(link_in(outbox_messages(srt, to="f@example.com")[-1], "/confirm/")))
    assert subscriber(srt, "f@example.com").status == SubscriberStatus.ACTIVE
    from subscribers.api import is_suppressed

    with srt.sessions() as s:
        assert not is_suppressed(s, "f@example.com")


def test_cors_preflight_only_for_allowed_origins_and_foreign_origin_posts_refused(srt) -> None:
    c = client(srt)
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = c.options("/subscribe", headers={"Origin": ORIGIN, **pre})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in ok.headers
    bad = c.options("/subscribe", headers={"Origin": "https://evil.example", **pre})
    assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers
    before = counts(srt)
    r = c.post("/subscribe", data={"email": "x@example.com"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert counts(srt) == before


def test_pages_render_with_security_headers(srt) -> None:
    c = client(srt)
    page = c.get("/subscribe")
    assert page.status_code == 200 and 'name="website"' in page.text and 'type="email"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    embed = c.get("/embed")
    assert (
        embed.status_code == 200
        and "frame-ancestors 'self' http://127.0.0.1:8000 http://localhost:8000"
        in embed.headers["content-security-policy"]
    )
    assert "x-frame-options" not in embed.headers
    js = c.get("/embed.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("application/javascript")
    assert "attachShadow" in js.text


def test_confirmation_queue_is_drained_by_the_app_within_seconds(srt) -> None:
    import time

    from digest.web.app import create_app
    from tests.support_subscribers import TestClient

    with TestClient(create_app(srt)) as c:  # runs the lifespan: the drainer thread starts
        c.post("/subscribe", json={"email": "quick@example.com"})
        deadline = time.monotonic() + 10
        while not outbox_messages(srt, to="quick@example.com") and time.monotonic() < deadline:
            time.sleep(0.05)
    assert outbox_messages(srt, to="quick@example.com")
    with srt.sessions() as s:
        assert s.scalar(select(OutgoingMail.status)) == MailStatus.SENT


class _FlakyTransport:
    """Fails the first `failures` calls with a transient error, then accepts everything."""

    name = "flaky"

    def __init__(self, failures: int):
        self.failures = failures
        self.sent: list[str] = []

    def send_batch(self, emails, idempotency_key, folder):  # type: ignore[no-untyped-def]
        from digest.delivery.transports.base import SendResult, TransientError

        if self.failures:
            self.failures -= 1
            raise TransientError("503 from provider")
        self.sent += [e.to for e in emails]
        return [SendResult(ok=True, provider_id=f"x{i}") for i, _ in enumerate(emails)]

    def close(self) -> None:
        pass


def test_transport_trouble_defers_the_mail_and_it_goes_out_once_later(srt) -> None:
    client(srt).post("/subscribe", json={"email": "later@example.com"})
    flaky = _FlakyTransport(failures=1)
    first = drain(srt, flaky)
    assert first.deferred == 1 and first.sent == 0 and flaky.sent == []
    with srt.sessions() as s:
        row = s.scalar(select(OutgoingMail))
        assert row.status == MailStatus.QUEUED and row.attempts == 1 and row.claimed_until is not None
    assert drain(srt, flaky).handled == 0  # backing off: not retried at once
    with srt.sessions.begin() as s:
        s.execute(update(OutgoingMail).values(claimed_until=utcnow() - timedelta(seconds=1)))
    assert drain(srt, flaky).sent == 1 and flaky.sent == ["later@example.com"]
    assert drain(srt, flaky).handled == 0 and flaky.sent == ["later@example.com"]
