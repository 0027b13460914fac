"""Click tracking in every edition, on a real `digest serve`: each reader's links resolve in their own edition.

Two editions go out (all topics, and Open Models only). A reader of the topic edition follows a
comparison link from their own email and lands on that edition's comparison (with UTM); a reader
of the all-topics edition follows the same comparison from theirs. `digest stats --json` counts
each under its edition and comparison, and the issue's total counts the comparison across both.
A signed token of the topic edition's delivery naming a position that exists only in the
all-topics edition gets 400, never the other edition's destination.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from digest.links import ClickTokens, Tokens
from digest.storage.models import Click, Delivery, Edition, Issue, Subscriber
from digest.weeks import Week, utcnow
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.support_editions import add_reader, seed_categories
from tests.support_serve import ServeProcess, free_port, html_of, mail_to, send_issue, serving, stats_cli

pytestmark = pytest.mark.slow

SECRET = "test-secret-key-0123456789"
TRACKED = re.compile(r'href="(http://127\.0\.0\.1:\d+/c/[A-Za-z0-9_-]{26})"')
BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"}


def _position(url: str) -> int:
    return int(url.rsplit("/", 1)[1][:2], 16)


def test_each_editions_links_are_tracked_and_counted_under_that_edition(tmp_path: Path, db_url: str) -> None:
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
    seed_categories(rt, published=now - timedelta(days=1))
    add_reader(rt, "all@example.com")
    add_reader(rt, "models@example.com", topics="open-models")
    add_reader(rt, "models2@example.com", topics="open-models")
    week = Week.of(now).key
    send_issue(rt, week, now)
    with rt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week))
        assert issue is not None and issue.main_edition is not None and issue.main_edition.links
        editions = {e.key: e for e in s.scalars(select(Edition).where(Edition.issue_id == issue.id))}
        assert set(editions) == {"weekly/all", "weekly/open-models"}
        every, models = editions["weekly/all"], editions["weekly/open-models"]
        assert every is issue.main_edition and every.links and models.links  # each edition froze its own links
        every_links, models_links = list(every.links), list(models.links or [])
        models_id = models.id
        delivery = s.scalar(
            select(Delivery.id)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == "models@example.com")
        )
        assert delivery is not None

    mine = TRACKED.findall(html_of(mail_to(rt.outbox_dir, "models@example.com")))
    theirs = TRACKED.findall(html_of(mail_to(rt.outbox_dir, "all@example.com")))
    for urls, links in ((mine, models_links), (theirs, every_links)):  # the HTML part: contents and cards
        assert sorted(map(_position, urls)) == [i for i, link in enumerate(links) if link["place"] != "text"]
    # A card link of the topic edition whose position holds another comparison in the all-topics edition.
    card = next(
        u
        for u in mine
        if models_links[_position(u)]["place"] == "card"
        and every_links[_position(u)]["slug"] != models_links[_position(u)]["slug"]
    )
    target = models_links[_position(card)]
    same = next(
        u
        for u in theirs
        if every_links[_position(u)]["slug"] == target["slug"] and every_links[_position(u)]["place"] == "card"
    )  # the same comparison, another edition
    # A properly signed token of the topic edition's delivery, at a position only the all-topics edition has.
    assert len(every_links) > len(models_links)
    beyond = ClickTokens(Tokens(SECRET)).for_message(issue.id, delivery, len(every_links), edition_id=models_id)[
        len(models_links)
    ]

    server = ServeProcess(cfg, port, env, tmp_path)
    with serving(server):
        server.wait_ready()
        with httpx.Client(timeout=10, headers=BROWSER) as client:
            resp = client.get(card)
            assert resp.status_code == 302
            landed = resp.headers["location"]
            assert landed == target["url"] and landed != every_links[_position(card)]["url"]
            query = parse_qs(urlsplit(landed).query)
            assert query["utm_source"] == ["newsletter"] and query["utm_medium"] == ["email"]
            assert query["utm_campaign"] == [week]
            assert client.get(same).headers["location"] == target["url"]

            resp = client.get(f"http://127.0.0.1:{port}/c/{beyond}")
            assert resp.status_code == 400 and "location" not in resp.headers
            token = card.rsplit("/", 1)[1]
            for bad in (
                token[:2] + token[2:7] + ("A" if token[7] != "A" else "B") + token[8:],  # the edition
                token[:-1] + ("A" if token[-1] != "A" else "B"),
            ):
                resp = client.get(f"http://127.0.0.1:{port}/c/{bad}")
                assert resp.status_code == 400 and "location" not in resp.headers, bad
        assert server.terminate() == 0

    with rt.sessions() as s:
        assert sorted(e for e in s.scalars(select(Click.edition_id))) == sorted([models_id, every.id])
    data = json.loads(stats_cli(cfg, env, week, "--json"))
    by_key = {e["key"]: e for e in data["editions"]}
    topic = by_key["weekly/open-models"]
    assert topic["sent"] == 2 and topic["clicks"]["unique_clicks"] == 1
    assert topic["clicks"]["click_through"] == 0.5
    row = next(c for c in topic["clicks"]["comparisons"] if c["slug"] == target["slug"])
    assert row["unique_clicks"] == 1 and row["emails"] == 2 and row["click_through"] == 0.5
    assert topic["clicks"]["comparisons"][0]["slug"] == target["slug"]
    assert all(c["unique_clicks"] == 0 for c in topic["clicks"]["comparisons"][1:])
    whole = by_key["weekly/all"]
    assert whole["sent"] == 1 and whole["clicks"]["unique_clicks"] == 1
    total = next(c for c in data["clicks"]["comparisons"] if c["slug"] == target["slug"])
    assert total["unique_clicks"] == 2 and total["emails"] == 3 and total["click_through"] == round(2 / 3, 4)
    assert data["clicks"]["unique_clicks"] == 2 and data["clicks"]["comparisons"][0]["slug"] == target["slug"]

    text = stats_cli(cfg, env, week)
    assert "weekly/open-models" in text and "50.0%" in text
    rows = stats_cli(cfg, env, week, "--csv").splitlines()
    assert f"edition_comparison,weekly/open-models:{target['slug']},unique_clicks,1" in rows
    assert "edition,weekly/open-models,click_through,0.5" in rows
    assert f"comparison,{target['slug']},unique_clicks,2" in rows
