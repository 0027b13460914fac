"""Privacy of click tracking: `forget` and the retention period make clicks nobody's, and the counts stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from digest.reports.clicklog import ClickRecorder, unlink_older_than
from digest.reports.insights import click_report, sent_count
from digest.storage.models import Click, Issue
from digest.weeks import utcnow
from subscribers.erasure import forget
from tests.support_serve import send_this_week


def _issue_with_clicks(rt):
    sent = send_this_week(rt, people=3)
    now, deliveries = sent.now, sent.deliveries
    recorder = ClickRecorder(rt.sessions)
    for n, (address, link) in enumerate(
        (
            ("reader000@example.com", 1),
            ("reader000@example.com", 1),
            ("reader001@example.com", 4),
            ("reader002@example.com", 1),
        )
    ):
        recorder.record(
            issue_id=sent.issue_id,
            delivery_id=deliveries[address],
            link=link,
            method="GET",
            agent=None,
            at=now + timedelta(minutes=n),
        )
    recorder.record(
        issue_id=sent.issue_id,
        delivery_id=deliveries["reader000@example.com"],
        link=1,
        method="HEAD",
        agent="barracuda",
        at=now,
    )
    assert recorder.flush() == 5 and recorder.pending == 0
    return sent.issue_id, deliveries


def _report(rt, issue_id):
    with rt.sessions() as s:
        issue = s.get(Issue, issue_id)
        report = click_report(s, issue, rt.settings.tracking, sent_count(s, issue_id))
    return {k: report[k] for k in ("unique_clicks", "reader_clicks", "set_aside", "comparisons", "links")}


def test_forget_makes_a_persons_clicks_nobodys_and_the_counts_stay(rt) -> None:
    issue_id, deliveries = _issue_with_clicks(rt)
    before = _report(rt, issue_id)
    assert before["unique_clicks"] == 3 and before["set_aside"]["head"] == 1
    forget(rt, "reader000@example.com")
    with rt.sessions() as s:
        theirs = s.scalars(select(Click).where(Click.delivery_id == deliveries["reader000@example.com"])).all()
        assert theirs == []
        anonymous = s.scalars(select(Click).where(Click.delivery_id.is_(None))).all()
        assert len(anonymous) == 3 and all(c.agent is None for c in anonymous)
        assert len({c.reader for c in anonymous}) == 1 and anonymous[0].reader < 0  # still one message
        assert deliveries["reader000@example.com"] not in {c.reader for c in s.scalars(select(Click))}
        others = s.scalars(select(Click).where(Click.delivery_id == deliveries["reader001@example.com"])).all()
        assert len(others) == 1  # nobody else's clicks changed
    after = _report(rt, issue_id)
    assert after["unique_clicks"] == before["unique_clicks"] and after["comparisons"] == before["comparisons"]
    assert after["links"] == before["links"] and after["reader_clicks"] == before["reader_clicks"]


def test_clicks_past_the_retention_period_stop_naming_anyone(rt) -> None:
    issue_id, _ = _issue_with_clicks(rt)
    before = _report(rt, issue_id)
    with rt.sessions.begin() as s:
        assert unlink_older_than(s, rt.settings.tracking.retention_days) == 0  # all recent
    with rt.sessions.begin() as s:
        later = utcnow() + timedelta(days=rt.settings.tracking.retention_days + 1)
        assert unlink_older_than(s, rt.settings.tracking.retention_days, now=later) == 5
    with rt.sessions() as s:
        assert s.scalars(select(Click).where(Click.delivery_id.is_not(None))).all() == []
    after = _report(rt, issue_id)
    assert after["unique_clicks"] == before["unique_clicks"] and after["comparisons"] == before["comparisons"]


def test_forget_and_the_retention_period_keep_a_rows_repeats_counted(rt) -> None:
    """A row standing for several requests of one link (`hits`) keeps them when it is made nobody's."""
    sent = send_this_week(rt, people=2)
    recorder = ClickRecorder(rt.sessions)
    for address in ("reader000@example.com", "reader001@example.com"):
        for _ in range(5):
            recorder.record(
                issue_id=sent.issue_id,
                delivery_id=sent.deliveries[address],
                link=1,
                method="GET",
                agent=None,
                at=sent.now,
            )
    assert recorder.flush() == 10
    before = _report(rt, sent.issue_id)
    assert before["reader_clicks"] == 10 and before["unique_clicks"] == 2
    forget(rt, "reader000@example.com")
    with rt.sessions.begin() as s:
        later = utcnow() + timedelta(days=rt.settings.tracking.retention_days + 1)
        assert unlink_older_than(s, rt.settings.tracking.retention_days, now=later) == 1
    with rt.sessions() as s:
        assert [c.hits for c in s.scalars(select(Click).where(Click.delivery_id.is_(None)))] == [5, 5]
    assert _report(rt, sent.issue_id) == before
