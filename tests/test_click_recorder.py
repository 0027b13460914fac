"""The click recorder writes every queued click when it stops, however many queued up (a burst after a send)."""

from __future__ import annotations

from sqlalchemy import func, select

from digest.delivery.clicklog import CHUNK, ClickRecorder
from digest.storage.models import Click
from tests.support_serve import send_this_week


def test_stop_writes_every_queued_click_in_chunks(rt) -> None:
    sent = send_this_week(rt, people=2)
    delivery = sent.deliveries["reader000@example.com"]
    recorder = ClickRecorder(rt.sessions, flush_seconds=3600)  # only stop() writes
    recorder.start()
    many = 2 * CHUNK + 17
    for n in range(many):
        recorder.record(issue_id=sent.issue_id, delivery_id=delivery, link=n % 6, method="GET", agent=None)
    recorder.stop()
    assert recorder.pending == 0
    with rt.sessions() as s:
        assert s.scalar(select(func.count(Click.id))) == many
