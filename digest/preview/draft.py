"""The week's issue as it stands: the live selection of a draft, or the stored picks of a frozen issue.

A draft is rendered from a transient Issue built from the selection and never
added to a session, so previewing never writes picks, numbers or renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from digest import editions, topics
from digest.cycle import cutoff_for, get_or_create_issue, lock_issue, plan_editions, reader_interest, update_choices
from digest.errors import UserError
from digest.runtime import Runtime
from digest.selection import Pick, Selection, select_picks
from digest.storage.models import ISSUE_SENDING, ISSUE_SENT, Comparison, Issue, IssueItem
from digest.weeks import Week, as_utc

FROZEN = (ISSUE_SENDING, ISSUE_SENT)
ACTIONS = ("pin", "exclude", "release", "clear")


@dataclass
class Draft:
    """Everything the issue page shows about the week's selection."""

    week: Week
    status: str  # "new" (no issue row yet), draft, skipped, sending, sent
    selection: Selection
    issue: Issue  # transient for a draft, the stored row (items loaded) for a frozen issue
    others: list[Pick] = field(default_factory=list)  # in the window, not picked
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (slug, title)
    pins: list[str] = field(default_factory=list)
    # The editions readers' choices need (a draft: now; frozen: as sent); None when it would be skipped.
    editions: editions.Plan | None = None

    @property
    def frozen(self) -> bool:
        return self.status in FROZEN

    @property
    def signature(self) -> tuple[Any, ...]:
        """What the render depends on besides templates and settings (the cache key part)."""
        items = tuple(
            (i.comparison.slug, i.comparison.content_hash, i.rank, i.score, i.pinned) for i in self.issue.items
        )
        return (self.week.key, self.status, self.issue.number, self.issue.editor_note, items,
                self.issue.placeholder_nonce if self.frozen else None)


def transient_issue(week: Week, rt: Runtime, sel: Selection, number: int | None,
                    stored: Issue | None) -> Issue:
    """An Issue + IssueItems for compile_issue, never added to a session."""
    issue = Issue(week=week.key, number=number, status="draft", pins=[], excludes=[],
                  scheduled_for=stored.scheduled_for if stored and stored.scheduled_for
                  else week.slot(rt.settings.schedule),
                  editor_note=stored.editor_note if stored else None)
    for rank, pick in enumerate(sel.picks, start=1):
        issue.items.append(IssueItem(rank=rank, score=pick.score, score_parts=dict(pick.parts),
                                     pinned=pick.pinned, comparison=pick.comparison))
    return issue


def _frozen_selection(issue: Issue) -> Selection:
    cutoff = as_utc(issue.cutoff_at or issue.created_at)
    sel = Selection(week=issue.week, cutoff=cutoff, window_start=cutoff, candidates=len(issue.items))
    sel.picks = [Pick(i.comparison, i.score, dict(i.score_parts), i.pinned) for i in issue.items]
    return sel


def load_draft(rt: Runtime, week: Week, now: datetime | None = None) -> Draft:
    """Read the week's issue and, unless it is frozen, its live selection (cut-off: now / the slot)."""
    from sqlalchemy.orm import selectinload

    with rt.sessions() as session:
        stored = session.scalar(select(Issue).where(Issue.week == week.key)
                                .options(selectinload(Issue.items).selectinload(IssueItem.comparison)))
        if stored is not None and stored.status in FROZEN:
            sent = editions.frozen_plan(session, stored, topics.load(session, rt.settings.topics))
            return Draft(week, stored.status, _frozen_selection(stored), stored, editions=sent)
        pins = list(stored.pins or []) if stored else []
        excludes = list(stored.excludes or []) if stored else []
        cutoff = cutoff_for(rt, week, manual=True, now=now)
        # The picks, and the candidates that missed the cut (scored against the picks), which the page offers to pin.
        sel = select_picks(session, rt.settings.selection, week=week.key, cutoff=cutoff, pins=pins,
                           excludes=excludes, issue_id=stored.id if stored else None,
                           lift=reader_interest(rt, session))
        others = sel.others
        plan = None if sel.skip_reason else plan_editions(
            rt, session, stored or Issue(week=week.key, pins=[], excludes=[]), week, sel, cutoff, now)
        titles = dict(session.execute(select(Comparison.slug, Comparison.title)
                                      .where(Comparison.slug.in_(excludes))).all()) if excludes else {}
        number = (session.scalar(select(func.count()).select_from(Issue).where(Issue.status.in_(FROZEN))) or 0) + 1
    status = stored.status if stored is not None else "new"
    issue = transient_issue(week, rt, sel, number, stored)
    return Draft(week, status, sel, issue, others=others,
                 excluded=[(s, titles.get(s, s)) for s in excludes], pins=pins, editions=plan)


def change_draft(rt: Runtime, week: Week, action: str, slug: str = "") -> str:
    """Apply one pin/exclude/release/clear from the page; returns what changed, in words."""
    if action not in ACTIONS:
        raise UserError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    if action != "clear" and not slug:
        raise UserError(f"{action}: which comparison? (no slug given)")
    with rt.sessions() as session:
        stored = session.scalar(select(Issue).where(Issue.week == week.key))
        if stored is not None and stored.status in FROZEN:
            raise UserError(f"week: issue {week.key} is already {stored.status}; its picks can no longer change")
        if slug and session.scalar(select(Comparison.id).where(Comparison.slug == slug)) is None:
            raise UserError(f"{action}: unknown comparison slug {slug!r}")
    issue_id = get_or_create_issue(rt, week)
    with rt.sessions.begin() as session:
        issue = lock_issue(session, rt, issue_id)
        kwargs: dict[str, Any] = {"clear": True} if action == "clear" else {action: [slug]}
        update_choices(session, issue, **kwargs)
    words = {"pin": "pinned", "exclude": "excluded", "release": "released", "clear": "cleared pins and excludes"}
    return f"{words[action]} {slug}".strip() if action != "clear" else words["clear"]
