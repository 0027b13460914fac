"""The slot policy: which week's slot passed last, and what became of its issue.

One rule decides every automatic send, whether the cron job fired on time, late, or
the service just started: the week whose slot passed most recently gets its issue,
unless it is already sending/sent, and unless the slot is more than
`schedule.max_lateness_hours` ago — then only an operator sends it
(`digest send --week`), and the log, /healthz and the preview say so (`slot_state`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select

from digest.config import ScheduleSettings
from digest.cycle.week import is_overdue
from digest.runtime import Runtime
from digest.storage.models import Issue, IssueStatus
from digest.weeks import Week, current_week, utcnow

# -- the trigger ----------------------------------------------------------------------------


def _is_repeat(moment: datetime, tz: Any) -> bool:
    """The second occurrence of a wall time repeated when the clocks go back."""
    local = moment.astimezone(tz)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


class WeeklyTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler 3 ships no types
    """A cron trigger that fires once a week even when the clocks go back.

    APScheduler's CronTrigger fires twice for a wall time inside the repeated hour
    (e.g. Sunday 01:30 in London on the last Sunday of October); the repeat is
    skipped, so the fire time is always `Week.slot` (the first occurrence, and in a
    spring-forward gap the same instant one hour later on the wall clock).
    """

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        fire: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while fire is not None and _is_repeat(fire, self.timezone):
            fire = super().get_next_fire_time(fire, fire)
        return fire


def make_trigger(schedule: ScheduleSettings) -> WeeklyTrigger:
    hour, minute = schedule.hour_minute
    return WeeklyTrigger(
        day_of_week=schedule.day[:3], hour=hour, minute=minute, second=0, timezone=ZoneInfo(schedule.timezone)
    )


def latest_slot_week(schedule: ScheduleSettings, now: datetime) -> Week:
    """The week whose send slot passed most recently (this week's, once its slot is past)."""
    week = current_week(schedule, now)
    return week if week.slot(schedule) <= now else week.previous()


# -- what the operator is told --------------------------------------------------------------


@dataclass(frozen=True)
class SlotState:
    """The most recent slot and what became of its issue; the preview and /healthz read this."""

    week: str
    slot: datetime  # UTC
    issue_status: str | None  # None: no issue row for the week
    skip_reason: str | None
    lateness_hours: float
    too_late: bool  # past schedule.max_lateness_hours: never sent without an operator
    overdue: bool  # past max_lateness, not sent, and earlier issues went out: only an operator sends it
    # No issue ever went out (a fresh install): then when the first one will, in the schedule's zone.
    first_issue_at: datetime | None = None
    first_issue_week: str | None = None

    @property
    def message(self) -> str:
        if self.first_issue_at is not None:
            return (
                f"no issue has been sent yet; the first one, {self.first_issue_week}, goes out "
                f"{self.first_issue_at:%A %Y-%m-%d %H:%M} {getattr(self.first_issue_at.tzinfo, 'key', 'UTC')}"
            )
        if self.overdue or (
            self.too_late and self.issue_status not in (IssueStatus.SENDING, IssueStatus.SENT, IssueStatus.SKIPPED)
        ):
            return (
                f"issue {self.week} was due {self.slot:%Y-%m-%d %H:%M} UTC, {self.lateness_hours:.1f} h ago "
                f"(more than schedule.max_lateness_hours); it is not sent late by itself: "
                f"`digest send --week {self.week}` sends it"
            )
        if self.issue_status == IssueStatus.SKIPPED:
            return f"issue {self.week} was skipped: {self.skip_reason}"
        return f"issue {self.week}: {self.issue_status or 'not created yet'}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "week": self.week,
            "slot": self.slot.isoformat(),
            "issue_status": self.issue_status,
            "skip_reason": self.skip_reason,
            "lateness_hours": round(self.lateness_hours, 2),
            "too_late": self.too_late,
            "overdue": self.overdue,
            "first_issue_at": self.first_issue_at.isoformat() if self.first_issue_at else None,
            "first_issue_week": self.first_issue_week,
            "message": self.message,
        }


def slot_state(rt: Runtime, now: datetime | None = None) -> SlotState:
    """Computed from the database alone, so any process (the preview too) sees the same answer.

    A slot counts as overdue only once the newsletter has started (an earlier issue went
    out): a fresh install started a day after its first slot is not "late", it begins next week.
    """
    now = now or utcnow()
    schedule = rt.settings.schedule
    week = latest_slot_week(schedule, now)
    slot = week.slot(schedule)
    with rt.sessions() as session:
        row = session.execute(select(Issue.status, Issue.skip_reason).where(Issue.week == week.key)).first()
        started = session.scalar(
            select(Issue.id)
            .where(Issue.week < week.key, Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT]))
            .limit(1)
        )
        ever = started or session.scalar(
            select(Issue.id).where(Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT])).limit(1)
        )
    status, reason = (row[0], row[1]) if row else (None, None)
    unsent = status not in (IssueStatus.SENDING, IssueStatus.SENT, IssueStatus.SKIPPED)
    too_late = is_overdue(rt, week, now)
    first_week = None
    if ever is None:  # nothing sent yet: this slot's issue if it still goes out by itself, else the next
        first_week = week.next() if too_late or not unsent else week
    return SlotState(
        week=week.key,
        slot=slot,
        issue_status=status,
        skip_reason=reason,
        lateness_hours=(now - slot).total_seconds() / 3600,
        too_late=too_late,
        overdue=unsent and too_late and started is not None,
        first_issue_at=first_week.slot(schedule).astimezone(ZoneInfo(schedule.timezone)) if first_week else None,
        first_issue_week=first_week.key if first_week else None,
    )
