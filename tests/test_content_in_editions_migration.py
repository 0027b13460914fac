"""Migration 0006_h22: an issue's content lives in its editions only.

The database is built at 0005_h21 (the schema before) and filled the way the old code left it:
an issue frozen before editions existed (its compile and picks on the issue, deliveries and clicks
naming no edition), one frozen before snapshots and tracked links, one frozen with editions (the
issue's columns a copy of its "weekly/all" edition), a draft and a skipped week. After the upgrade
each frozen issue has its main edition, the readers (archive, stats, clicks, selection) read it, and
the issue's own copy is gone; the downgrade gives the old schema its copy back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.orm import Session, selectinload

from digest.config import load_config
from digest.render.personalize import marker
from digest.reports.insights import click_report
from digest.reports.stats import edition_stats
from digest.selection.scoring import featured_ids
from digest.storage.db import _alembic_config, make_engine, upgrade
from digest.storage.models import Issue
from digest.web.archive import web_version
from tests.conftest import database_at, write_project

NONCE = "n0nce"
LINKS = [{"rank": 1, "place": "card", "slug": "a-vs-b", "url": "https://verdicts.example.com/compare/a-vs-b"}]
COPIED = ("subject", "preheader", "html", "text", "placeholder_nonce", "links")


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A database of each kind at 0005_h21, the schema just before this migration."""
    engine = make_engine(database_at(request, tmp_path, "0005_h21"))
    yield engine
    engine.dispose()


def _html(title: str) -> str:
    return (
        f"<html><head></head><body><p>{marker(NONCE, 'greeting')} {title}</p>"
        f'<a href="{marker(NONCE, "unsubscribe_url")}">Unsubscribe</a></body></html>'
    )


def _comparison(c, slug: str) -> int:
    data = json.dumps({"title": slug, "tools": [{"name": "A", "category": "Notes"}, {"name": "B"}]})
    return c.execute(
        text(
            "INSERT INTO comparisons (slug, title, url, published_at, content_hash, data, created_at, updated_at)"
            " VALUES (:s, :s, :u, '2026-01-01', :h, :d, '2026-01-01', '2026-01-01') RETURNING id"
        ),
        {"s": slug, "u": f"https://verdicts.example.com/compare/{slug}", "h": "x" * 64, "d": data},
    ).scalar_one()


def _issue(c, week: str, status: str, title: str | None, *, links: list | None = None) -> int:
    content = {
        "subject": title,
        "preheader": f"{title}. Issue 1." if title else None,
        "html": _html(title) if title else None,
        "text": f"{title}\n" if title else None,
        "placeholder_nonce": NONCE if title else None,
        "links": json.dumps(links) if links else None,
    }
    return c.execute(
        text(
            "INSERT INTO issues (week, status, created_at, enqueued_at, pins, excludes, subject, preheader, html, text,"
            " placeholder_nonce, links) VALUES (:w, :st, '2026-01-01', :enq, '[]', '[]', :subject, :preheader, :html,"
            " :text, :placeholder_nonce, :links) RETURNING id"
        ),
        {"w": week, "st": status, "enq": "2026-01-05" if status in ("sending", "sent") else None, **content},
    ).scalar_one()


def _item(c, issue_id: int, comparison_id: int, rank: int, snapshot: dict | None) -> None:
    c.execute(
        text(
            "INSERT INTO issue_items (issue_id, comparison_id, rank, score, score_parts, pinned, snapshot)"
            " VALUES (:i, :c, :r, 0.5, '{\"panel\": 0.5}', :p, :snap)"
        ),
        {
            "i": issue_id,
            "c": comparison_id,
            "r": rank,
            "p": rank == 1,
            "snap": json.dumps(snapshot) if snapshot else None,
        },
    )


def _delivery(c, issue_id: int, n: int, edition_id: int | None = None) -> int:
    return c.execute(
        text(
            "INSERT INTO deliveries (issue_id, edition_id, email, batch_no, status)"
            " VALUES (:i, :e, :m, 0, 'sent') RETURNING id"
        ),
        {"i": issue_id, "e": edition_id, "m": f"r{n}@example.com"},
    ).scalar_one()


def _edition(c, issue_id: int, key: str, title: str, comparison_id: int) -> int:
    eid = c.execute(
        text(
            "INSERT INTO editions (issue_id, key, label, frequency, topics, recipients, filled, subject, preheader,"
            " html, text, placeholder_nonce, links, created_at) VALUES (:i, :k, :k, 'weekly', '[]', 1, 0, :t, :p,"
            " :h, :x, :n, :l, '2026-01-05') RETURNING id"
        ),
        {
            "i": issue_id,
            "k": key,
            "t": title,
            "p": f"{title}. Issue 1.",
            "h": _html(title),
            "x": f"{title}\n",
            "n": NONCE,
            "l": json.dumps(LINKS),
        },
    ).scalar_one()
    c.execute(
        text(
            "INSERT INTO edition_items (edition_id, comparison_id, rank, score, score_parts, pinned, filler)"
            " VALUES (:e, :c, 1, 0.9, '{}', true, false)"
        ),
        {"e": eid, "c": comparison_id},
    )
    return eid


def _fill(engine: Engine) -> dict[str, int]:
    """Returns the ids the test looks at again."""
    with engine.begin() as c:
        a, b, z = _comparison(c, "a-vs-b"), _comparison(c, "c-vs-d"), _comparison(c, "e-vs-f")
        old = _issue(c, "2026-W02", "sent", "Before editions", links=LINKS)
        _item(c, old, a, 1, {"slug": "a-vs-b", "title": "A vs B (as sent)", "url": LINKS[0]["url"], "tools": []})
        _item(c, old, b, 2, {"slug": "c-vs-d", "title": "C vs D (as sent)", "url": "https://x.example/cd"})
        reader = _delivery(c, old, 1)
        _delivery(c, old, 2)
        c.execute(
            text(
                "INSERT INTO clicks (issue_id, delivery_id, reader, kind, link, method, at, hits)"
                " VALUES (:i, :d, :d, 'click', 0, 'GET', '2026-01-06', 1)"
            ),
            {"i": old, "d": reader},
        )
        oldest = _issue(c, "2026-W01", "sent", "Before snapshots")  # no links, no snapshot
        _item(c, oldest, b, 1, None)
        new = _issue(c, "2026-W03", "sending", "With editions", links=LINKS)
        main = _edition(c, new, "weekly/all", "With editions", z)
        topic = _edition(c, new, "weekly/notes", "Notes only", a)
        _item(c, new, z, 1, None)
        _delivery(c, new, 3, main)
        _delivery(c, new, 4, topic)
        _issue(c, "2026-W04", "draft", None)
        _issue(c, "2026-W05", "skipped", None)
    return {"old": old, "oldest": oldest, "new": new, "main": main, "topic": topic, "a": a, "b": b, "z": z}


def _editions(engine: Engine) -> list[tuple]:
    with engine.connect() as c:
        return [
            tuple(r)
            for r in c.execute(
                text(
                    "SELECT i.week, e.key, e.recipients, e.subject, e.placeholder_nonce FROM editions e"
                    " JOIN issues i ON i.id = e.issue_id ORDER BY i.week, e.id"
                )
            ).all()
        ]


def test_issues_frozen_before_editions_get_their_main_edition_and_the_copies_go(old_db: Engine, tmp_path: Path) -> None:
    ids = _fill(old_db)
    upgrade(old_db)
    assert _editions(old_db) == [
        ("2026-W01", "weekly/all", 0, "Before snapshots", NONCE),
        ("2026-W02", "weekly/all", 2, "Before editions", NONCE),
        ("2026-W03", "weekly/all", 1, "With editions", NONCE),  # as they were: nothing moved
        ("2026-W03", "weekly/notes", 1, "Notes only", NONCE),
    ]
    schema = inspect(old_db)
    assert "issue_items" not in schema.get_table_names()
    assert not set(COPIED) & {col["name"] for col in schema.get_columns("issues")}

    settings = load_config(write_project(tmp_path / "p")).settings
    with Session(old_db) as s:
        issues = {i.week: i for i in s.scalars(select(Issue).options(selectinload(Issue.main_edition)))}
        old = issues["2026-W02"].main_edition
        assert old is not None and old.label == "All topics, weekly" and old.links == LINKS
        assert [(i.rank, i.comparison_id, i.pinned, i.filler, (i.snapshot or {}).get("title")) for i in old.items] == [
            (1, ids["a"], True, False, "A vs B (as sent)"),
            (2, ids["b"], False, False, "C vs D (as sent)"),
        ]
        assert [(i.comparison_id, i.snapshot) for i in issues["2026-W01"].main_edition.items] == [(ids["b"], None)]
        assert issues["2026-W04"].main_edition is None and issues["2026-W05"].main_edition is None
        assert issues["2026-W03"].main_edition.id == ids["main"]

        page = web_version(settings, issues["2026-W02"])  # the archive reads the main edition
        assert "Before editions" in page and "@@" not in page
        # Deliveries and clicks made before editions are the main edition's in the reports.
        stats = {e["key"]: (e["recipients"], e["sent"]) for e in edition_stats(s, ids["old"])}
        assert stats == {"weekly/all": (2, 2)}
        clicks = click_report(s, issues["2026-W02"], settings.tracking)
        assert clicks["unique_clicks"] == 1 and clicks["comparisons"][0]["slug"] == "a-vs-b"
        assert clicks["comparisons"][0]["emails"] == 2
        # Selection never picks again what a frozen issue sent (its main edition's picks).
        assert featured_ids(s) == {ids["a"], ids["b"], ids["z"]}


def test_the_downgrade_gives_the_issue_its_copy_back(old_db: Engine) -> None:
    ids = _fill(old_db)
    with old_db.connect() as c:
        before = {
            r[0]: tuple(r[1:])
            for r in c.execute(text(f"SELECT week, {', '.join(COPIED)} FROM issues ORDER BY week")).all()
        }
        items_before = sorted(
            tuple(r) for r in c.execute(text("SELECT issue_id, comparison_id, rank, pinned FROM issue_items")).all()
        )
    editions_before = _editions(old_db)
    upgrade(old_db)
    command.downgrade(_alembic_config(old_db), "0005_h21")
    with old_db.connect() as c:
        after = {
            r[0]: tuple(r[1:])
            for r in c.execute(text(f"SELECT week, {', '.join(COPIED)} FROM issues ORDER BY week")).all()
        }
        items_after = sorted(
            tuple(r) for r in c.execute(text("SELECT issue_id, comparison_id, rank, pinned FROM issue_items")).all()
        )
    norm = {w: row[:5] + (json.loads(row[5]) if isinstance(row[5], str) else row[5],) for w, row in before.items()}
    assert {
        w: row[:5] + (json.loads(row[5]) if isinstance(row[5], str) else row[5],) for w, row in after.items()
    } == norm
    assert items_after == items_before and ids["old"] in {i for i, *_ in items_after}
    assert _editions(old_db) == editions_before  # the editions the upgrade made are gone again
    upgrade(old_db)  # and up again
    assert [e[:2] for e in _editions(old_db)] == [
        ("2026-W01", "weekly/all"),
        ("2026-W02", "weekly/all"),
        ("2026-W03", "weekly/all"),
        ("2026-W03", "weekly/notes"),
    ]
