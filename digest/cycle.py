"""The weekly cycle for one week: get the issue, select, render, enqueue (freeze), send.

Freezing happens in one transaction that holds the issue row: whoever gets there
first renders and enqueues; anyone later (a second scheduler, a retry, a manual
run) finds the issue frozen and can only help send its remaining batches.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from digest import editions, topics
from digest.delivery.loop import Sender
from digest.delivery.summary import SendSummary
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Transport
from digest.errors import UserError
from digest.render.issue_email import compile_issue
from digest.reports.insights import category_click_through, sent_issues
from digest.runtime import Runtime
from digest.selection import Selection, resolve_slugs, select_picks
from digest.storage.models import (
    ISSUE_DRAFT,
    ISSUE_SENDING,
    ISSUE_SENT,
    ISSUE_SKIPPED,
    Issue,
    IssueItem,
)
from digest.weeks import Week, as_utc, current_week, utcnow


@dataclass
class Prepared:
    issue_id: int | None
    week: str
    status: str  # sending | sent | skipped
    selection: Selection | None = None
    plan: editions.Plan | None = None  # the editions frozen now (None when frozen before)
    recipients: int = 0
    frozen_now: bool = False
    warnings: list[str] = field(default_factory=list)
    skip_reason: str | None = None


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
        issue = Issue(week=week.key, status=ISSUE_DRAFT, pins=[], excludes=[],
                      scheduled_for=week.slot(rt.settings.schedule))
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
    q = select(Issue).where(Issue.id == issue_id).options(selectinload(Issue.items).selectinload(IssueItem.comparison))
    if rt.on_postgres:
        q = q.with_for_update(of=Issue)
    issue = session.scalar(q)
    assert issue is not None
    return issue


def reader_interest(rt: Runtime, session: Session) -> dict[str, float] | None:
    """Category -> how far readers' click-through on it was above the average comparison's over the
    last `selection.interest_issues` issues (digest.selection's `interest`); None when the term is off."""
    cfg = rt.settings.selection
    if cfg.weight_interest <= 0:
        return None
    rows = category_click_through(session, rt.settings.tracking, sent_issues(session, cfg.interest_issues))
    clicks = sum(r["unique_clicks"] for r in rows)
    emails = sum(r["emails"] for r in rows)
    if not clicks or not emails:
        return {}
    average = clicks / emails  # the click-through of an average category placement
    return {r["category"]: round((r["click_through"] - average) / average, 4) for r in rows
            if r["click_through"] is not None and r["click_through"] > average}


def current_selection(rt: Runtime, session: Session, issue: Issue, cutoff: datetime) -> Selection:
    return select_picks(session, rt.settings.selection, week=issue.week, cutoff=cutoff,
                        pins=list(issue.pins or []), excludes=list(issue.excludes or []), issue_id=issue.id,
                        lift=reader_interest(rt, session))


def update_choices(session: Session, issue: Issue, *, pin: Sequence[str] = (), exclude: Sequence[str] = (),
                   release: Sequence[str] = (), clear: bool = False) -> None:
    """Change a draft's pins and excludes; shared by `digest select` and the preview so both mean the same.

    `clear` forgets both lists first; a pin takes a slug out of the excludes and an exclude takes it out
    of the pins (the last word wins); `release` drops a slug from either list. Unknown slugs and frozen
    issues raise UserError before anything changes (the caller commits).
    """
    if issue.status in (ISSUE_SENDING, ISSUE_SENT):
        raise UserError(f"week: issue {issue.week} is already {issue.status}; its picks can no longer change")
    resolve_slugs(session, list(pin), "pin")
    resolve_slugs(session, list(exclude), "exclude")
    pins = [] if clear else list(issue.pins or [])
    excludes = [] if clear else list(issue.excludes or [])
    for s in release:
        pins = [p for p in pins if p != s]
        excludes = [e for e in excludes if e != s]
    for s in pin:
        if s in excludes:
            excludes.remove(s)
        if s not in pins:
            pins.append(s)
    for s in exclude:
        if s in pins:
            pins.remove(s)
        if s not in excludes:
            excludes.append(s)
    issue.pins, issue.excludes = pins, excludes


def store_picks(session: Session, issue: Issue, sel: Selection) -> None:
    issue.items.clear()
    session.flush()
    for rank, pick in enumerate(sel.picks, start=1):
        issue.items.append(IssueItem(comparison_id=pick.comparison.id, comparison=pick.comparison, rank=rank,
                                     score=pick.score, score_parts=pick.parts, pinned=pick.pinned))
    session.flush()


def prepare(rt: Runtime, week: Week, *, manual: bool, now: datetime | None = None) -> Prepared:
    """Freeze the week's issue (select, render, enqueue) unless it already is."""
    issue_id = get_or_create_issue(rt, week)
    with rt.sessions.begin() as session:
        lock_month(session, rt, week)
        issue = lock_issue(session, rt, issue_id)
        if issue.status in (ISSUE_SENDING, ISSUE_SENT):
            return Prepared(issue.id, issue.week, issue.status)
        cutoff = cutoff_for(rt, week, manual=manual, now=now)
        sel = current_selection(rt, session, issue, cutoff)
        if sel.skip_reason:
            issue.status, issue.skip_reason, issue.cutoff_at = ISSUE_SKIPPED, sel.skip_reason, cutoff
            return Prepared(issue.id, issue.week, ISSUE_SKIPPED, selection=sel, skip_reason=sel.skip_reason)
        store_picks(session, issue, sel)
        for item in issue.items:  # freeze what readers get, for the archive
            item.snapshot = {**item.comparison.data, "url": item.comparison.url, "slug": item.comparison.slug}
        issue.number = (session.scalar(select(func.count()).select_from(Issue)
                                       .where(Issue.status.in_([ISSUE_SENDING, ISSUE_SENT]))) or 0) + 1
        compiled = compile_issue(rt.config, issue)
        issue.subject, issue.preheader = compiled.subject, compiled.preheader
        issue.html, issue.text, issue.placeholder_nonce = compiled.html, compiled.text, compiled.nonce
        issue.links = compiled.links
        issue.cutoff_at, issue.skip_reason = cutoff, None
        the_plan = plan_editions(rt, session, issue, week, sel, cutoff, now)
        frozen = editions.freeze(session, rt.config, issue, the_plan, compiled, now or utcnow())
        issue.status, issue.enqueued_at = ISSUE_SENDING, utcnow()
        return Prepared(issue.id, issue.week, ISSUE_SENDING, selection=sel, plan=the_plan,
                        recipients=frozen.recipients, frozen_now=True, warnings=compiled.warnings + frozen.warnings)


def plan_editions(rt: Runtime, session: Session, issue: Issue, week: Week, weekly: Selection, cutoff: datetime,
                  now: datetime | None = None) -> editions.Plan:
    """The week's editions with their picks (shared by the freeze, `digest select` and the preview)."""
    catalogue = topics.load(session, rt.settings.topics)
    the_plan = editions.plan(session, rt.config, catalogue, week, now or utcnow())
    editions.select_all(session, rt.config, issue, week, the_plan, weekly, cutoff)
    return the_plan


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


@dataclass
class CycleResult:
    prepared: Prepared
    summary: SendSummary | None = None


def send_week(rt: Runtime, week: Week, *, manual: bool, now: datetime | None = None,
              transport: Transport | None = None, stop: threading.Event | None = None,
              on_batch: Callable[[SendSummary], None] | None = None) -> CycleResult:
    """Prepare the week's issue and send whatever of it is still unsent."""
    prepared = prepare(rt, week, manual=manual, now=now)
    if prepared.status == ISSUE_SKIPPED or prepared.issue_id is None:
        return CycleResult(prepared)
    if prepared.status == ISSUE_SENT:
        return CycleResult(prepared)
    own = transport is None
    transport = transport or make_transport(rt.config)
    try:
        summary = Sender(rt, transport, on_batch=on_batch).run(prepared.issue_id, stop=stop)
    finally:
        if own:
            transport.close()
    return CycleResult(prepared, summary)  # Sender.run marks the issue sent once no batch is open

