"""The click recorder writes every queued click when it stops, however many queued up (a burst after a send)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from digest.reports.clicklog import CHUNK, ClickRecorder
from digest.reports.insights import click_report, sent_count
from digest.storage.models import Click, Issue
from digest.weeks import utcnow
from tests.support_serve import send_this_week


def test_stop_writes_every_queued_click_in_chunks(rt) -> None:
    sent = send_this_week(rt, people=2)
    delivery = sent.deliveries["reader000@example.com"]
    recorder = ClickRecorder(rt.sessions, flush_seconds=3600)  # only stop() writes
    recorder.start()
    many = 2 * CHUNK + 17
    start = utcnow()
    for n in range(many):  # a minute apart: no click repeats another within `repeat_seconds`, each is a row
        recorder.record(
            issue_id=sent.issue_id,
            delivery_id=delivery,
            link=n % 6,
            method="GET",
            agent=None,
            at=start + timedelta(minutes=n),
        )
    recorder.stop()
    assert recorder.pending == 0
    with rt.sessions() as s:
        assert s.scalar(select(func.count(Click.id))) == many
        assert s.scalar(select(func.sum(Click.hits))) == many


def _rows(rt) -> list[tuple[int, int, str, str | None, int]]:
    with rt.sessions() as s:
        rows = s.execute(select(Click.delivery_id, Click).order_by(Click.id)).all()
        return sorted([(int(d or 0), c.link, c.method, c.agent, c.hits) for d, c in rows], key=repr)


def test_repeats_of_one_link_within_the_window_are_counted_on_one_row(rt) -> None:
    """A reader's link requested over and over (a flood, a stuck client) adds to one row per window, in the
    queue and at the flush (to the row written before); anything that differs is a row of its own."""
    sent = send_this_week(rt, people=2)
    one, two = sent.deliveries["reader000@example.com"], sent.deliveries["reader001@example.com"]
    recorder = ClickRecorder(rt.sessions, flush_seconds=3600, repeat_seconds=60)
    start = utcnow()

    def click(n: int, seconds: float, **kw) -> None:  # type: ignore[no-untyped-def]
        for _ in range(n):
            recorder.record(
                **{
                    "issue_id": sent.issue_id,
                    "delivery_id": one,
                    "link": 1,
                    "method": "GET",
                    "agent": None,
                    "at": start + timedelta(seconds=seconds),
                    **kw,
                }
            )

    click(700, 0)
    assert recorder.pending == 1  # folded in the queue already
    assert recorder.flush() == 700
    click(500, 30)  # the same window: added to the row written above
    click(3, 1, method="HEAD")
    click(2, 2, agent="barracuda")
    click(4, 3, link=2)
    click(5, 4, delivery_id=two)
    assert recorder.flush() == 514
    click(6, 61)  # past the window: a row of its own
    click(1, 62, kind="open", link=-1)
    assert recorder.flush() == 7
    assert _rows(rt) == sorted(
        [
            (one, 1, "GET", None, 1200),
            (one, 1, "HEAD", None, 3),
            (one, 1, "GET", "barracuda", 2),
            (one, 2, "GET", None, 4),
            (two, 1, "GET", None, 5),
            (one, 1, "GET", None, 6),
            (one, -1, "GET", None, 1),
        ],
        key=repr,
    )
    with rt.sessions() as s:
        issue = s.get(Issue, sent.issue_id)
        report = click_report(s, issue, rt.settings.tracking, sent_count(s, sent.issue_id))
    assert report["recorded"] == 1200 + 3 + 2 + 4 + 5 + 6  # every request counted, as when each was a row
    assert report["set_aside"] == {"head": 3, "scanner_agent": 2, "burst": 0}
    assert report["reader_clicks"] == 1200 + 4 + 5 + 6 and report["unique_clicks"] == 2
    by_link = {row["link"]: row for row in report["links"]}
    assert by_link[1]["clicks"] == 1200 + 5 + 6 and by_link[1]["unique_clicks"] == 2
    assert by_link[2]["clicks"] == 4 and by_link[2]["unique_clicks"] == 1


def test_folding_repeats_leaves_bursts_as_they_were(rt) -> None:
    """A burst is several different links of one message within seconds: repeats of one link added to
    its row neither make one nor hide one."""
    sent = send_this_week(rt, people=2)
    gateway, reader = sent.deliveries["reader000@example.com"], sent.deliveries["reader001@example.com"]
    recorder = ClickRecorder(rt.sessions, flush_seconds=3600, repeat_seconds=60)
    start = utcnow()
    for n in range(6):  # every link of the mail within a second, each twice
        for _ in range(2):
            recorder.record(
                issue_id=sent.issue_id,
                delivery_id=gateway,
                link=n,
                method="GET",
                agent=None,
                at=start + timedelta(milliseconds=100 * n),
            )
    for n in range(50):  # one link, fifty times within seconds: a person (or a stuck client), not a burst
        recorder.record(
            issue_id=sent.issue_id,
            delivery_id=reader,
            link=3,
            method="GET",
            agent=None,
            at=start + timedelta(milliseconds=50 * n),
        )
    assert recorder.flush() == 62
    with rt.sessions() as s:
        report = click_report(s, s.get(Issue, sent.issue_id), rt.settings.tracking)
    assert report["set_aside"]["burst"] == 12
    assert report["reader_clicks"] == 50 and report["unique_clicks"] == 1
