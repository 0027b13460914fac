"""Opens per edition: each edition's unique opens count its own readers' pixel opens (scanners set aside)
and provider stamps, as the issue's total does, so an operator can compare editions on opens as on clicks."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update

from digest.reports.clicklog import ClickRecorder
from digest.reports.insights import csv_rows
from digest.reports.stats import issue_stats
from digest.storage.models import Delivery, Issue, Subscriber
from digest.weeks import Week, utcnow
from tests.support_editions import add_reader, seed_categories
from tests.support_serve import send_issue


def test_each_edition_counts_its_own_readers_opens(rt) -> None:
    now = utcnow()
    seed_categories(rt, published=now - timedelta(days=1))
    for n in range(3):
        add_reader(rt, f"all{n}@example.com")
    for n in range(2):
        add_reader(rt, f"models{n}@example.com", topics="open-models")
    week = Week.of(now).key
    send_issue(rt, week, now)
    with rt.sessions.begin() as s:
        issue = s.scalars(select(Issue).where(Issue.week == week)).one()
        delivery = {
            email: did
            for did, email in s.execute(
                select(Delivery.id, Subscriber.email)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.issue_id == issue.id)
            )
        }
        # A provider's `opened` stamp for one all-topics reader.
        s.execute(update(Delivery).where(Delivery.id == delivery["all0@example.com"]).values(opened_at=now))
        issue_id = issue.id
    recorder = ClickRecorder(rt.sessions)
    for address, agent in (
        ("all1@example.com", None),
        ("all1@example.com", None),  # one reader, twice
        ("models0@example.com", None),
        ("models1@example.com", "barracuda"),
    ):  # a scanner
        recorder.record(
            issue_id=issue_id, delivery_id=delivery[address], link=-1, method="GET", kind="open", agent=agent, at=now
        )
    assert recorder.flush() == 4

    with rt.sessions() as s:
        stats = issue_stats(s, s.get(Issue, issue_id), tracking=rt.settings.tracking)
    by_key = {ed["key"]: ed for ed in stats["editions"]}
    assert stats["opens"]["unique_opens"] == 3  # all0 (stamp), all1 (pixel), models0 (pixel)
    assert by_key["weekly/all"]["opens"]["unique_opens"] == 2
    assert by_key["weekly/all"]["opens"]["open_rate"] == round(2 / 3, 4)
    assert by_key["weekly/open-models"]["opens"]["unique_opens"] == 1  # the scanner's open is set aside
    assert by_key["weekly/open-models"]["opens"]["open_rate"] == 0.5
    json.dumps(stats)  # `digest stats --json` prints it
    rows = {(r[0], r[1], r[2]): r[3] for r in csv_rows(stats)[1:]}
    assert rows[("edition", "weekly/open-models", "unique_opens")] == 1
    assert rows[("edition", "weekly/all", "unique_opens")] == 2


def test_an_editions_opens_stay_counted_after_the_retention_period_unlinks_them(rt) -> None:
    """Unlinking (retention, `forget`) makes an open nobody's; it still counts, in its edition too."""
    from digest.reports.clicklog import unlink_older_than

    now = utcnow()
    seed_categories(rt, published=now - timedelta(days=1))
    add_reader(rt, "all@example.com")
    add_reader(rt, "models@example.com", topics="open-models")
    week = Week.of(now).key
    send_issue(rt, week, now)
    with rt.sessions() as s:
        issue_id = s.scalars(select(Issue.id).where(Issue.week == week)).one()
        delivery = dict(
            s.execute(
                select(Subscriber.email, Delivery.id)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Delivery.issue_id == issue_id)
            ).all()
        )
    recorder = ClickRecorder(rt.sessions)
    recorder.record(
        issue_id=issue_id,
        delivery_id=delivery["models@example.com"],
        link=-1,
        method="GET",
        kind="open",
        agent=None,
        at=now,
    )
    assert recorder.flush() == 1

    def opens() -> dict[str, int]:
        with rt.sessions() as s:
            stats = issue_stats(s, s.get(Issue, issue_id), tracking=rt.settings.tracking)
        return {ed["key"]: ed["opens"]["unique_opens"] for ed in stats["editions"]} | {
            "issue": stats["opens"]["unique_opens"]
        }

    assert opens() == {"weekly/all": 0, "weekly/open-models": 1, "issue": 1}
    with rt.sessions.begin() as s:
        assert (
            unlink_older_than(
                s,
                rt.settings.tracking.retention_days,
                now=now + timedelta(days=rt.settings.tracking.retention_days + 1),
            )
            == 1
        )
    assert opens() == {"weekly/all": 0, "weekly/open-models": 1, "issue": 1}
