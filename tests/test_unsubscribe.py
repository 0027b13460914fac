"""Unsubscribe: RFC 8058 one-click, the page (confirm, reason, resubscribe), forged tokens, mailto."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from digest.links import Tokens, personal_links
from digest.storage.models import Event, Subscriber, SubscriberStatus
from subscribers.api import add_subscriber
from subscribers.mailto import process_unsubscribe_mail
from tests.support_subscribers import (
    client,
    counts,
    issue_copy,
    path_of,
    runtime_with,
    seed_comparisons,
    send_issue,
    subscriber,
    unsubscribe_url,
)

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W47
NEXT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # 2026-W48


@pytest.fixture
def sent(tmp_path, db_url):
    """Two active readers who got the 2026-W47 issue; yields (rt, issue_id)."""
    rt = runtime_with(tmp_path / "p", db_url)
    seed_comparisons(rt, NOW.replace(day=17))
    with rt.sessions.begin() as s:
        add_subscriber(s, "reader@example.com", name="Reader", confirmed=True)
        add_subscriber(s, "other@example.com", confirmed=True)
    issue_id = send_issue(rt, "2026-W47", NOW)
    yield rt, issue_id
    rt.close()


def _events(rt, kind: str) -> list[Event]:
    with rt.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


@pytest.mark.parametrize("style", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_before_answering_200_without_redirect(sent, style) -> None:
    rt, issue_id = sent
    url = unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com"))
    c = client(rt)
    if style == "urlencoded":
        r = c.post(
            path_of(url),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
    else:
        r = c.post(path_of(url), files={"List-Unsubscribe": (None, "One-Click")}, follow_redirects=False)
    assert r.status_code == 200 and "location" not in r.headers and "set-cookie" not in r.headers
    assert "You’re unsubscribed" in r.text
    sub = subscriber(rt, "reader@example.com")
    assert sub.status == SubscriberStatus.UNSUBSCRIBED and sub.unsubscribed_at is not None
    [event] = _events(rt, "unsubscribed")
    assert event.issue_id == issue_id and event.subscriber_id == sub.id and event.detail == {"method": "one-click"}
    assert subscriber(rt, "other@example.com").status == SubscriberStatus.ACTIVE
    again = c.post(path_of(url), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200 and len(_events(rt, "unsubscribed")) == 1  # repeat: no second event


def test_the_issue_after_an_unsubscribe_does_not_go_to_the_reader(sent) -> None:
    rt, _ = sent
    url = unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com"))
    client(rt).post(path_of(url), data={"List-Unsubscribe": "One-Click"})
    seed_comparisons(rt, NEXT.replace(day=24), tag="II")
    send_issue(rt, "2026-W48", NEXT)
    assert issue_copy(rt, "2026-W48", "other@example.com") is not None
    assert issue_copy(rt, "2026-W48", "reader@example.com") is None


def test_get_shows_a_page_and_changes_nothing(sent) -> None:
    rt, _ = sent
    url = unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com"))
    c = client(rt)
    before = counts(rt)
    r = c.get(path_of(url))
    assert r.status_code == 200 and "Unsubscribe from" in r.text and "r•••@example.com" in r.text
    assert "reader@example.com" not in r.text
    # The token never leaves in a Referer (strict-origin sends the origin alone), and the page's own
    # buttons name the site's origin, which the POST checks.
    assert r.headers["Referrer-Policy"] == "strict-origin" and r.headers["Cache-Control"] == "no-store"
    manage = c.get(path_of(url) + "?manage=1")
    assert manage.status_code == 200 and "Your subscription" in manage.text
    assert counts(rt) == before and subscriber(rt, "reader@example.com").status == SubscriberStatus.ACTIVE


def test_page_unsubscribe_with_reason_then_resubscribe(sent) -> None:
    rt, issue_id = sent
    path = path_of(unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com")))
    c = client(rt)
    r = c.post(
        path,
        data={"action": "unsubscribe", "reason": "too_many", "reason_text": "Weekly is\r\n a lot"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"{path}?done=unsubscribed"
    page = c.get(r.headers["location"])
    assert "You’re unsubscribed" in page.text and "Resubscribe" in page.text
    sub = subscriber(rt, "reader@example.com")
    assert sub.status == SubscriberStatus.UNSUBSCRIBED and sub.unsubscribe_reason == "Too many emails: Weekly is a lot"
    assert [e.detail for e in _events(rt, "unsubscribe_reason")] == [{"reason": "too_many"}]
    assert _events(rt, "unsubscribed")[0].detail == {"method": "page"}
    r = c.post(path, data={"action": "resubscribe"})
    assert r.status_code == 200 and "Welcome back" in r.text
    sub = subscriber(rt, "reader@example.com")
    assert sub.status == SubscriberStatus.ACTIVE and sub.unsubscribe_reason is None
    assert [e.issue_id for e in _events(rt, "resubscribed")] == [issue_id]


def test_reason_can_be_given_after_one_click(sent) -> None:
    rt, _ = sent
    path = path_of(unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com")))
    c = client(rt)
    c.post(path, data={"List-Unsubscribe": "One-Click"})
    assert "Why are you leaving?" in c.get(path).text
    r = c.post(path, data={"action": "reason", "reason": "not_relevant"})
    assert r.status_code == 200 and "Thanks for telling us" in r.text
    assert subscriber(rt, "reader@example.com").unsubscribe_reason == "The content is not relevant to me"


def test_forged_and_garbled_tokens_get_a_plain_400_and_change_nothing(sent) -> None:
    rt, issue_id = sent
    c = client(rt)
    real = path_of(unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com"))).rsplit("/", 1)[1]
    sid = subscriber(rt, "reader@example.com").id
    forged = [
        "garbage",
        real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB"),
        real[:20],
        Tokens("not-our-secret").unsubscribe(sid, "reader@example.com", issue_id),
        "x" * 1000,
        "%00%0d%0a",
    ]
    before = counts(rt)
    for token in forged:
        for r in (c.get(f"/u/{token}"), c.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})):
            assert r.status_code == 400 and r.text == "This link is not valid.\n", token
            assert "reader" not in r.text and "location" not in r.headers
    assert counts(rt) == before and subscriber(rt, "reader@example.com").status == SubscriberStatus.ACTIVE


def test_unknown_post_body_is_refused_and_changes_nothing(sent) -> None:
    rt, _ = sent
    path = path_of(unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com")))
    c = client(rt)
    before = counts(rt)
    for kwargs in (
        {"data": {"action": "delete-everything"}},
        {"data": {}},
        {"content": b"\xff\xfe", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"content": b"<x/>", "headers": {"Content-Type": "text/xml"}},
    ):
        r = c.post(path, **kwargs)
        assert 400 <= r.status_code < 500
    assert counts(rt) == before and subscriber(rt, "reader@example.com").status == SubscriberStatus.ACTIVE


def test_token_of_an_erased_person_reveals_nothing(sent) -> None:
    from subscribers.erasure import forget

    rt, _ = sent
    path = path_of(unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com")))
    forget(rt, "reader@example.com")
    c = client(rt)
    page = c.get(path)
    assert page.status_code == 200 and "not on our list" in page.text and "@example.com" not in page.text
    assert c.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_mailto_unsubscribe_by_token_only(sent) -> None:
    rt, issue_id = sent
    msg = issue_copy(rt, "2026-W47", "reader@example.com")
    mailto = str(msg["List-Unsubscribe"]).split("<mailto:", 1)[1].rstrip(">")
    subject = mailto.split("?subject=", 1)[1].replace("%20", " ")
    raw = f"From: Someone <x@elsewhere.example>\r\nTo: unsubscribe@example.com\r\nSubject: {subject}\r\n\r\n\r\n"
    outcome = process_unsubscribe_mail(rt, raw.encode())
    assert outcome.changed and subscriber(rt, "reader@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert _events(rt, "unsubscribed")[0].issue_id == issue_id
    before = counts(rt)
    by_from = b"From: Other <OTHER@example.com>\r\nSubject: unsubscribe\r\n\r\nplease\r\n"
    for junk in (
        by_from,
        b"",
        b"\x00\xff garbage",
        b"From: nobody@nowhere.example\r\nSubject: unsubscribe abcdefghijklmnop\r\n\r\n",
    ):
        assert not process_unsubscribe_mail(rt, junk).changed
    assert counts(rt) == before and subscriber(rt, "other@example.com").status == SubscriberStatus.ACTIVE


def test_personal_links_keep_their_shape(rt) -> None:
    links = personal_links(rt.settings, Tokens(rt.secret_key), 7, "a@example.com", 3, "2026-W47")
    assert links["unsubscribe_url"] == f"{rt.settings.site.public_url}/u/{links['token']}"
    assert links["manage_url"] == f"{rt.settings.site.public_url}/preferences/{links['token']}"
    with rt.sessions.begin() as s:
        s.add(Subscriber(id=7, email="a@example.com", status=SubscriberStatus.ACTIVE))
    assert client(rt).get(path_of(links["manage_url"])).status_code == 200


def test_lone_surrogate_in_an_unsubscribe_reason_is_a_400_and_changes_nothing(rt) -> None:
    with rt.sessions.begin() as s:
        sub = Subscriber(email="reader@example.com", status=SubscriberStatus.ACTIVE)
        s.add(sub)
        s.flush()
        token = Tokens(rt.secret_key).unsubscribe(sub.id, sub.email)
    body = b'{"action": "unsubscribe", "reason": "other", "reason_text": "spam \\ud800"}'
    r = client(rt).post(
        f"/u/{token}", content=body, headers={"content-type": "application/json"}, follow_redirects=False
    )
    assert r.status_code == 400
    with rt.sessions() as s:
        sub = s.query(Subscriber).one()
        assert sub.status == SubscriberStatus.ACTIVE and sub.unsubscribe_reason is None


def test_a_post_from_a_foreign_page_is_refused_and_changes_nothing(sent) -> None:
    """A page on another site that learnt a reader's link cannot make their browser unsubscribe them."""
    rt, _ = sent
    path = path_of(unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com")))
    c = client(rt)
    before = counts(rt)
    for origin in ("https://evil.example", "http://127.0.0.1:8001", "http://127.0.0.1:8000.evil.example"):
        for data in ({"List-Unsubscribe": "One-Click"}, {"action": "unsubscribe"}, {"action": "monthly"}):
            r = c.post(path, data=data, headers={"Origin": origin}, follow_redirects=False)
            assert r.status_code == 403 and "another site" in r.text and "nothing was changed" in r.text, origin
            assert "location" not in r.headers and len(r.text) < 200
    assert counts(rt) == before and subscriber(rt, "reader@example.com").status == SubscriberStatus.ACTIVE


def test_one_click_without_origin_and_the_sites_own_page_still_work(sent) -> None:
    """RFC 8058: the mail client's POST has no Origin and no cookies; the site's own page names its origin,
    (it is served with Referrer-Policy: strict-origin, so a browser names it)."""
    rt, _ = sent
    path = path_of(unsubscribe_url(issue_copy(rt, "2026-W47", "reader@example.com")))
    c = client(rt)
    r = c.post(path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert r.status_code == 200 and "location" not in r.headers and "set-cookie" not in r.headers
    assert subscriber(rt, "reader@example.com").status == SubscriberStatus.UNSUBSCRIBED
    own = rt.settings.site.public_url.rstrip("/")
    r = c.post(path, data={"action": "resubscribe"}, headers={"Origin": own}, follow_redirects=False)
    assert r.status_code == 303 and subscriber(rt, "reader@example.com").status == SubscriberStatus.ACTIVE
    r = c.post(path, data={"List-Unsubscribe": "One-Click"}, headers={"Origin": "null"}, follow_redirects=False)
    assert (
        r.status_code == 403 and subscriber(rt, "reader@example.com").status == SubscriberStatus.ACTIVE
    )  # a sandboxed frame
    r = c.post(path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert r.status_code == 200 and subscriber(rt, "reader@example.com").status == SubscriberStatus.UNSUBSCRIBED
