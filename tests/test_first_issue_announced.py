"""A fresh install does not nag about last week's issue: with nothing ever sent, `digest serve`,
its log and /healthz say when the first issue goes out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from digest.config import WEEKDAYS
from digest.schedule.slots import slot_state
from digest.storage.models import Issue, IssueStatus
from digest.weeks import Week
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.support_serve import ServeProcess, free_port, serving, wait_for

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W48; its Monday slot is 51 h past


def test_fresh_install_long_past_its_slot_names_next_weeks_issue_not_a_send_command(rt) -> None:
    state = slot_state(rt, NOW)
    assert state.week == "2026-W48" and state.too_late and not state.overdue
    assert "digest send" not in state.message and "h ago" not in state.message
    zone = ZoneInfo(rt.settings.schedule.timezone)
    first = Week.parse("2026-W49").slot(rt.settings.schedule).astimezone(zone)
    assert state.first_issue_at == first and state.first_issue_week == "2026-W49"
    assert state.message == (
        f"no issue has been sent yet; the first one, 2026-W49, goes out "
        f"{first:%A %Y-%m-%d %H:%M} {rt.settings.schedule.timezone}"
    )
    assert state.as_dict()["first_issue_at"] == first.isoformat()


def test_fresh_install_within_the_grace_sends_this_weeks_issue_first(rt) -> None:
    slot = Week.parse("2026-W48").slot(rt.settings.schedule)
    state = slot_state(rt, slot + timedelta(hours=1))
    assert not state.too_late and state.first_issue_week == "2026-W48"


def test_once_an_issue_went_out_a_missed_slot_is_overdue_and_says_what_to_run(rt) -> None:
    with rt.sessions.begin() as s:
        s.add(Issue(week="2026-W47", status=IssueStatus.SENT, number=1, pins=[], excludes=[], sent_at=NOW))
    state = slot_state(rt, NOW)
    assert state.overdue and state.first_issue_at is None
    assert "`digest send --week 2026-W48` sends it" in state.message


def test_digest_serve_says_when_the_first_issue_goes_out(tmp_path, db_url) -> None:
    zone = "Europe/London"
    past = datetime.now(ZoneInfo(zone)) - timedelta(days=3)  # the latest slot: 3 days ago, well past the grace
    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(
            cfg.read_text(), {"schedule": {"day": WEEKDAYS[past.weekday()], "time": "09:00", "timezone": zone}}
        )
    )
    make_runtime(cfg, db_url).close()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": "test-secret-key-0123456789",
        "DIGEST_TRANSPORT": "outbox",
    }
    proc = ServeProcess(cfg, free_port(), env, logs)
    with serving(proc):
        body = proc.wait_ready()
        schedule = body["schedule"]
        assert schedule["first_issue_week"] and schedule["first_issue_at"]
        assert schedule["message"].startswith("no issue has been sent yet; the first one")
        assert body["overdue"] is False
        wait_for(lambda: "no issue has been sent yet" in proc.output(), 20, what="the start-up line")
    output = proc.output()
    assert "digest send --week" not in output and "h ago" not in output, output
    assert f"the first one, {schedule['first_issue_week']}, goes out" in output
