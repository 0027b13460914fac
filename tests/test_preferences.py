"""The preference centre and the unsubscribe page's monthly offer: signed links, events, export, forget."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from digest.links import Tokens, personal_links
from digest.storage.models import Event, Frequency, Subscriber, SubscriberStatus
from digest.weeks import utcnow
from subscribers.csvio import export_csv
from subscribers.erasure import forget
from tests.support_editions import add_reader, seed_categories
from tests.support_subscribers import client, path_of, subscriber

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def manage_path(rt, sid: int, email: str) -> str:
    return path_of(personal_links(rt.settings, Tokens(rt.secret_key), sid, email, None, None)["manage_url"])


def test_the_page_offers_the_topics_by_name_and_saves_a_choice_as_an_event(rt) -> None:
    seed_categories(rt, published=NOW)
    sid = add_reader(rt, "reader@example.com")
    web = client(rt)
    page = web.get(manage_path(rt, sid, "reader@example.com"))
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    for name, key in (
        ("Developer Tools", "developer-tools"),
        ("Open Models", "open-models"),
        ("Image Generation", "image-generation"),
    ):
        assert f'value="{key}"> <span>{name}</span></label>' in page.text
    assert "<script" not in page.text  # a plain form
    saved = web.post(
        manage_path(rt, sid, "reader@example.com"),
        follow_redirects=False,
        data={"topic": ["open-models", "developer-tools"], "frequency": "monthly", "pause": "4"},
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=saved")
    sub = subscriber(rt, "reader@example.com")
    assert sub is not None and sub.topics == "developer-tools+open-models" and sub.frequency == Frequency.MONTHLY
    assert sub.paused_until is not None
    after = web.get(saved.headers["location"])
    assert "Saved." in after.text and 'value="open-models" checked' in after.text and "Paused until" in after.text
    with rt.sessions() as s:
        events = s.scalars(select(Event).where(Event.kind == "preferences")).all()
    assert len(events) == 1 and events[0].subscriber_id == sid
    assert events[0].detail["changed"] == ["topics", "frequency", "pause"]
    assert events[0].detail["by"] == "reader: preference centre"
    # Saving the same again changes nothing and adds no event; resuming is a change.
    again = web.post(
        manage_path(rt, sid, "reader@example.com"),
        follow_redirects=False,
        data={"topic": ["open-models", "developer-tools"], "frequency": "monthly", "pause": "keep"},
    )
    assert again.headers["location"].endswith("?done=unchanged")
    web.post(manage_path(rt, sid, "reader@example.com"), data={"frequency": "weekly", "pause": "0"})
    sub = subscriber(rt, "reader@example.com")
    assert sub is not None and sub.topics == "" and sub.paused_until is None and sub.frequency == Frequency.WEEKLY


def test_a_choice_not_offered_is_refused_and_changes_nothing(rt) -> None:
    seed_categories(rt, published=NOW)
    sid = add_reader(rt, "reader@example.com", topics="open-models")
    web = client(rt)
    for data, message in (
        ({"topic": "no-such-topic"}, "is not one of the topics"),
        ({"frequency": "daily"}, "frequency must be weekly or monthly"),
        ({"pause": "3"}, "pause must be one of 2, 4, 8 weeks"),
    ):
        answer = web.post(manage_path(rt, sid, "reader@example.com"), data=data)
        assert answer.status_code == 400 and message in answer.text
    assert web.post(manage_path(rt, sid, "reader@example.com"), json={"frequency": "monthly"}).status_code == 415
    sub = subscriber(rt, "reader@example.com")
    assert sub is not None and sub.topics == "open-models" and sub.frequency == Frequency.WEEKLY
    with rt.sessions() as s:
        assert s.scalars(select(Event).where(Event.kind == "preferences")).all() == []


def test_the_preference_link_works_for_its_own_reader_only(rt) -> None:
    seed_categories(rt, published=NOW)
    alice = add_reader(rt, "alice@example.com")
    bob = add_reader(rt, "bob@example.com")
    web = client(rt)
    # Alice's token names Alice: posting it changes Alice, never Bob.
    web.post(manage_path(rt, alice, "alice@example.com"), data={"frequency": "monthly"})
    bob_row = subscriber(rt, "bob@example.com")
    assert bob_row is not None and bob_row.frequency == Frequency.WEEKLY
    # A token for Bob's id tied to another address, one signed with another key, a garbled one: all refused.
    for path in (
        manage_path(rt, bob, "alice@example.com"),
        "/preferences/" + Tokens("another-secret-0123456789").unsubscribe(bob, "bob@example.com"),
        manage_path(rt, bob, "bob@example.com")[:-3] + "xyz",
    ):
        page = web.get(path)
        assert "bob" not in page.text.lower() or page.status_code == 400
        answer = web.post(path, data={"frequency": "monthly"}, follow_redirects=False)
        assert answer.status_code in (400, 303)
    bob_row = subscriber(rt, "bob@example.com")
    assert bob_row is not None and bob_row.frequency == Frequency.WEEKLY


def test_too_many_emails_offers_monthly_in_one_click(rt) -> None:
    stay = add_reader(rt, "stay@example.com")
    left = add_reader(rt, "left@example.com")
    web = client(rt)

    def unsub(sid: int, email: str) -> str:
        return path_of(personal_links(rt.settings, Tokens(rt.secret_key), sid, email, None, None)["unsubscribe_url"])

    page = web.get(unsub(stay, "stay@example.com"))
    assert "Too many emails?" in page.text and 'value="monthly"' in page.text
    done = web.post(unsub(stay, "stay@example.com"), data={"action": "monthly"})
    assert done.status_code == 200 and "Monthly it is" in done.text
    row = subscriber(rt, "stay@example.com")
    assert row is not None and row.frequency == Frequency.MONTHLY and row.status == "active"
    # Someone who already left comes back monthly with the same one click.
    web.post(unsub(left, "left@example.com"), data={"action": "unsubscribe", "reason": "too_many"})
    assert (row := subscriber(rt, "left@example.com")) is not None and row.status == SubscriberStatus.UNSUBSCRIBED
    assert "Send me monthly instead" in web.get(unsub(left, "left@example.com")).text
    web.post(unsub(left, "left@example.com"), data={"action": "monthly"})
    row = subscriber(rt, "left@example.com")
    assert row is not None and row.status == "active" and row.frequency == Frequency.MONTHLY


def test_changes_are_exported_with_the_subscriber_and_erased_by_forget(rt) -> None:
    seed_categories(rt, published=NOW)
    sid = add_reader(rt, "reader@example.com")
    other = add_reader(rt, "other@example.com")
    web = client(rt)
    web.post(manage_path(rt, sid, "reader@example.com"), data={"topic": "open-models", "pause": "2"})
    web.post(manage_path(rt, other, "other@example.com"), data={"frequency": "monthly"})
    out = io.StringIO()
    export_csv(rt, None, out)
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}
    mine = rows["reader@example.com"]
    assert mine["topics"] == "open-models" and mine["frequency"] == "weekly" and mine["paused_until"]
    history = json.loads(mine["preference_changes"])
    assert [h["changed"] for h in history] == [["topics", "pause"]] and history[0]["at"]
    forget(rt, "reader@example.com")
    with rt.sessions() as s:
        kinds = s.execute(select(Event.subscriber_id, Event.detail).where(Event.kind == "preferences")).all()
        assert s.scalar(select(Subscriber).where(Subscriber.id == sid)) is None
    assert [k[0] for k in kinds] == [other]  # the forgotten person's changes are gone, not anonymised
    assert all("open-models" not in json.dumps(d) for _, d in kinds)


def test_a_paused_reader_resumes_by_itself(rt) -> None:
    sid = add_reader(rt, "reader@example.com", paused_until=utcnow() - timedelta(minutes=1))
    web = client(rt)
    page = web.get(manage_path(rt, sid, "reader@example.com"))
    assert "Paused until" not in page.text and 'value="0" checked' in page.text


def test_a_topic_added_since_the_catalogue_was_cached_is_shown_and_kept(rt) -> None:
    """Another process (or the CLI) may offer a topic this process has not seen yet: the reader's own
    choice is never dropped by a save, nor refused."""
    from subscribers import preferences

    seed_categories(rt, published=NOW, categories={"Developer Tools": ["Cursor vs Windsurf", "Aider vs Cline"]})
    web = client(rt)
    sid = add_reader(rt, "reader@example.com")
    assert web.get(manage_path(rt, sid, "reader@example.com")).status_code == 200  # the catalogue is read
    assert [t.key for t in preferences.offered(rt).topics] == ["developer-tools"]
    seed_categories(rt, published=NOW, categories={"Open Models": ["SmolLM3 vs Phi-4 Mini"]})  # a new topic
    with rt.sessions.begin() as s:
        s.get(Subscriber, sid).topics = "open-models"  # chosen through another process
    page = web.get(manage_path(rt, sid, "reader@example.com"))
    assert 'value="open-models" checked' in page.text
    saved = web.post(
        manage_path(rt, sid, "reader@example.com"),
        follow_redirects=False,
        data={"topic": "open-models", "frequency": "monthly", "pause": "keep"},
    )
    assert saved.status_code == 303
    sub = subscriber(rt, "reader@example.com")
    assert sub is not None and sub.topics == "open-models" and sub.frequency == Frequency.MONTHLY


def test_with_no_topics_offered_a_save_keeps_the_readers_topics(rt) -> None:
    """No comparisons yet (or every category hidden): the form has no topic boxes, so it says nothing
    about topics and a save changes only what it shows."""
    sid = add_reader(rt, "reader@example.com", topics="open-models")
    web = client(rt)
    saved = web.post(
        manage_path(rt, sid, "reader@example.com"),
        follow_redirects=False,
        data={"frequency": "monthly", "pause": "keep"},
    )
    assert saved.status_code == 303
    sub = subscriber(rt, "reader@example.com")
    assert sub is not None and sub.topics == "open-models" and sub.frequency == Frequency.MONTHLY


def test_a_post_from_a_foreign_page_is_refused_and_changes_nothing(rt) -> None:
    """`Origin: null` counts as foreign here: the page itself is served so that its own form names its origin."""
    seed_categories(rt, published=NOW)
    sid = add_reader(rt, "reader@example.com", topics="open-models")
    web = client(rt)
    path = manage_path(rt, sid, "reader@example.com")
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8001"):
        answer = web.post(
            path, data={"frequency": "monthly", "pause": "4"}, headers={"Origin": origin}, follow_redirects=False
        )
        assert answer.status_code == 403 and "another site" in answer.text and "nothing was changed" in answer.text
        assert "location" not in answer.headers
    sub = subscriber(rt, "reader@example.com")
    assert sub is not None and sub.frequency == Frequency.WEEKLY and sub.paused_until is None
    with rt.sessions() as s:
        assert s.scalars(select(Event).where(Event.kind == "preferences")).all() == []
    # The site's own page (site.public_url's origin) saves; so does a client that sends no Origin.
    own = web.post(
        path,
        data={"topic": "open-models", "frequency": "monthly"},
        follow_redirects=False,
        headers={"Origin": rt.settings.site.public_url.rstrip("/")},
    )
    assert own.status_code == 303 and own.headers["location"].endswith("?done=saved")
    sub = subscriber(rt, "reader@example.com")
    assert sub is not None and sub.frequency == Frequency.MONTHLY
    # A same-origin POST from a page served with `no-referrer` carries `Origin: null`: not this page's policy.
    page = web.get(path)
    assert page.headers["Referrer-Policy"] == "strict-origin"
