"""Our own click tracking on a real `digest serve`: the redirect, honest counts, tampered tokens.

An issue goes to the outbox; a reader follows a comparison link from their email and lands on
the comparison with its UTM parameters; a HEAD of the same link, a burst of every link of
another reader's email and a scanner's User-Agent are recorded but set aside; a tampered token
gets 400 and no Location. The clicks are written only at shutdown here (`flush_seconds` is an
hour), so the counts also prove that SIGTERM loses nothing.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from digest.runtime import Runtime
from digest.storage.models import Click, Delivery, Edition, Issue
from digest.weeks import Week, utcnow
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.support_serve import (
    ServeProcess,
    free_port,
    html_of,
    mail_to,
    seed,
    send_issue,
    served_project,
    serving,
    stats_cli,
)

pytestmark = pytest.mark.slow

SECRET = "test-secret-key-0123456789"
TRACKED = re.compile(r'href="(http://127\.0\.0\.1:\d+/c/[A-Za-z0-9_-]{26})"')


def test_a_readers_click_redirects_and_counts_once_and_scanners_are_set_aside(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(
            cfg.read_text(), {"site": {"public_url": f"http://127.0.0.1:{port}"}, "tracking": {"flush_seconds": 3600}}
        )
    )
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET, "DIGEST_TRANSPORT": "outbox"}
    rt = make_runtime(cfg, db_url)
    now = utcnow()
    seed(rt, now - timedelta(days=1), people=3)
    week = Week.of(now).key
    send_issue(rt, week, now)
    with rt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week))
        assert issue is not None and issue.main_edition is not None and issue.main_edition.links
        frozen = list(issue.main_edition.links)
        sent = len(s.scalars(select(Delivery.id).where(Delivery.issue_id == issue.id)).all())

    reader = TRACKED.findall(html_of(mail_to(rt.outbox_dir, "reader000@example.com")))
    scanned = TRACKED.findall(html_of(mail_to(rt.outbox_dir, "reader001@example.com")))
    other = TRACKED.findall(html_of(mail_to(rt.outbox_dir, "reader002@example.com")))
    assert reader and len(reader) == len(scanned)
    card_link = next(u for u in reader if frozen[int(u.rsplit("/", 1)[1][:2], 16)]["place"] == "card")
    target = frozen[int(card_link.rsplit("/", 1)[1][:2], 16)]

    logs = tmp_path / "logs"
    logs.mkdir()
    server = ServeProcess(cfg, port, env, logs)
    with serving(server):
        server.wait_ready()
        browser = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"}
        with httpx.Client(timeout=10, headers=browser) as client:
            resp = client.get(card_link)  # the reader follows the comparison link
            assert resp.status_code == 302
            landed = resp.headers["location"]
            assert landed == target["url"] and landed.startswith("https://verdicts.example.com/")
            query = parse_qs(urlsplit(landed).query)
            assert query["utm_source"] == ["newsletter"] and query["utm_medium"] == ["email"]
            assert query["utm_campaign"] == [week]

            assert client.head(card_link).status_code == 302  # a link checker: recorded, set aside
            for url in scanned:  # a gateway opening every link of another reader's mail at once
                assert client.get(url).status_code == 302
            scanner_ua = {"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel URL Scanner)"}
            assert client.get(other[0], headers=scanner_ua).status_code == 302

            token = card_link.rsplit("/", 1)[1]
            forged = [
                token[:-1] + ("A" if token[-1] != "A" else "B"),  # the tag
                f"{(int(token[:2], 16) + 1) % len(frozen):02x}" + token[2:],  # another position
                token[:2] + token[2:17] + ("A" if token[17] != "A" else "B") + token[18:],  # delivery
                "x" * 26,
                "x" * 22,
                token + "A",
            ]
            for bad in forged:
                resp = client.get(card_link.rsplit("/", 1)[0] + "/" + bad)
                assert resp.status_code == 400 and "location" not in resp.headers, bad
                assert "not valid" in resp.text
        assert server.terminate() == 0  # SIGTERM: the queued clicks are written before the process ends

    with rt.sessions() as s:
        assert len(s.scalars(select(Click.id)).all()) == 2 + len(scanned) + 1  # every request kept
    data = json.loads(stats_cli(cfg, env, week, "--json"))
    clicks = data["clicks"]
    assert clicks["unique_clicks"] == 1 and clicks["reader_clicks"] == 1
    assert clicks["set_aside"] == {"head": 1, "scanner_agent": 1, "burst": len(scanned)}
    top = clicks["comparisons"][0]
    assert top["rank"] == target["rank"] and top["unique_clicks"] == 1
    assert top["click_through"] == round(1 / sent, 4)
    assert all(c["unique_clicks"] == 0 for c in clicks["comparisons"][1:])
    by_link = {row["link"]: row for row in clicks["links"]}
    assert by_link[int(card_link.rsplit("/", 1)[1][:2], 16)]["unique_clicks"] == 1
    assert data["opens"]["reliable"] is False and "Apple Mail Privacy Protection" in data["opens"]["note"]
    assert data["over_time"]["subscribers_by_week"][-1]["confirmations"] == 3

    text = stats_cli(cfg, env, week)
    assert "set aside as scanners" in text and "HEAD requests" in text
    rows = stats_cli(cfg, env, week, "--csv").splitlines()
    assert rows[0] == "section,key,metric,value"
    assert f"comparison,{top['slug']},unique_clicks,1" in rows and f"set_aside,burst,clicks,{len(scanned)}" in rows


def test_with_tracking_off_links_go_straight_to_the_comparison_and_the_footer_says_nothing(
    tmp_path: Path, sqlite_url: str
) -> None:
    cfg = write_project(tmp_path / "project")
    cfg.write_text(apply_overrides(cfg.read_text(), {"tracking": {"clicks": False}}))
    rt = make_runtime(cfg, sqlite_url)
    now = utcnow()
    seed(rt, now - timedelta(days=1), people=1)
    week = Week.of(now).key
    send_issue(rt, week, now)
    html = html_of(mail_to(rt.outbox_dir, "reader000@example.com"))
    assert "/c/" not in html and "utm_source=newsletter" in html
    assert "tracked" not in html


def test_the_footer_says_links_are_tracked(tmp_path: Path, sqlite_url: str) -> None:
    cfg = write_project(tmp_path / "project")
    rt = make_runtime(cfg, sqlite_url)
    now = utcnow()
    seed(rt, now - timedelta(days=1), people=1)
    week = Week.of(now).key
    send_issue(rt, week, now)
    mail = mail_to(rt.outbox_dir, "reader000@example.com")
    assert "Links to comparisons are tracked" in html_of(mail)
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    text = str(msg.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    assert "tracked" in text and "/c/" in text


PIXEL = re.compile(r'<img src="(http://127\.0\.0\.1:\d+/o/[A-Za-z0-9_-]{22})"')


def test_the_open_pixel_is_off_by_default_and_counts_an_open_when_on(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(
            cfg.read_text(), {"site": {"public_url": f"http://127.0.0.1:{port}"}, "tracking": {"open_pixel": True}}
        )
    )
    env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_SECRET_KEY": SECRET, "DIGEST_TRANSPORT": "outbox"}
    rt = make_runtime(cfg, sqlite_url)
    now = utcnow()
    seed(rt, now - timedelta(days=1), people=2)
    week = Week.of(now).key
    send_issue(rt, week, now)
    pixels = [PIXEL.findall(html_of(mail_to(rt.outbox_dir, f"reader00{i}@example.com"))) for i in range(2)]
    assert all(len(p) == 1 for p in pixels) and pixels[0] != pixels[1]
    server = ServeProcess(cfg, port, env, tmp_path)
    with serving(server):
        server.wait_ready()
        with httpx.Client(timeout=10, headers={"User-Agent": "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15"}) as c:
            resp = c.get(pixels[0][0])
            assert resp.status_code == 200 and resp.headers["content-type"] == "image/gif"
            assert resp.content.startswith(b"GIF89a") and "no-store" in resp.headers["cache-control"]
            assert c.get(pixels[0][0].replace("/o/", "/c/")).status_code == 400  # a pixel token is no link token
            archive = c.get(f"http://127.0.0.1:{port}/archive/{week}")
            assert archive.status_code == 200 and "/o/" not in archive.text  # the web version has no pixel
        assert server.terminate() == 0
    data = json.loads(stats_cli(cfg, env, week, "--json"))
    assert data["opens"]["unique_opens"] == 1 and "tracking pixel" in data["opens"]["sources"]

    plain = write_project(tmp_path / "plain")
    rt2 = make_runtime(plain, "sqlite:///" + str(tmp_path / "plain.db"))
    seed(rt2, now - timedelta(days=1), people=1)
    send_issue(rt2, week, now)
    assert "/o/" not in html_of(mail_to(rt2.outbox_dir, "reader000@example.com"))  # off by default


IRI = "https://verdicts.example.com/compare/日本-vs-x"
IRI_AS_URI = "https://verdicts.example.com/compare/%E6%97%A5%E6%9C%AC-vs-x"


def _international(title: str, url: str) -> dict[str, object]:
    tool = {"category": "LLM", "tagline": "t", "panel_ship": 100, "community": 90, "price": "Free", "description": "d"}
    a, b = title.split(" vs ")
    return {
        "title": title,
        "url": url,
        "community_votes": 500,
        "tools": [{**tool, "name": a}, {**tool, "name": b}],
        "quotes": [{"tool": "a", "reviewer": 1, "text": "Good."}, {"tool": "b", "reviewer": 1, "text": "Good."}],
    }


def _tracked(rt: Runtime, to: str = "reader000@example.com") -> dict[int, str]:
    """The tracked links of the mail sent to `to`, by their position in the edition's links."""
    return {int(u.rsplit("/", 1)[1][:2], 16): u for u in TRACKED.findall(html_of(mail_to(rt.outbox_dir, to)))}


def _refreeze(rt: Runtime, week: str, changed: dict[int, str]) -> list[dict[str, object]]:
    """Rewrite the destinations frozen at `changed`'s positions (in every edition), as an issue frozen
    before a rule would hold them; returns the issue's (its main edition's) links as they were."""
    with rt.sessions.begin() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week))
        assert issue is not None and issue.main_edition is not None and issue.main_edition.links
        before = list(issue.main_edition.links)
        for row in s.scalars(select(Edition).where(Edition.issue_id == issue.id)):
            if row.links:
                row.links = [{**link, "url": changed.get(i, link["url"])} for i, link in enumerate(row.links)]
    return before


def test_a_link_to_an_international_address_redirects_to_its_ascii_uri(tmp_path: Path, db_url: str) -> None:
    """A comparison URL with non-ASCII characters (an IRI): ingested ones, and ones frozen in an issue before
    ingest turned them into URIs, redirect with an ASCII `Location` (RFC 3987 3.1), never a 500."""
    p = served_project(tmp_path, db_url, SECRET, tracking={"flush_seconds": 3600})
    now = utcnow()
    seed(p.rt, now - timedelta(days=1), people=1, extra=[_international("日本 vs X", IRI)])
    week = Week.of(now).key
    send_issue(p.rt, week, now)
    old = "https://verdicts.example.com/compare/café-vs-ünïcode?ref=ça#über"  # frozen before the fix
    tracked = _tracked(p.rt)
    links = _refreeze(p.rt, week, {})
    ingested = next(i for i, link in enumerate(links) if "%E6%97%A5%E6%9C%AC" in link["url"] or "日本" in link["url"])
    frozen = next(i for i, link in enumerate(links) if i != ingested and link["place"] == "card")
    broken = next(i for i in sorted(tracked) if i not in (ingested, frozen))
    _refreeze(p.rt, week, {frozen: old, broken: "https://verdicts.example.com/x\r\nSet-Cookie: a=b"})  # no URL

    with p.serve(tmp_path / "logs") as server:
        with httpx.Client(timeout=10, headers={"User-Agent": "Mozilla/5.0 Firefox/130.0"}) as client:
            for method in ("GET", "HEAD"):
                resp = client.request(method, tracked[ingested])
                assert resp.status_code == 302, (method, resp.status_code, resp.text)
                location = resp.headers["location"]
                assert location.isascii() and location.startswith(IRI_AS_URI + "?utm_source=newsletter"), location
                resp = client.request(method, tracked[frozen])
                assert resp.status_code == 302, (method, resp.status_code, resp.text)
                assert resp.headers["location"] == (
                    "https://verdicts.example.com/compare/caf%C3%A9-vs-%C3%BCn%C3%AFcode?ref=%C3%A7a#%C3%BCber"
                )
                resp = client.request(method, tracked[broken])
                assert resp.status_code == 400 and "location" not in resp.headers
        assert server.terminate() == 0
    with p.rt.sessions() as s:
        assert len(s.scalars(select(Click.id)).all()) == 4  # each link, GET and HEAD: recorded as ever


FROZEN_AUTHORITIES = {
    "https://user@exämple.com/é": "https://user@xn--exmple-cua.com/%C3%A9",  # userinfo kept
    "https://[::1]:8080/é": "https://[::1]:8080/%C3%A9",  # an IPv6 literal keeps its brackets
    "https://例え.jp:99999/x": None,  # a port out of range: no URI
    "https://例え..jp/x": None,  # an empty label: no host IDNA can write
}


def test_a_frozen_iri_redirects_with_its_whole_authority_or_not_at_all(tmp_path: Path, db_url: str) -> None:
    """Links frozen in an issue before ingest turned IRIs into URIs: userinfo and IPv6 brackets survive into
    `Location`; one with no URI form (bad port, bad host) is the "link not valid" 400 with no `Location`,
    never a 500 and never a %-encoded host no browser resolves."""
    p = served_project(tmp_path, db_url, SECRET, tracking={"flush_seconds": 3600})
    now = utcnow()
    seed(p.rt, now - timedelta(days=1), people=1)
    week = Week.of(now).key
    send_issue(p.rt, week, now)
    tracked = _tracked(p.rt)
    positions = dict(zip(sorted(tracked), FROZEN_AUTHORITIES, strict=False))
    assert len(positions) == len(FROZEN_AUTHORITIES)
    _refreeze(p.rt, week, positions)

    with p.serve(tmp_path / "logs") as server:
        with httpx.Client(timeout=10, headers={"User-Agent": "Mozilla/5.0 Firefox/130.0"}) as client:
            for method in ("GET", "HEAD"):
                for i, iri in positions.items():
                    resp = client.request(method, tracked[i])
                    expected = FROZEN_AUTHORITIES[iri]
                    if expected is None:
                        assert resp.status_code == 400 and "location" not in resp.headers, (method, iri, resp.headers)
                        if method == "GET":
                            assert "This link is not valid" in resp.text
                    else:
                        assert resp.status_code == 302, (method, iri, resp.status_code, resp.text)
                        assert resp.headers["location"] == expected, (method, iri)
        assert server.terminate() == 0


def test_a_flood_of_one_link_is_counted_on_a_few_rows(tmp_path: Path, db_url: str) -> None:
    """2,000 GETs of one reader's tracked link (the audit sent 10,000): every request is counted, on one row
    per `[tracking] repeat_seconds` window (and flush), not one row each; the reader is one unique click."""
    p = served_project(tmp_path, db_url, SECRET, tracking={"flush_seconds": 0.2})  # many flushes
    cfg, env, rt = p.cfg, p.env, p.rt
    now = utcnow()
    seed(rt, now - timedelta(days=1), people=1)
    week = Week.of(now).key
    send_issue(rt, week, now)
    link = TRACKED.findall(html_of(mail_to(rt.outbox_dir, "reader000@example.com")))[0]
    flood = 2000

    with p.serve(tmp_path / "logs") as server:
        with httpx.Client(timeout=10, headers={"User-Agent": "Mozilla/5.0 Firefox/130.0"}) as client:
            assert all(client.get(link).status_code == 302 for _ in range(flood))
        assert server.terminate() == 0

    with rt.sessions() as s:
        rows = s.execute(select(Click.link, Click.method, Click.hits)).all()
    assert 1 <= len(rows) <= 5, len(rows)
    assert sum(r.hits for r in rows) == flood
    clicks = json.loads(stats_cli(cfg, env, week, "--json"))["clicks"]
    assert clicks["recorded"] == flood and clicks["reader_clicks"] == flood and clicks["unique_clicks"] == 1
    assert clicks["set_aside_total"] == 0
    assert sum(row["clicks"] for row in clicks["links"]) == flood
