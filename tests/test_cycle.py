"""The weekly cycle end to end on the outbox transport, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from digest.cycle.send import send_week
from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.storage.models import Delivery, Issue
from digest.weeks import Week
from subscribers.api import add_subscriber
from tests.conftest import SAMPLES


def seed(rt, published: datetime | None = None, people: int = 3) -> None:
    with rt.sessions.begin() as s:
        for src in expand([str(SAMPLES)]):
            upsert(s, src.items, default_url="https://verdicts.example.com/compare", published=published)
        for i in range(people):
            add_subscriber(s, f"reader{i}@example.com", name=f"Reader {i}", confirmed=True)


def test_send_writes_one_eml_per_confirmed_subscriber_once(rt) -> None:
    now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W47
    seed(rt, published=now - timedelta(days=1))
    with rt.sessions.begin() as s:
        add_subscriber(s, "pending@example.com")  # not confirmed: gets nothing
    week = Week.parse("2026-W47")
    first = send_week(rt, week, manual=True, now=now)
    assert first.summary is not None and first.summary.sent == 3
    files = sorted((rt.outbox_dir / "2026-W47").glob("*.eml"))
    assert len(files) == 3
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        assert msg["List-Unsubscribe"].startswith("<http") and "mailto:" in msg["List-Unsubscribe"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        kinds = {p.get_content_type() for p in msg.walk()}
        assert {"text/plain", "text/html"} <= kinds
    second = send_week(rt, week, manual=True, now=now)
    assert second.summary is None  # already sent
    assert len(list((rt.outbox_dir / "2026-W47").glob("*.eml"))) == 3
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 1
        assert s.scalar(select(func.count()).select_from(Delivery)) == 3
