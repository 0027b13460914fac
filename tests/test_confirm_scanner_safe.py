"""Double opt-in is a deliberate act: opening the confirmation link (as a link scanner does)
changes nothing; only the form on that page, posted by the person, confirms."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from digest.delivery.mail_queue import drain
from digest.storage.models import Event, Subscriber, SubscriberStatus
from tests.support_subscribers import client, counts, link_in, outbox_messages, path_of, runtime_with, subscriber


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def _confirm_path(rt, c, address: str) -> str:
    c.post("/subscribe", json={"email": address})
    drain(rt)
    return path_of(link_in(outbox_messages(rt, to=address)[-1], "/confirm/"))


def _kinds(rt) -> list[str]:
    with rt.sessions() as s:
        return [k for (k,) in s.execute(select(Event.kind).order_by(Event.id))]


def test_opening_the_confirm_link_changes_nothing_and_shows_a_confirm_button(srt) -> None:
    c = client(srt)
    path = _confirm_path(srt, c, "scan@example.com")
    before = counts(srt)
    for _ in range(3):  # a scanner may open it several times, and HEAD it too
        page = c.get(path)
        assert page.status_code == 200
        assert c.head(path).status_code in (200, 405)
    assert subscriber(srt, "scan@example.com").status == SubscriberStatus.PENDING
    assert counts(srt) == before and _kinds(srt) == ["subscribed"]
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', page.text, re.S)
    assert form, page.text
    assert form.group(1) == path and "Confirm my subscription" in form.group(2)
    assert page.headers["Cache-Control"] == "no-store" and page.headers["Referrer-Policy"] == "no-referrer"


def test_posting_the_confirm_form_activates_once_and_queues_the_welcome(srt) -> None:
    c = client(srt)
    path = _confirm_path(srt, c, "yes@example.com")
    r = c.post(path, follow_redirects=False)  # what the button submits (no JavaScript involved)
    assert r.status_code == 200 and "You’re in!" in r.text
    assert r.headers["Cache-Control"] == "no-store"
    sub = subscriber(srt, "yes@example.com")
    assert sub.status == SubscriberStatus.ACTIVE and sub.confirmed_at is not None
    assert drain(srt).sent == 1
    assert "Welcome" in outbox_messages(srt, to="yes@example.com")[-1]["Subject"]
    again = c.post(path)
    assert again.status_code == 200 and "already subscribed" in again.text
    opened = c.get(path)
    assert opened.status_code == 200 and "already subscribed" in opened.text and "<form" not in opened.text
    assert _kinds(srt) == ["subscribed", "confirmed"]


def test_a_forged_confirm_post_changes_nothing(srt) -> None:
    c = client(srt)
    _confirm_path(srt, c, "f@example.com")
    before = counts(srt)
    for bad in ("garbage", "x" * 400, "WzEsImFiYyJd.ZxY.sig"):
        assert c.post(f"/confirm/{bad}").status_code == 400
    assert counts(srt) == before and subscriber(srt, "f@example.com").status == SubscriberStatus.PENDING


def test_invalid_expired_or_stale_links_explain_and_offer_a_new_confirmation(srt, monkeypatch) -> None:
    import itsdangerous.timed

    from digest.links import Tokens

    c = client(srt)
    path = _confirm_path(srt, c, "late@example.com")
    sid = subscriber(srt, "late@example.com").id
    real = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() - 8 * 86400)
    expired = Tokens(srt.secret_key).confirm(sid, "late@example.com")
    monkeypatch.undo()
    before = counts(srt)
    pages = {
        "expired": c.get(f"/confirm/{expired}"),
        "forged": c.get("/confirm/garbage"),
        "too long": c.get("/confirm/" + "x" * 400),
    }
    for what, page in pages.items():
        assert page.status_code == 400, what
        assert 'action="/subscribe"' in page.text and 'name="email"' in page.text, what
        assert "new confirmation" in page.text.lower(), what
        assert "Confirm my subscription" not in page.text, what
    assert "expired" in pages["expired"].text
    with srt.sessions.begin() as s:  # left the list since the link was sent
        s.get(Subscriber, sid).status = SubscriberStatus.UNSUBSCRIBED
    stale = c.get(path)
    assert stale.status_code == 400 and 'action="/subscribe"' in stale.text
    assert c.post(path).status_code == 400
    assert subscriber(srt, "late@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert counts(srt)["subscribers"] == before["subscribers"]
    # The offered form gets the same neutral answer as any sign-up.
    r = c.post("/subscribe", data={"email": "late@example.com", "source": "confirm-expired"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/subscribe/thanks"


def test_a_double_click_on_the_button_confirms_once(srt) -> None:
    import threading

    from digest.storage.models import ConsentRecord, OutgoingMail
    from subscribers import lifecycle

    c = client(srt)
    token = _confirm_path(srt, c, "double@example.com").rsplit("/", 1)[1]
    barrier = threading.Barrier(6)
    states: list[str] = []

    def press() -> None:
        barrier.wait()
        states.append(lifecycle.confirm(srt, token).state)

    threads = [threading.Thread(target=press) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(states) == ["already"] * 5 + ["confirmed"]
    with srt.sessions() as s:
        assert len(s.scalars(select(OutgoingMail).where(OutgoingMail.kind == "welcome")).all()) == 1
        assert len(s.scalars(select(ConsentRecord).where(ConsentRecord.kind == "confirmed")).all()) == 1
