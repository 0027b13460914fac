"""The hosted form, the iframe embed, embed.js and the JSON API can offer topics; they count once confirmed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from digest.links import Tokens
from digest.storage.models import Event, Subscriber
from digest.weeks import utcnow
from tests.support_editions import add_reader, seed_categories
from tests.support_subscribers import client, subscriber


def confirm(rt, web, email: str) -> None:
    sub = subscriber(rt, email)
    assert sub is not None
    answer = web.post(f"/confirm/{Tokens(rt.secret_key).confirm(sub.id, email)}")
    assert answer.status_code == 200, answer.text


def test_topics_ticked_on_the_hosted_form_apply_when_the_person_confirms(rt) -> None:
    seed_categories(rt, published=utcnow() - timedelta(days=1))
    web = client(rt)
    page = web.get("/subscribe").text
    assert 'name="topic" value="open-models"> <span>Open Models</span>' in page
    answer = web.post(
        "/subscribe",
        data={"email": "robin@example.com", "topic": ["open-models", "image-generation"]},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    pending = subscriber(rt, "robin@example.com")
    assert pending is not None and pending.topics == ""  # not before the owner confirms
    confirm(rt, web, "robin@example.com")
    sub = subscriber(rt, "robin@example.com")
    assert sub is not None and sub.status == "active" and sub.topics == "image-generation+open-models"
    with rt.sessions() as s:
        by = s.scalar(select(Event.detail["by"].as_string()).where(Event.kind == "preferences"))
    assert by == "reader: sign-up form"


def test_the_json_api_takes_topics_and_refuses_a_malformed_one(rt) -> None:
    seed_categories(rt, published=utcnow() - timedelta(days=1))
    web = client(rt)
    bad = web.post("/subscribe", json={"email": "x@example.com", "topics": "open-models+<script>"})
    assert bad.status_code == 400 and bad.json()["field"] == "topics" and "is not a topic" in bad.json()["error"]
    assert subscriber(rt, "x@example.com") is None
    form_bad = web.post("/subscribe", data={"email": "y@example.com", "topic": "Nope Nope"})
    assert form_bad.status_code == 400 and "is not a topic" in form_bad.text
    ok = web.post("/subscribe", json={"email": "z@example.com", "topics": "open-models+no-longer-offered"})
    assert ok.status_code == 200
    confirm(rt, web, "z@example.com")
    sub = subscriber(rt, "z@example.com")
    assert sub is not None and sub.topics == "open-models"  # one no longer offered is dropped


def test_a_strangers_sign_up_never_changes_an_active_readers_topics(rt) -> None:
    seed_categories(rt, published=utcnow() - timedelta(days=1))
    add_reader(rt, "owner@example.com", topics="developer-tools")
    web = client(rt)
    assert web.post("/subscribe", json={"email": "owner@example.com", "topics": "open-models"}).status_code == 200
    sub = subscriber(rt, "owner@example.com")
    assert sub is not None and sub.topics == "developer-tools"
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.kind == "preferences")) == 0
        assert s.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_the_embed_offers_topics_when_asked(rt) -> None:
    seed_categories(rt, published=utcnow() - timedelta(days=1))
    web = client(rt)
    assert 'name="topic"' not in web.get("/embed").text
    assert 'name="topic" value="developer-tools"' in web.get("/embed?topics=1").text
    listed = web.get("/embed/topics").json()["topics"]
    assert listed == [
        {"key": "developer-tools", "name": "Developer Tools"},
        {"key": "image-generation", "name": "Image Generation"},
        {"key": "open-models", "name": "Open Models"},
    ]


def test_a_second_sign_up_before_confirming_sets_the_topics_applied_at_confirmation(rt) -> None:
    """The latest choice counts (applied when the owner confirms), the answer is the same as for a new
    address, no second confirmation goes out moments after the first, and it is one sign-up, not two."""
    from digest.reports.insights import subscribers_by_week
    from digest.storage.models import OutgoingMail

    seed_categories(rt, published=utcnow() - timedelta(days=1))
    web = client(rt)
    first = web.post("/subscribe", json={"email": "robin@example.com", "topics": "open-models"})
    again = web.post("/subscribe", json={"email": "robin@example.com", "topics": "developer-tools+image-generation"})
    fresh = web.post("/subscribe", json={"email": "someone-new@example.com"})
    assert first.status_code == again.status_code == fresh.status_code == 200
    assert first.json() == again.json() == fresh.json()
    with rt.sessions() as s:
        sid = s.scalar(select(Subscriber.id).where(Subscriber.email == "robin@example.com"))
        assert s.scalar(select(func.count()).select_from(OutgoingMail).where(OutgoingMail.subscriber_id == sid)) == 1
    pending = subscriber(rt, "robin@example.com")
    assert pending is not None and pending.topics == ""
    confirm(rt, web, "robin@example.com")
    sub = subscriber(rt, "robin@example.com")
    assert sub is not None and sub.status == "active" and sub.topics == "developer-tools+image-generation"
    with rt.sessions() as s:
        weeks = subscribers_by_week(s)
    assert sum(w["sign_ups"] for w in weeks) == 2 and sum(w["confirmations"] for w in weeks) == 1
