"""The public archive: /archive, /archive/<week> (web version, no personal data), /archive.xml (Atom)."""

from __future__ import annotations

import email
import email.policy
import html
import re

import feedparser
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from digest.runtime import Runtime
from digest.storage.models import Issue
from digest.web.app import create_app
from tests.support_serve import EVIL_A, make_archive


@pytest.fixture
def archive_rt(rt: Runtime) -> Runtime:
    return make_archive(rt)


def test_archive_lists_sent_issues_newest_first_and_escapes(archive_rt: Runtime) -> None:
    client = TestClient(create_app(archive_rt))
    resp = client.get("/archive")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    body = resp.text
    assert body.index('href="/archive/2026-W47"') < body.index('href="/archive/2026-W46"')
    assert "2026-W48" not in body and "DRAFT-SUBJECT" not in body and "2026-W45" not in body
    assert "<script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in body
    assert 'href="/subscribe"' in body and 'href="/archive.xml"' in body
    assert client.head("/archive").status_code == 200


def test_web_version_is_the_issue_without_personal_data(archive_rt: Runtime) -> None:
    client = TestClient(create_app(archive_rt))
    resp = client.get("/archive/2026-W47")
    assert resp.status_code == 200
    page = resp.text
    with archive_rt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.week == "2026-W47"))
        assert issue is not None and issue.main_edition is not None and issue.main_edition.placeholder_nonce
        nonce = issue.main_edition.placeholder_nonce
    assert "@@" not in page and nonce not in page  # every marker filled
    assert "/u/" not in page and "Reader" not in page  # no token, no name
    assert 'href="/archive/2026-W47"' in page and 'href="/subscribe"' in page
    assert "fonts.googleapis.com" not in page  # no third-party request from a public page
    assert "All issues" in page and "Web version of No.&nbsp;2" in page
    # Hostile comparison text stays text.
    assert "<script>alert" not in page and "<svg onload" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_view_in_browser_link_of_each_email_points_at_the_web_version(archive_rt: Runtime) -> None:
    client = TestClient(create_app(archive_rt))
    files = sorted((archive_rt.outbox_dir / "2026-W47").glob("*.eml"))
    assert files
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        body = msg.get_body(("html",)).get_content()
        links = re.findall(r'href="([^"]+)"[^>]*>View in browser', body)
        assert links and set(links) == {f"{archive_rt.settings.site.public_url}/archive/2026-W47"}
        path = links[0].removeprefix(archive_rt.settings.site.public_url)
        assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "path,fragment",
    [
        ("/archive/2026-W48", "No issue went out in week 2026-W48"),  # a draft
        ("/archive/2026-W45", "No issue went out in week 2026-W45"),  # skipped
        ("/archive/2030-W01", "No issue went out in week 2030-W01"),
        ("/archive/2026-W60", "2026 has no week 60"),
        ("/archive/not-a-week", "is not an ISO week key"),
        ("/archive/%3Cscript%3E", "is not an ISO week key"),
    ],
)
def test_missing_or_bad_week_is_a_clear_404(archive_rt: Runtime, path: str, fragment: str) -> None:
    resp = TestClient(create_app(archive_rt)).get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")
    assert fragment in resp.text and "<script>" not in resp.text


def test_atom_feed_parses_and_links_each_web_version(archive_rt: Runtime) -> None:
    client = TestClient(create_app(archive_rt))
    resp = client.get("/archive.xml")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(resp.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    base = archive_rt.settings.site.public_url
    assert feed.feed.title == archive_rt.settings.site.name
    assert [e.link for e in feed.entries] == [f"{base}/archive/2026-W47", f"{base}/archive/2026-W46"]
    assert [e.id for e in feed.entries] == [f"{base}/archive/2026-W47", f"{base}/archive/2026-W46"]
    newest = feed.entries[0]
    content = newest.content[0].value  # HTML: the hostile title is text inside it
    assert html.escape(EVIL_A, quote=False) in content and "<script>" not in content
    assert newest.title.startswith(EVIL_A)  # the subject, which leads with the week's top comparison
    assert newest.published_parsed and newest.updated_parsed
    for entry in feed.entries:
        assert client.get(entry.link.removeprefix(base)).status_code == 200


def test_empty_archive_and_feed(rt: Runtime) -> None:
    client = TestClient(create_app(rt))
    page = client.get("/archive")
    assert page.status_code == 200 and "No issue has gone out yet" in page.text
    feed = feedparser.parse(client.get("/archive.xml").content)
    assert not feed.bozo and feed.entries == []


def test_database_outage_is_a_503_not_a_500(project, tmp_path) -> None:
    from tests.conftest import make_runtime

    rt = make_runtime(project, f"sqlite:///{tmp_path / 'var' / 'x.db'}")
    rt.engine.dispose()
    (tmp_path / "var" / "x.db").unlink()
    (tmp_path / "var" / "x.db").mkdir()  # a folder where the database file was: every query fails
    client = TestClient(create_app(rt), raise_server_exceptions=False)
    for path in ("/archive", "/archive/2026-W47", "/archive.xml"):
        resp = client.get(path)
        assert resp.status_code == 503, path
        assert "unavailable" in resp.text
