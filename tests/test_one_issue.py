"""Invariant 1 and 2 under concurrency: racing runs make one issue and one delivery per reader."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from digest.cycle.freeze import prepare
from digest.cycle.send import send_week
from digest.storage.models import Delivery, Issue
from digest.weeks import Week
from tests.test_cycle import seed


def test_racing_prepares_make_one_issue(rt) -> None:
    now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
    seed(rt, published=now - timedelta(days=1), people=25)
    week = Week.parse("2026-W47")
    results, errors = [], []

    def run() -> None:
        try:
            results.append(prepare(rt, week, manual=True, now=now))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(1 for r in results if r.frozen_now) == 1
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 1
        assert s.scalar(select(func.count()).select_from(Delivery)) == 25
    send_week(rt, week, manual=True, now=now)
    send_week(rt, week, manual=True, now=now)
    assert len(list((rt.outbox_dir / "2026-W47").glob("*.eml"))) == 25
