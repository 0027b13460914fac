"""Freeze a week's issue, in one place: select, number, compile every edition, store it, enqueue its readers.

Freezing happens in one transaction that holds the issue row: whoever gets there first freezes;
anyone later (a second scheduler, a retry, a manual run) finds the issue frozen. What readers get is
stored once, as edition rows (digest.cycle.editions.edition_row): the issue keeps no copy of its own,
its main edition ("weekly/all") is what the archive shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from digest.config import Config
from digest.cycle import editions
from digest.cycle.draft import current_selection, next_number, plan_editions
from digest.cycle.week import cutoff_for, get_or_create_issue, lock_issue, lock_month
from digest.delivery.enqueue import EditionReaders, enqueue_editions
from digest.runtime import Runtime
from digest.selection.scoring import Selection
from digest.storage.models import Edition, Issue, IssueStatus
from digest.weeks import Week, as_utc, utcnow


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


def prepare(rt: Runtime, week: Week, *, manual: bool, now: datetime | None = None) -> Prepared:
    """Freeze the week's issue (select, compile, store and enqueue its editions) unless it already is."""
    issue_id = get_or_create_issue(rt, week)
    with rt.sessions.begin() as session:
        lock_month(session, rt, week)
        issue = lock_issue(session, rt, issue_id)
        if issue.status in (IssueStatus.SENDING, IssueStatus.SENT):
            return Prepared(issue.id, issue.week, issue.status)
        cutoff = cutoff_for(rt, week, manual=manual, now=now)
        sel = current_selection(rt, session, issue, cutoff)
        if sel.skip_reason:
            issue.status, issue.skip_reason, issue.cutoff_at = IssueStatus.SKIPPED, sel.skip_reason, cutoff
            return Prepared(issue.id, issue.week, IssueStatus.SKIPPED, selection=sel, skip_reason=sel.skip_reason)
        issue.number = next_number(session)
        issue.cutoff_at, issue.skip_reason = cutoff, None
        the_plan = plan_editions(rt, session, issue, week, sel, cutoff, now)
        recipients, warnings = _store_and_enqueue(session, rt.config, issue, the_plan, now or utcnow())
        issue.status, issue.enqueued_at = IssueStatus.SENDING, utcnow()
        return Prepared(
            issue.id,
            issue.week,
            IssueStatus.SENDING,
            selection=sel,
            plan=the_plan,
            recipients=recipients,
            frozen_now=True,
            warnings=warnings,
        )


def _store_and_enqueue(
    session: Session, config: Config, issue: Issue, the_plan: editions.Plan, now: datetime
) -> tuple[int, list[str]]:
    """Compile and store every edition with readers' picks, then write their deliveries (the caller
    holds the issue's freeze transaction); returns the recipients and the warnings."""
    warnings: list[str] = []
    rows: list[tuple[editions.PlannedEdition, Edition]] = []
    for ed in the_plan.editions:
        if ed.selection is None or ed.skip_reason:
            if ed.readers:
                warnings.append(f"edition {ed.label}: {ed.readers} reader(s) get nothing this time: {ed.skip_reason}")
            continue
        row, compiled = editions.compile_edition(config, issue, ed, the_plan.catalogue)
        warnings.extend(
            compiled.warnings if ed.key == editions.MAIN else [f"edition {ed.label}: {w}" for w in compiled.warnings]
        )
        session.add(row)
        rows.append((ed, row))
    session.flush()
    counts = enqueue_editions(
        session,
        issue.id,
        [EditionReaders(row.id, ed.frequency, tuple(ed.stored)) for ed, row in rows],
        batch_size=config.batch_size,
        now=as_utc(now),
    )
    for _, row in rows:
        row.recipients = counts.get(row.id, 0)
    issue.reader_skips = {
        "paused": the_plan.paused,
        "monthly_waiting": the_plan.monthly_waiting,
        "first_of_month": the_plan.first_of_month,
    }
    return sum(row.recipients for _, row in rows), warnings
