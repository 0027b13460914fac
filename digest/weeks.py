"""ISO week keys (`2026-W47`) and the send slot of each week in the configured time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from digest.config import ScheduleSettings
from digest.errors import UserError

_WEEK_RE = re.compile(r"^(\d{4})-W(\d{2})$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every datetime we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso_utc(value: datetime | None) -> str | None:
    """A stored datetime as ISO 8601 in UTC for JSON answers; None stays None."""
    return as_utc(value).isoformat() if value else None


@dataclass(frozen=True, order=True)
class Week:
    year: int
    week: int

    @classmethod
    def parse(cls, key: str) -> Week:
        m = _WEEK_RE.match(key.strip())
        if not m:
            raise UserError(f"week: {key!r} is not an ISO week key (YYYY-Www, e.g. 2026-W47)")
        year, week = int(m.group(1)), int(m.group(2))
        try:
            date.fromisocalendar(year, week, 1)
        except ValueError:
            raise UserError(f"week: {key!r} does not exist ({year} has no week {week})") from None
        return cls(year, week)

    @classmethod
    def of(cls, moment: datetime | date) -> Week:
        iso = moment.isocalendar()
        return cls(iso[0], iso[1])

    @property
    def key(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    def __str__(self) -> str:
        return self.key

    def day(self, weekday_index: int) -> date:
        return date.fromisocalendar(self.year, self.week, weekday_index + 1)

    def slot(self, schedule: ScheduleSettings) -> datetime:
        """The scheduled send time of this week's issue, as an aware UTC datetime."""
        hh, mm = schedule.hour_minute
        local = datetime.combine(self.day(schedule.weekday_index), time(hh, mm), ZoneInfo(schedule.timezone))
        # zoneinfo resolves wall times in a DST gap forward (fold=0), which is what an operator expects.
        return local.astimezone(UTC)

    def next(self) -> Week:
        return Week.of(self.day(0) + timedelta(days=7))

    def previous(self) -> Week:
        return Week.of(self.day(0) - timedelta(days=7))

    def first_of_month(self, schedule: ScheduleSettings) -> bool:
        """Whether this week's slot is the first scheduled slot of its month (the monthly readers' issue)."""
        return self.day(schedule.weekday_index).day <= 7

    def month_first_week(self, schedule: ScheduleSettings) -> Week:
        """The week of the first slot of this week's month (this week, when it is that one)."""
        week = self
        while not week.first_of_month(schedule):
            week = week.previous()
        return week

    def previous_first_of_month(self, schedule: ScheduleSettings) -> Week:
        """The week of the month's first slot before this week: a monthly edition covers from there."""
        week = self.previous()
        while not week.first_of_month(schedule):
            week = week.previous()
        return week


def current_week(schedule: ScheduleSettings, now: datetime | None = None) -> Week:
    """The week of `now` in the schedule's time zone."""
    now = now or utcnow()
    return Week.of(now.astimezone(ZoneInfo(schedule.timezone)).date())
