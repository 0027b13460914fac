"""The click recorder writes every queued click when it stops, however many queued up (a burst after a send)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from digest.delivery.clicklog import CHUNK, ClickRecorder
from digest.storage.models import Click, Delivery, Issue
from digest.weeks import utcnow
from tests.support_serve import seed, send_issue


def test_stop_writes_every_queued_click_in_chunks(rt) -> None:
    now = utcnow()
    seed(rt, now - timedelta(days=1), people=2)
    week = f"{now.isocalendar()[0]}-W{now.isocalendar()[1]:02d}"
    send_issue(rt, week, now)
    with rt.sessions() as s:
        issue = s.scalar(select(Issue).where(Issue.week == week))
        delivery = s.scalar(select(Delivery.id).where(Delivery.issue_id == issue.id).limit(1))
    recorder = ClickRecorder(rt.sessions, flush_seconds=3600)  # only stop() writes
    recorder.start()
    many = 2 * CHUNK + 17
    for n in range(many):
        recorder.record(issue_id=issue.id, delivery_id=delivery, link=n % 6, method="GET", agent=None)
    recorder.stop()
    assert recorder.pending == 0
    with rt.sessions() as s:
        assert s.scalar(select(func.count(Click.id))) == many
