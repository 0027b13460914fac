"""The archive shows what readers got: the issue's frozen copy, Atom dates that tell the truth, and
a web version that offers "Subscribe" instead of personal links an anonymous reader cannot use."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import feedparser
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest.cycle.send import send_week
from digest.runtime import Runtime
from digest.storage.models import Comparison, Issue
from digest.web.app import create_app
from digest.weeks import Week
from tests.support_delivery import add_readers, seed_comparisons

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
WEEK = Week.parse("2026-W47")
ATOM = "{http://www.w3.org/2005/Atom}"


def _sent(rt: Runtime, now: datetime = NOW) -> Runtime:
    seed_comparisons(rt, published=now - timedelta(days=1))
    add_readers(rt, 2)
    result = send_week(rt, WEEK, manual=True, now=now)
    assert result.summary is not None and result.summary.sent == 2
    return rt


def test_feed_shows_the_comparisons_as_sent_not_as_edited_since(rt: Runtime) -> None:
    _sent(rt)
    client = TestClient(create_app(rt))
    before = client.get("/archive.xml").text
    with rt.sessions.begin() as s:
        rows = list(s.scalars(select(Comparison)))
        originals = [(r.data["title"], r.url) for r in rows]
        for r in rows:  # the site edits its pages after the issue went out
            data = dict(r.data)
            data["title"] = "EDITED " + data["title"]
            data["tools"] = [{**t, "name": "EDITED " + t["name"]} for t in data["tools"]]
            r.data, r.url = data, r.url + "-moved"
    after = client.get("/archive.xml").text
    assert after == before
    assert "EDITED" not in after and "-moved" not in after
    for title, url in originals:
        assert url in after
    entry = feedparser.parse(after).entries[0]
    assert originals[0][0].split(" vs ")[0] in entry.content[0].value


def test_atom_updated_is_the_send_time_and_published_is_not_later(rt: Runtime) -> None:
    _sent(rt)
    with rt.sessions.begin() as s:  # sent by hand before its slot: the slot lies after the real send time
        issue = s.scalar(select(Issue).where(Issue.week == WEEK.key))
        issue.scheduled_for = (issue.sent_at or issue.enqueued_at) + timedelta(days=2)
    feed = ET.fromstring(TestClient(create_app(rt)).get("/archive.xml").content)
    entry = feed.find(f"{ATOM}entry")
    assert entry is not None
    published = datetime.fromisoformat(entry.findtext(f"{ATOM}published").replace("Z", "+00:00"))
    updated = datetime.fromisoformat(entry.findtext(f"{ATOM}updated").replace("Z", "+00:00"))
    with rt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.week == WEEK.key))
        sent_at = (issue.sent_at or issue.enqueued_at).replace(tzinfo=UTC, microsecond=0)
    assert updated == sent_at
    assert published <= updated
    assert feed.findtext(f"{ATOM}updated") == entry.findtext(f"{ATOM}updated")


def test_web_version_offers_subscribe_instead_of_personal_links(rt: Runtime) -> None:
    _sent(rt)
    page = TestClient(create_app(rt)).get(f"/archive/{WEEK.key}").text
    links = re.findall(r"<a\b[^>]*>(.*?)</a>", page, re.S)
    labels = [re.sub(r"<[^>]+>|\s+", " ", label).strip() for label in links]
    assert "Unsubscribe" not in labels and "Manage subscription" not in labels, labels
    assert "Subscribe" in labels
    assert 'href="/archive#about"' not in page
    footer = page[page.rindex("View in browser") :]
    assert re.search(r'<a\b[^>]*href="/subscribe"[^>]*>\s*Subscribe\s*</a>', footer), footer[:600]
