"""Migration 0003_h17: addresses stored before IDN normalisation get their domain in punycode,
as every sign-up stores it now, without losing anyone's consent history or their "no".

The database is built at 0002_h4 (the schema before), filled the way the old code wrote it
(`anna@bücher.example`), then upgraded to head.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from digest.links import Tokens, email_hash
from digest.storage.db import make_engine, upgrade
from subscribers.addresses import normalize_email
from tests.conftest import database_at

OLD = "anna@bücher.example"
NEW = "anna@xn--bcher-kva.example"


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A database of each kind at 0002_h4, the schema just before this migration."""
    engine = make_engine(database_at(request, tmp_path, "0002_h4"))
    yield engine
    engine.dispose()


def _insert_subscriber(
    c,
    email: str,
    status: str,
    created: str,
    *,
    confirmed: str | None = None,
    unsubscribed: str | None = None,
    reason: str | None = None,
) -> int:
    return c.execute(
        text(
            "INSERT INTO subscribers (email, status, created_at, confirmed_at, unsubscribed_at, unsubscribe_reason)"
            " VALUES (:e, :s, :c, :conf, :u, :r) RETURNING id"
        ),
        {"e": email, "s": status, "c": created, "conf": confirmed, "u": unsubscribed, "r": reason},
    ).scalar_one()


def _consent(c, sid: int, kind: str, at: str, source: str) -> None:
    c.execute(
        text("INSERT INTO consent_records (subscriber_id, kind, created_at, source) VALUES (:s, :k, :a, :src)"),
        {"s": sid, "k": kind, "a": at, "src": source},
    )


def _issue(c, week: str) -> int:
    return c.execute(
        text(
            "INSERT INTO issues (week, status, created_at, pins, excludes)"
            " VALUES (:w, 'sent', '2026-01-01', '[]', '[]')"
            " RETURNING id"
        ),
        {"w": week},
    ).scalar_one()


def _delivery(c, issue_id: int, sid: int, email: str) -> None:
    c.execute(
        text(
            "INSERT INTO deliveries (issue_id, subscriber_id, email, batch_no, status) VALUES (:i, :s, :e, 0, 'sent')"
        ),
        {"i": issue_id, "s": sid, "e": email},
    )


def _rows(engine: Engine, sql: str, **params: object) -> list[tuple]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(text(sql), params).all()]


def test_the_normaliser_stores_the_domain_in_punycode() -> None:
    assert normalize_email(OLD) == NEW


def test_a_unicode_domain_is_rewritten_and_its_links_and_suppression_still_hold(old_db: Engine) -> None:
    with old_db.begin() as c:
        sid = _insert_subscriber(c, OLD, "active", "2026-01-01", confirmed="2026-01-02")
        gone = _insert_subscriber(c, "bo@bücher.example", "bounced", "2026-01-01")
        plain = _insert_subscriber(c, "plain@example.com", "active", "2026-01-01")
        c.execute(
            text("INSERT INTO suppressions (email_hash, reason, created_at) VALUES (:h, 'hard_bounce', '2026-02-01')"),
            {"h": email_hash("bo@bücher.example")},
        )
        issue = _issue(c, "2026-W05")
        _delivery(c, issue, sid, OLD)
    token = Tokens("k").unsubscribe(sid, OLD, issue)  # in a mailbox since before the migration
    upgrade(old_db)
    assert _rows(old_db, "SELECT id, email FROM subscribers ORDER BY id") == [
        (sid, NEW),
        (gone, "bo@xn--bcher-kva.example"),
        (plain, "plain@example.com"),
    ]
    assert _rows(old_db, "SELECT email FROM deliveries") == [(NEW,)]
    hashes = {h for (h,) in _rows(old_db, "SELECT email_hash FROM suppressions")}
    assert email_hash("bo@xn--bcher-kva.example") in hashes  # a sign-up checks the new form's hash
    claim = Tokens("k").read_unsubscribe(token)
    assert claim.matches(NEW)  # the old email's unsubscribe link still finds the person
    assert not claim.matches("anna@example.com")


def test_a_collision_keeps_the_older_confirmed_row_and_all_consent_history(old_db: Engine) -> None:
    with old_db.begin() as c:
        old = _insert_subscriber(c, OLD, "active", "2026-01-01", confirmed="2026-01-02")
        _consent(c, old, "signed_up", "2026-01-01", "web:hosted")
        _consent(c, old, "confirmed", "2026-01-02", "web:confirmation link")
        new = _insert_subscriber(c, NEW, "pending", "2026-03-01")
        _consent(c, new, "signed_up", "2026-03-01", "web:embed")
        c.execute(
            text(
                "INSERT INTO events (kind, subscriber_id, created_at, detail) VALUES ('subscribed', :s, "
                "'2026-03-01', '{}')"
            ),
            {"s": new},
        )
        w1, w2 = _issue(c, "2026-W05"), _issue(c, "2026-W10")
        _delivery(c, w1, old, OLD)
        _delivery(c, w2, new, NEW)
    upgrade(old_db)
    assert _rows(old_db, "SELECT id, email, status, confirmed_at IS NOT NULL FROM subscribers") == [
        (old, NEW, "active", True)
    ]
    assert _rows(old_db, "SELECT subscriber_id, kind, source FROM consent_records ORDER BY created_at") == [
        (old, "signed_up", "web:hosted"),
        (old, "confirmed", "web:confirmation link"),
        (old, "signed_up", "web:embed"),
    ]
    assert _rows(old_db, "SELECT subscriber_id, email FROM deliveries ORDER BY issue_id") == [(old, NEW), (old, NEW)]
    # Besides the merge's own event, 0004_h19 (at head) backfills the kept confirmed row's `confirmed` event.
    events = dict(_rows(old_db, "SELECT kind, detail FROM events WHERE kind <> 'subscribed'"))
    assert sorted(events) == ["confirmed", "merged"]
    assert f'"merged_subscriber_id": {new}' in str(events["merged"]).replace("'", '"')
    assert _rows(old_db, "SELECT subscriber_id FROM events WHERE kind = 'subscribed'") == [(old,)]


def test_a_collision_keeps_a_later_unsubscribe(old_db: Engine) -> None:
    """The person said no on one spelling after saying yes on the other: they stay unsubscribed."""
    with old_db.begin() as c:
        old = _insert_subscriber(c, OLD, "active", "2026-01-01", confirmed="2026-01-02")
        _insert_subscriber(
            c,
            NEW,
            "unsubscribed",
            "2026-02-01",
            confirmed="2026-02-02",
            unsubscribed="2026-04-01",
            reason="Too many emails",
        )
    upgrade(old_db)
    assert _rows(old_db, "SELECT id, email, status, unsubscribe_reason FROM subscribers") == [
        (old, NEW, "unsubscribed", "Too many emails")
    ]


def test_a_collision_with_a_bounced_row_stays_stopped(old_db: Engine) -> None:
    with old_db.begin() as c:
        _insert_subscriber(c, OLD, "complained", "2026-01-01", confirmed="2026-01-02", unsubscribed="2026-01-09")
        _insert_subscriber(c, NEW, "active", "2026-05-01", confirmed="2026-05-02")
    upgrade(old_db)
    assert _rows(old_db, "SELECT email, status FROM subscribers") == [(NEW, "complained")]
