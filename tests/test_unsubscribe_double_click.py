"""A double click (or a mail client repeating RFC 8058's one-click POST) on the unsubscribe page
changes the subscription once: one event, one consent record, however many requests race.

The requests go through a real uvicorn. On PostgreSQL the test holds the subscriber's row lock
while they arrive and lets go only once every request is waiting for a lock (pg_stat_activity
says so): the race is then certain, not a matter of luck. Without the row lock each request has
already read "active" by then and writes its own event. SQLite has one writer at a time (every
write transaction starts with BEGIN IMMEDIATE); there the requests are released together.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from digest.links import Tokens
from digest.runtime import Runtime
from digest.storage.models import ConsentRecord, Event, Subscriber, SubscriberStatus
from digest.weeks import utcnow
from subscribers.api import add_subscriber
from tests.support_subscribers import LiveServer, bound_socket, runtime_with, wait_for

PRESSES = 3


@dataclass
class Live:
    rt: Runtime
    url: str
    db_url: str
    sub_id: int
    token: str


@pytest.fixture
def live(tmp_path: Path, db_url: str) -> Iterator[Live]:
    rt = runtime_with(tmp_path / "p", db_url)
    with rt.sessions.begin() as s:
        sub = add_subscriber(s, "reader@example.com", confirmed=True).subscriber
        s.flush()
        sub_id = sub.id
    token = Tokens(rt.secret_key).unsubscribe(sub_id, "reader@example.com")
    sock = bound_socket()
    server = LiveServer(sock, tmp_path / "p" / "config.toml", db_url)
    try:
        server.wait_ready()
        yield Live(rt, server.url, db_url, sub_id, token)
    finally:
        log = server.stop()
        rt.close()
        assert "Traceback" not in log, log


def _race(live: Live, data: dict[str, str]) -> list[int]:
    """POST `data` to the unsubscribe link PRESSES times at once; the answers' status codes."""
    statuses: list[int] = []
    start = threading.Barrier(PRESSES)

    def press() -> None:
        start.wait()
        r = httpx.post(f"{live.url}/u/{live.token}", data=data, timeout=60)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=press) for _ in range(PRESSES)]
    if not live.db_url.startswith("postgresql"):
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        return statuses
    holder = create_engine(live.db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with holder.connect() as conn:
            tx = conn.begin()
            conn.execute(text("SELECT id FROM subscribers WHERE id = :id FOR UPDATE"), {"id": live.sub_id})
            me = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            for t in threads:
                t.start()

            def waiting() -> bool:
                with holder.connect() as probe:
                    n = probe.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND pid <> :me"
                        ),
                        {"me": me},
                    ).scalar_one()
                return n >= PRESSES

            assert wait_for(waiting, timeout=60), "the requests never reached the database"
            tx.rollback()
        for t in threads:
            t.join(90)
    finally:
        holder.dispose()
    return statuses


def _count(rt: Runtime, model: type, **where: object) -> int:
    with rt.sessions() as s:
        q = select(func.count()).select_from(model)
        for column, value in where.items():
            q = q.where(getattr(model, column) == value)
        return s.scalar(q) or 0


def _status(rt: Runtime, sub_id: int) -> str:
    with rt.sessions() as s:
        sub = s.get(Subscriber, sub_id)
        assert sub is not None
        return sub.status


def test_a_double_click_on_unsubscribe_writes_one_event_and_one_reason(live: Live) -> None:
    statuses = _race(live, {"action": "unsubscribe", "reason": "not_relevant", "reason_text": ""})
    assert statuses == [303] * PRESSES
    assert _status(live.rt, live.sub_id) == SubscriberStatus.UNSUBSCRIBED
    assert _count(live.rt, Event, kind="unsubscribed") == 1
    assert _count(live.rt, Event, kind="unsubscribe_reason") == 1


def test_repeated_one_click_posts_write_one_event(live: Live) -> None:
    statuses = _race(live, {"List-Unsubscribe": "One-Click"})
    assert statuses == [200] * PRESSES
    assert _status(live.rt, live.sub_id) == SubscriberStatus.UNSUBSCRIBED
    assert _count(live.rt, Event, kind="unsubscribed") == 1


def test_a_double_click_on_resubscribe_writes_one_event_and_one_consent_record(live: Live) -> None:
    with live.rt.sessions.begin() as s:
        sub = s.get(Subscriber, live.sub_id)
        assert sub is not None
        sub.status, sub.unsubscribed_at = SubscriberStatus.UNSUBSCRIBED, utcnow()
    statuses = _race(live, {"action": "resubscribe"})
    assert statuses == [303] * PRESSES
    assert _status(live.rt, live.sub_id) == SubscriberStatus.ACTIVE
    assert _count(live.rt, Event, kind="resubscribed") == 1
    assert _count(live.rt, ConsentRecord, kind="resubscribed") == 1
