"""`forget` finds every row of the person through an index (milliseconds at any age), and still clears
exactly their deliveries: by subscriber, and those that kept the address without one (a merged spelling)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, inspect, select

from digest.delivery.mail_queue import queue_mail
from digest.storage.models import Delivery, Issue, OutgoingMail, Subscriber
from subscribers.api import add_subscriber
from subscribers.erasure import forget
from tests.support_subscribers import runtime_with

TABLES = (
    "deliveries",
    "clicks",
    "events",
    "subscribers",
    "consent_records",
    "outgoing_mail",
    "suppressions",
    "rate_limit_hits",
)


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def _people_with_deliveries(rt) -> dict[str, int]:
    """Ann and Bob got two issues; one delivery keeps Ann's address without a subscriber (0003_h17's merge
    leftover), one was erased earlier. Returns the delivery ids by what they are."""
    with rt.sessions.begin() as s:
        ann = add_subscriber(s, "ann@example.com", confirmed=True).subscriber
        bob = add_subscriber(s, "bob@example.com", confirmed=True).subscriber
        queue_mail(s, "welcome", ann.id)
        issues = [Issue(week=f"2026-W4{n}", status="sent") for n in range(3)]
        s.add_all(issues)
        s.flush()
        rows = {
            "ann 1": Delivery(issue_id=issues[0].id, subscriber_id=ann.id, email=ann.email, batch_no=0),
            "ann 2": Delivery(issue_id=issues[1].id, subscriber_id=ann.id, email=ann.email, batch_no=0),
            "bob 1": Delivery(issue_id=issues[0].id, subscriber_id=bob.id, email=bob.email, batch_no=0),
            "ann unlinked": Delivery(issue_id=issues[2].id, subscriber_id=None, email=ann.email, batch_no=0),
            "erased": Delivery(issue_id=issues[2].id, subscriber_id=None, email="", batch_no=1),
        }
        s.add_all(rows.values())
        s.flush()
        return {name: d.id for name, d in rows.items()}


def test_forget_clears_their_deliveries_and_the_unlinked_ones_with_their_address_only(srt) -> None:
    ids = _people_with_deliveries(srt)
    result = forget(srt, "Ann@Example.com")
    assert result.found and result.deliveries_cleared == 3
    with srt.sessions() as s:
        left = {d.id: (d.email, d.subscriber_id) for d in s.scalars(select(Delivery))}
        bob = s.scalar(select(Subscriber.id).where(Subscriber.email == "bob@example.com"))
        assert s.scalar(select(OutgoingMail.id)) is None  # Ann's queued welcome went with her
    assert [left[ids[n]] for n in ("ann 1", "ann 2", "ann unlinked", "erased")] == [("", None)] * 4
    assert left[ids["bob 1"]] == ("bob@example.com", bob)


def test_forgetting_an_address_not_on_the_list_clears_its_unlinked_deliveries(srt) -> None:
    ids = _people_with_deliveries(srt)
    with srt.sessions.begin() as s:
        s.get(Delivery, ids["ann unlinked"]).email = "old-spelling@example.com"
    result = forget(srt, "old-spelling@example.com")
    assert not result.found and result.deliveries_cleared == 1
    with srt.sessions() as s:
        assert s.get(Delivery, ids["ann unlinked"]).email == ""
        assert s.get(Delivery, ids["ann 1"]).email == "ann@example.com"


def _plan(conn, statement: str, params) -> str:  # type: ignore[no-untyped-def]
    if conn.dialect.name == "postgresql":
        return "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))
    return "\n".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params))


def _scans(plan: str, postgres: bool) -> list[str]:
    """The tables a plan reads whole (PostgreSQL with sequential scans priced out, so any left is forced)."""
    pattern = r"Seq Scan on (\w+)" if postgres else r"\bSCAN (\w+)"
    return [t for t in re.findall(pattern, plan) if t in TABLES]


def test_every_statement_forget_runs_reads_through_an_index(srt) -> None:
    _people_with_deliveries(srt)
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if not executemany and statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            seen.append((statement, params))

    event.listen(srt.engine, "before_cursor_execute", record)
    try:
        forget(srt, "ann@example.com")
    finally:
        event.remove(srt.engine, "before_cursor_execute", record)
    postgres = srt.engine.dialect.name == "postgresql"
    assert any("deliveries" in statement for statement, _ in seen)
    with srt.engine.connect() as conn:
        if postgres:
            conn.exec_driver_sql("SET enable_seqscan = off")
        scans = {statement: _scans(_plan(conn, statement, params), postgres) for statement, params in seen}
    assert {statement: tables for statement, tables in scans.items() if tables} == {}


def test_every_foreign_key_to_a_subscriber_is_indexed(srt) -> None:
    """Deleting the subscriber cascades (consent records, queued mail) or unlinks (events, deliveries):
    without an index on the referencing column the database reads that whole table to do it."""
    inspector = inspect(srt.engine)
    unindexed = []
    for table in inspector.get_table_names():
        leading = {tuple(ix["column_names"][:1]) for ix in inspector.get_indexes(table)}
        leading |= {tuple(u["column_names"][:1]) for u in inspector.get_unique_constraints(table)}
        for fk in inspector.get_foreign_keys(table):
            if fk["referred_table"] == "subscribers" and tuple(fk["constrained_columns"][:1]) not in leading:
                unindexed.append(f"{table}.{fk['constrained_columns'][0]}")
    assert unindexed == []
