"""A week's issue row: which week, its cut-off, the row itself (invariant 1) and its locks."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.errors import UserError
from digest.runtime import Runtime
from digest.storage.models import Issue, IssueStatus
from digest.weeks import Week, as_utc, current_week, utcnow


def resolve_week(rt: Runtime, key: str | None, now: datetime | None = None) -> Week:
    return Week.parse(key) if key else current_week(rt.settings.schedule, now)


def check_not_future(rt: Runtime, week: Week, now: datetime | None = None) -> None:
    if week > current_week(rt.settings.schedule, now):
        raise UserError(f"week: {week.key} is in the future; an issue can be sent in its own week or later")


def is_overdue(rt: Runtime, week: Week, now: datetime | None = None) -> bool:
    """Past the slot by more than max_lateness: only an operator sends it."""
    now = now or utcnow()
    lateness = (now - as_utc(week.slot(rt.settings.schedule))).total_seconds() / 3600
    return lateness > rt.settings.schedule.max_lateness_hours


def cutoff_for(rt: Runtime, week: Week, *, manual: bool, now: datetime | None = None) -> datetime:
    """Scheduled send time, or now for the current week's issue sent by hand."""
    now = now or utcnow()
    if manual and week == current_week(rt.settings.schedule, now):
        return now
    return week.slot(rt.settings.schedule)


def get_or_create_issue(rt: Runtime, week: Week) -> int:
    """Invariant 1: the unique week key makes a concurrent second insert fail; we then read the winner's."""
    with rt.sessions() as session:
        found = session.scalar(select(Issue.id).where(Issue.week == week.key))
        if found is not None:
            return found
        issue = Issue(
            week=week.key, status=IssueStatus.DRAFT, pins=[], excludes=[], scheduled_for=week.slot(rt.settings.schedule)
        )
        session.add(issue)
        try:
            session.commit()
            return issue.id
        except IntegrityError:
            session.rollback()
    with rt.sessions() as session:
        found = session.scalar(select(Issue.id).where(Issue.week == week.key))
        assert found is not None
        return found


def lock_month(session: Session, rt: Runtime, week: Week) -> None:
    """Freezes of one month's weeks take turns (PostgreSQL: a transaction advisory lock, taken before
    the issue row; SQLite's BEGIN IMMEDIATE already serializes them): each sees whether another issue
    of the month carries the monthly edition, so one does."""
    if rt.on_postgres:
        month = week.month_first_week(rt.settings.schedule).key
        key = int.from_bytes(hashlib.sha256(f"digest:monthly:{month}".encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def lock_issue(session: Session, rt: Runtime, issue_id: int) -> Issue:
    """The issue row, locked for this transaction (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE)."""
    q = select(Issue).where(Issue.id == issue_id)
    if rt.on_postgres:
        q = q.with_for_update(of=Issue)
    issue = session.scalar(q)
    assert issue is not None
    return issue
