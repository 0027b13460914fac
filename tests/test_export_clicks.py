"""`subscribers export` carries each person's own recorded clicks and opens (issue 15 privacy):
when, which issue, which comparison and link, and whether it was set aside as a scanner's.
Clicks that forget or the retention period made nobody's are in nobody's export."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from digest.reports.clicklog import ClickRecorder, unlink_older_than
from digest.weeks import utcnow
from subscribers.csvio import EXPORT_COLUMNS, export_csv
from tests.support_serve import send_this_week


def _export(rt) -> dict[str, dict[str, str]]:
    out = io.StringIO()
    export_csv(rt, None, out)
    return {r["email"]: r for r in csv.DictReader(io.StringIO(out.getvalue()))}


def test_export_lists_a_persons_own_clicks_and_opens_and_not_unlinked_ones(rt) -> None:
    sent = send_this_week(rt, people=3)
    now, week, deliveries, links = sent.now, sent.week, sent.deliveries, sent.links
    recorder = ClickRecorder(rt.sessions)
    recorder.record(
        issue_id=sent.issue_id,
        delivery_id=deliveries["reader000@example.com"],
        link=1,
        method="GET",
        agent=None,
        at=now,
    )
    recorder.record(
        issue_id=sent.issue_id,
        delivery_id=deliveries["reader000@example.com"],
        link=1,
        method="HEAD",
        agent="barracuda",
        at=now + timedelta(seconds=1),
    )
    recorder.record(
        issue_id=sent.issue_id,
        delivery_id=deliveries["reader000@example.com"],
        link=-1,
        method="GET",
        agent=None,
        kind="open",
        at=now + timedelta(minutes=2),
    )
    recorder.record(
        issue_id=sent.issue_id,
        delivery_id=deliveries["reader001@example.com"],
        link=4,
        method="GET",
        agent=None,
        at=now,
    )
    assert recorder.flush() == 4

    assert EXPORT_COLUMNS[-1] == "clicks"
    rows = _export(rt)
    mine = json.loads(rows["reader000@example.com"]["clicks"])
    assert [(c["kind"], c["issue"], c["link"], c["set_aside"]) for c in mine] == [
        ("click", week, 1, None),
        ("click", week, 1, "head"),
        ("open", week, None, None),
    ]
    assert mine[0]["url"] == links[1]["url"] and mine[0]["comparison"] == links[1].get("slug")
    assert mine[0]["at"].startswith(now.date().isoformat()) and mine[0]["at"].endswith("+00:00")
    theirs = json.loads(rows["reader001@example.com"]["clicks"])
    assert [(c["link"], c["url"]) for c in theirs] == [(4, links[4]["url"])]
    assert rows["reader002@example.com"]["clicks"] == ""

    with rt.sessions.begin() as s:  # past the retention period: nobody's any more
        later = utcnow() + timedelta(days=rt.settings.tracking.retention_days + 1)
        assert unlink_older_than(s, rt.settings.tracking.retention_days, now=later) == 4
    assert all(r["clicks"] == "" for r in _export(rt).values())
