"""Migration 0004_h19: readers added before the operator's add wrote a `confirmed` event get one,
so the list's size over time (rebuilt from events, `digest stats`) counts them.

The database is built at 0003_h18 (main's head before), filled the way the old code left it,
then upgraded to head; the weekly numbers are read with the report's own function.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from digest.reports.insights import subscribers_by_week
from digest.storage.db import _alembic_config, make_engine, upgrade
from tests.conftest import database_at


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A database of each kind at 0003_h18, the schema just before this migration."""
    engine = make_engine(database_at(request, tmp_path, "0003_h18"))
    yield engine
    engine.dispose()


def _sub(c, email: str, status: str, created: str, confirmed: str | None = None, source: str | None = None) -> int:
    return c.execute(
        text(
            "INSERT INTO subscribers (email, status, created_at, confirmed_at, consent_source)"
            " VALUES (:e, :s, :c, :conf, :src) RETURNING id"
        ),
        {"e": email, "s": status, "c": created, "conf": confirmed, "src": source},
    ).scalar_one()


def _event(c, kind: str, sid: int, at: str) -> None:
    c.execute(
        text("INSERT INTO events (kind, subscriber_id, detail, created_at) VALUES (:k, :s, '{}', :a)"),
        {"k": kind, "s": sid, "a": at},
    )


def _confirmed(engine: Engine) -> dict[int, list[str]]:
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT subscriber_id, created_at FROM events WHERE kind = 'confirmed' ORDER BY id")
        ).all()
    out: dict[int, list[str]] = {}
    for sid, at in rows:
        out.setdefault(sid, []).append(str(at)[:10])
    return out


def test_readers_confirmed_without_an_event_get_one_and_the_list_size_comes_out_right(old_db: Engine) -> None:
    with old_db.begin() as c:
        added = _sub(
            c, "added@example.com", "active", "2026-01-05 09:00:00", "2026-01-05 09:00:00", "cli: told me at the meetup"
        )
        _event(c, "subscribed", added, "2026-01-05 09:00:00")
        no_date = _sub(c, "no-date@example.com", "active", "2026-01-12 09:00:00")
        left = _sub(c, "left@example.com", "unsubscribed", "2026-01-06 09:00:00", "2026-01-06 09:00:00")
        _event(c, "unsubscribed", left, "2026-02-02 09:00:00")
        bounced = _sub(c, "bounced@example.com", "bounced", "2026-01-13 09:00:00")  # got an issue: was on the list
        issue = c.execute(
            text(
                "INSERT INTO issues (week, status, created_at, pins, excludes)"
                " VALUES ('2026-W03', 'sent', '2026-01-14', '[]', '[]') RETURNING id"
            )
        ).scalar_one()
        c.execute(
            text(
                "INSERT INTO deliveries (issue_id, subscriber_id, email, batch_no, status)"
                " VALUES (:i, :s, 'bounced@example.com', 0, 'sent')"
            ),
            {"i": issue, "s": bounced},
        )
        _event(c, "bounced", bounced, "2026-02-09 09:00:00")
        never = _sub(c, "never@example.com", "bounced", "2026-01-13 09:00:00")  # its confirmation bounced
        pending = _sub(c, "pending@example.com", "pending", "2026-01-13 09:00:00")
        web = _sub(c, "web@example.com", "active", "2026-01-19 09:00:00", "2026-01-19 09:00:00")
        _event(c, "confirmed", web, "2026-01-19 09:00:00")
        complained = _sub(c, "complained@example.com", "complained", "2026-01-14 09:00:00", "2026-01-14 09:00:00")
        _event(c, "complained", complained, "2026-02-16 09:00:00")

    upgrade(old_db)
    confirmed = _confirmed(old_db)
    assert confirmed == {
        web: ["2026-01-19"],
        added: ["2026-01-05"],
        no_date: ["2026-01-12"],
        left: ["2026-01-06"],
        bounced: ["2026-01-13"],
        complained: ["2026-01-14"],
    }
    assert never not in confirmed and pending not in confirmed
    with old_db.connect() as c:
        detail = c.execute(
            text("SELECT detail FROM events WHERE kind = 'confirmed' AND subscriber_id = :s"), {"s": added}
        ).scalar_one()
    detail = detail if isinstance(detail, dict) else __import__("json").loads(detail)
    assert detail["source"] == "cli: told me at the meetup" and detail["backfilled"] == "0004_h19"

    with Session(old_db) as s:
        weeks = {w["week"]: w for w in subscribers_by_week(s, weeks=52)}
    assert {k: w["list_size"] for k, w in weeks.items()} == {
        "2026-W02": 2,
        "2026-W03": 5,
        "2026-W04": 6,
        "2026-W06": 5,
        "2026-W07": 4,
        "2026-W08": 3,
    }
    assert weeks["2026-W03"]["confirmations"] == 3

    command.downgrade(_alembic_config(old_db), "0003_h18")  # data only: nothing to undo
    upgrade(old_db)  # and running it again adds nothing twice
    assert _confirmed(old_db) == confirmed
