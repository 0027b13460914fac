"""THE view of a week's issue as it stands, read by `digest select` and the preview alike.

A draft (or a week with no issue row yet) is the live selection at the cut-off with the editions its
readers' choices would need now; a frozen issue is its editions as sent. Pins and excludes change
through `update_choices` only, so the command and the page mean the same by them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from digest.cycle import editions
from digest.cycle.week import cutoff_for
from digest.errors import UserError
from digest.reports.insights import category_click_through, sent_issues
from digest.runtime import Runtime
from digest.selection import interest, topics
from digest.selection.scoring import Selection, resolve_slugs, select_picks
from digest.storage.models import MAIN_EDITION_KEY, Edition, EditionItem, Issue, IssueStatus
from digest.weeks import Week, utcnow

FROZEN = (IssueStatus.SENDING, IssueStatus.SENT)


@dataclass
class DraftView:
    """What the week's issue is: `status` "new" (no issue row yet), draft, skipped, sending or sent."""

    week: Week
    status: str
    stored: Issue | None  # the issue row, if there is one
    selection: Selection  # the live picks of a draft; the main edition's picks as sent
    editions: editions.Plan | None  # the editions (a draft: as readers' choices need now); None: skipped
    number: int | None  # its number, or the one it would get if it were frozen now
    main: Edition | None = None  # a frozen issue's main edition row (items and comparisons loaded)

    @property
    def frozen(self) -> bool:
        return self.status in FROZEN


def next_number(session: Session) -> int:
    """The number the next issue to freeze gets: one more than the issues frozen so far."""
    return (session.scalar(select(func.count()).select_from(Issue).where(Issue.status.in_(FROZEN))) or 0) + 1


def reader_interest(rt: Runtime, session: Session) -> dict[str, float] | None:
    """The learnt interest (digest.selection.interest) from readers' click-through by category over the
    last `selection.interest_issues` issues, as the reports count it; None when the term is off."""
    cfg = rt.settings.selection
    if cfg.weight_interest <= 0:
        return None
    return interest.lift(
        category_click_through(session, rt.settings.tracking, sent_issues(session, cfg.interest_issues))
    )


def current_selection(rt: Runtime, session: Session, issue: Issue, cutoff: datetime) -> Selection:
    return select_picks(
        session,
        rt.settings.selection,
        week=issue.week,
        cutoff=cutoff,
        pins=list(issue.pins or []),
        excludes=list(issue.excludes or []),
        issue_id=issue.id,
        lift=reader_interest(rt, session),
    )


def plan_editions(
    rt: Runtime,
    session: Session,
    issue: Issue,
    week: Week,
    weekly: Selection,
    cutoff: datetime,
    now: datetime | None = None,
) -> editions.Plan:
    """The week's editions with their picks (shared by the freeze and this view)."""
    catalogue = topics.load(session, rt.settings.topics)
    the_plan = editions.plan(session, rt.config, catalogue, week, now or utcnow())
    editions.select_all(session, rt.config, issue, week, the_plan, weekly, cutoff)
    return the_plan


def draft_view(
    rt: Runtime, session: Session, week: Week, stored: Issue | None, now: datetime | None = None
) -> DraftView:
    """The week's issue (`stored`: its row, or None) as it stands; cut-off: now in its own week, else the slot."""
    if stored is not None and stored.status in FROZEN:
        return _frozen_view(rt, session, week, stored)
    draft = stored or Issue(week=week.key, pins=[], excludes=[])  # transient: never added to a session
    cutoff = cutoff_for(rt, week, manual=True, now=now)
    sel = current_selection(rt, session, draft, cutoff)
    plan = None if sel.skip_reason else plan_editions(rt, session, draft, week, sel, cutoff, now)
    return DraftView(week, stored.status if stored is not None else "new", stored, sel, plan, next_number(session))


def _frozen_view(rt: Runtime, session: Session, week: Week, stored: Issue) -> DraftView:
    sent = editions.frozen_plan(session, stored, topics.load(session, rt.settings.topics))
    main = session.scalar(
        select(Edition)
        .where(Edition.issue_id == stored.id, Edition.key == MAIN_EDITION_KEY)
        .options(selectinload(Edition.items).selectinload(EditionItem.comparison))
    )
    planned = sent.by_key(MAIN_EDITION_KEY)
    assert planned is not None and planned.selection is not None, f"issue {stored.week} has no main edition"
    return DraftView(week, stored.status, stored, planned.selection, sent, stored.number, main)


def update_choices(
    session: Session,
    issue: Issue,
    *,
    pin: Sequence[str] = (),
    exclude: Sequence[str] = (),
    release: Sequence[str] = (),
    clear: bool = False,
) -> None:
    """Change a draft's pins and excludes; shared by `digest select` and the preview so both mean the same.

    `clear` forgets both lists first; a pin takes a slug out of the excludes and an exclude takes it out
    of the pins (the last word wins); `release` drops a slug from either list. Unknown slugs and frozen
    issues raise UserError before anything changes (the caller commits).
    """
    if issue.status in FROZEN:
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
