"""The week's issue on the preview's page: the cycle's draft view (digest.cycle.draft), plus what the
page offers besides (the candidates that missed the cut, the excluded comparisons' titles).

A draft is rendered from a transient Issue that is never added to a session, so previewing never
writes picks, numbers or renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from digest.cycle import editions
from digest.cycle.draft import FROZEN, draft_view, update_choices
from digest.cycle.week import get_or_create_issue, lock_issue
from digest.errors import UserError
from digest.runtime import Runtime
from digest.selection.scoring import Pick, Selection
from digest.storage.models import Comparison, Edition, Issue
from digest.weeks import Week

ACTIONS = ("pin", "exclude", "release", "clear")


@dataclass
class Draft:
    """Everything the issue page shows about the week's selection."""

    week: Week
    status: str  # "new" (no issue row yet), draft, skipped, sending, sent
    selection: Selection  # a frozen issue's: its main edition's picks as sent
    issue: Issue  # transient for a draft, the stored row for a frozen issue
    others: list[Pick] = field(default_factory=list)  # in the window, not picked
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (slug, title)
    pins: list[str] = field(default_factory=list)
    # The editions readers' choices need (a draft: now; frozen: as sent); None when it would be skipped.
    editions: editions.Plan | None = None
    main: Edition | None = None  # a frozen issue's main edition as stored (None for a draft)

    @property
    def frozen(self) -> bool:
        return self.status in FROZEN

    @property
    def signature(self) -> tuple[Any, ...]:
        """What the render depends on besides templates and settings (the cache key part)."""
        items = tuple(
            (p.comparison.slug, p.comparison.content_hash, rank, p.score, p.pinned)
            for rank, p in enumerate(self.selection.picks, start=1)
        )
        return (
            self.week.key,
            self.status,
            self.issue.number,
            self.issue.editor_note,
            items,
            self.main.placeholder_nonce if self.main is not None else None,
        )


def transient_issue(week: Week, rt: Runtime, number: int | None, stored: Issue | None) -> Issue:
    """An Issue for compile_issue, never added to a session."""
    return Issue(
        week=week.key,
        number=number,
        status="draft",
        pins=[],
        excludes=[],
        scheduled_for=stored.scheduled_for if stored and stored.scheduled_for else week.slot(rt.settings.schedule),
        editor_note=stored.editor_note if stored else None,
    )


def load_draft(rt: Runtime, week: Week, now: datetime | None = None) -> Draft:
    """Read the week's issue and, unless it is frozen, its live selection (cut-off: now / the slot)."""
    with rt.sessions() as session:
        stored = session.scalar(select(Issue).where(Issue.week == week.key))
        view = draft_view(rt, session, week, stored, now)
        if view.frozen:
            assert stored is not None
            return Draft(week, view.status, view.selection, stored, editions=view.editions, main=view.main)
        pins = list(stored.pins or []) if stored else []
        excludes = list(stored.excludes or []) if stored else []
        titles = (
            dict(session.execute(select(Comparison.slug, Comparison.title).where(Comparison.slug.in_(excludes))).all())
            if excludes
            else {}
        )
    # The picks, and the candidates that missed the cut (scored against the picks), which the page offers to pin.
    issue = transient_issue(week, rt, view.number, stored)
    return Draft(
        week,
        view.status,
        view.selection,
        issue,
        others=view.selection.others,
        excluded=[(s, titles.get(s, s)) for s in excludes],
        pins=pins,
        editions=view.editions,
    )


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
