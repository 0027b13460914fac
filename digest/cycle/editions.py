"""A week's editions: one per distinct choice in use (topic set x frequency), selected and compiled once.

Freezing an issue plans its editions from the choices the active, unpaused readers hold (one
GROUP BY, however many readers), selects each one with the same explained scoring narrowed to
its topics, compiles it once and enqueues its readers. An edition whose topics had fewer than
`min_items` picks is filled up with the overall best (marked `filler`, under their own heading).
Monthly readers get the monthly edition on the first scheduled slot of each month (the best since
the previous one) and nothing in the other weeks. The issue's "weekly/all" edition always exists:
it is the issue's main one, shown by the archive (the issue holds no content of its own).

Exactly once per reader per week: a reader's delivery is unique per issue (and the issue per week),
and its edition must be one of that issue's (a composite foreign key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from digest.config import Config, ScheduleSettings, SelectionSettings
from digest.render.issue_email import CompiledEmail, EditionView, compile_issue
from digest.selection.scoring import Pick, Selection, featured_ids, select_picks
from digest.selection.topics import Topics
from digest.storage.models import (
    MAIN_EDITION_KEY,
    Comparison,
    Edition,
    EditionItem,
    Frequency,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
)
from digest.weeks import Week, as_utc

ALL = "all"


def edition_key(frequency: Frequency, topics: tuple[str, ...]) -> str:
    """Stable across weeks: reports group an edition's weeks by it."""
    return f"{frequency.value}/{'+'.join(topics) or ALL}"


MAIN = edition_key(Frequency.WEEKLY, ())
assert MAIN == MAIN_EDITION_KEY  # the storage layer names it for the readers of an issue's content


def edition_label(frequency: Frequency, topics: tuple[str, ...], catalogue: Topics) -> str:
    return f"{catalogue.label(topics)}, {frequency.value}"


@dataclass
class PlannedEdition:
    key: str
    label: str
    frequency: Frequency
    topics: tuple[str, ...]
    stored: list[str] = field(default_factory=list)  # the stored choices (subscribers.topics) it serves
    readers: int = 0
    selection: Selection | None = None
    skip_reason: str | None = None  # a monthly edition with too few picks this month

    @property
    def filled(self) -> int:
        return sum(p.filler for p in self.selection.picks) if self.selection else 0

    def as_dict(self, catalogue: Topics) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "frequency": self.frequency.value,
            "topics": [catalogue.name(k) for k in self.topics],
            "readers": self.readers,
            "filled": self.filled,
            "skip_reason": self.skip_reason,
            "picks": [p.as_dict() for p in self.selection.picks] if self.selection else [],
        }


@dataclass
class Plan:
    editions: list[PlannedEdition]
    catalogue: Topics
    first_of_month: bool
    paused: int = 0  # active readers on a pause this week: skipped, counted
    monthly_waiting: int = 0  # monthly readers whose issue is the month's first slot, not this one

    def by_key(self, key: str) -> PlannedEdition | None:
        return next((e for e in self.editions if e.key == key), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "editions": [e.as_dict(self.catalogue) for e in self.editions],
            "paused": self.paused,
            "monthly_waiting": self.monthly_waiting,
            "first_of_month": self.first_of_month,
        }


def frozen_plan(session: Session, issue: Issue, catalogue: Topics) -> Plan:
    """The editions an issue was frozen with, as stored (picks, scores, readers)."""
    rows = session.scalars(
        select(Edition)
        .where(Edition.issue_id == issue.id)
        .order_by(Edition.id)
        .options(selectinload(Edition.items).selectinload(EditionItem.comparison))
    ).all()  # one query per level, not per row
    cutoff = as_utc(issue.cutoff_at or issue.created_at)
    skips = dict(issue.reader_skips or {})
    out = Plan(
        [],
        catalogue,
        bool(skips.get("first_of_month")),
        int(skips.get("paused", 0)),
        int(skips.get("monthly_waiting", 0)),
    )
    for row in rows:
        sel = Selection(week=issue.week, cutoff=cutoff, window_start=cutoff, candidates=len(row.items))
        sel.picks = [Pick(i.comparison, i.score, dict(i.score_parts), i.pinned, i.filler) for i in row.items]
        out.editions.append(
            PlannedEdition(
                row.key,
                row.label,
                Frequency(row.frequency),
                tuple(row.topics or ()),
                readers=row.recipients,
                selection=sel,
            )
        )
    return out


def not_paused(now: datetime) -> Any:
    return or_(Subscriber.paused_until.is_(None), Subscriber.paused_until <= now)


def plan(session: Session, config: Config, catalogue: Topics, week: Week, now: datetime) -> Plan:
    """The editions this week's readers need (no selection yet): bounded by the choices in use."""
    schedule = config.settings.schedule
    first = carries_monthly(session, week, schedule, now)
    out = Plan(
        [
            PlannedEdition(
                edition_key(Frequency.WEEKLY, ()), edition_label(Frequency.WEEKLY, (), catalogue), Frequency.WEEKLY, ()
            )
        ],
        catalogue,
        first,
    )
    rows = session.execute(
        select(Subscriber.topics, Subscriber.frequency, func.count())
        .where(Subscriber.status == SubscriberStatus.ACTIVE, not_paused(now))
        .group_by(Subscriber.topics, Subscriber.frequency)
        .order_by(Subscriber.frequency, Subscriber.topics)
    ).all()
    out.paused = (
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.status == SubscriberStatus.ACTIVE, ~not_paused(now))
        )
        or 0
    )
    for stored, frequency, readers in rows:
        frequency = Frequency(frequency)
        if frequency is Frequency.MONTHLY and not first:
            out.monthly_waiting += readers
            continue
        topics = catalogue.parse(stored or "")
        key = edition_key(frequency, topics)
        ed = out.by_key(key)
        if ed is None:
            ed = PlannedEdition(key, edition_label(frequency, topics, catalogue), frequency, topics)
            out.editions.append(ed)
        ed.stored.append(stored or "")
        ed.readers += readers
    out.editions.sort(key=lambda e: (e.frequency is not Frequency.WEEKLY, bool(e.topics), e.key))
    return out


def month_weeks(week: Week, schedule: ScheduleSettings) -> list[Week]:
    """The weeks whose slot falls in this week's month, the month's first slot first."""
    first = week.month_first_week(schedule)
    month, out, w = first.day(schedule.weekday_index).month, [], first
    while w.day(schedule.weekday_index).month == month:
        out.append(w)
        w = w.next()
    return out


def carries_monthly(session: Session, week: Week, schedule: ScheduleSettings, now: datetime) -> bool:
    """Whether this week's issue carries the monthly readers' edition: one issue a month does.

    It rides on the month's first slot. When that week never went out (skipped for too few
    comparisons, or missed while the service was down), the month's next issue that goes out
    carries it instead, so a quiet or lost week never costs them a month. Weeks sent late by hand,
    in any order, never carry a second one. A service that began after the month's first slot
    (a fresh install) waits for the next month, as readers who choose monthly mid-month do."""
    weeks = month_weeks(week, schedule)
    first = weeks[0]
    rows = session.execute(
        select(Issue.week, Issue.status, Issue.reader_skips).where(Issue.week.in_([w.key for w in weeks]))
    ).all()
    if any(
        key != week.key and status in (IssueStatus.SENDING, IssueStatus.SENT) and (skips or {}).get("first_of_month")
        for key, status, skips in rows
    ):
        return False  # another issue of the month carried it
    if week == first:
        return True
    if any(key == first.key and status in (IssueStatus.SENDING, IssueStatus.SENT) for key, status, _ in rows):
        return False  # the first slot went out (an issue from before monthly editions existed, too)
    if now < first.slot(schedule):
        return False  # a draft of a week ahead: the first slot is still to come and will carry it
    return bool(session.scalar(select(func.count()).select_from(Issue).where(Issue.week <= first.key)))


def monthly_settings(cfg: SelectionSettings, config: Config, week: Week) -> SelectionSettings:
    """The monthly window: from the previous month's first slot to this one (four or five weeks; a
    week or more longer when the month's first week was skipped and a later one carries the edition)."""
    schedule = config.settings.schedule
    start = week.month_first_week(schedule).previous_first_of_month(schedule).slot(schedule)
    days = max(cfg.window_days, round((week.slot(schedule) - start) / timedelta(days=1)))
    return cfg.model_copy(update={"window_days": min(days, 365)})


def monthly_featured(session: Session, issue_id: int) -> set[int]:
    """Comparisons of earlier monthly editions that went out: a month never repeats another's."""
    q = (
        select(EditionItem.comparison_id)
        .join(Edition, Edition.id == EditionItem.edition_id)
        .join(Issue, Issue.id == Edition.issue_id)
        .where(
            Edition.frequency == Frequency.MONTHLY,
            Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT]),
            Issue.id != issue_id,
        )
    )
    return set(session.scalars(q))


def edition_featured(session: Session, issue_id: int | None, key: str) -> set[int]:
    """Comparisons an earlier issue's edition with this key already sent: its readers never get one twice
    (a weekly topic edition also skips what the all-topics editions had, as the issue's picks always did)."""
    q = (
        select(EditionItem.comparison_id)
        .join(Edition, Edition.id == EditionItem.edition_id)
        .join(Issue, Issue.id == Edition.issue_id)
        .where(Edition.key == key, Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT]))
    )
    if issue_id is not None:
        q = q.where(Issue.id != issue_id)
    return set(session.scalars(q))


def fill_up(sel: Selection, overall: Selection, min_items: int) -> Selection:
    """Too few picks in the topics: add the overall best not already in, marked as filler."""
    if len(sel.picks) >= min_items:
        return sel
    have = {p.comparison.id for p in sel.picks}
    extra = [
        replace(p, filler=True, pinned=False) for p in overall.picks + overall.others if p.comparison.id not in have
    ]
    sel.picks = sel.picks + extra[: min_items - len(sel.picks)]
    sel.skip_reason = None if len(sel.picks) >= min_items else sel.skip_reason
    return sel


def select_all(
    session: Session, config: Config, issue: Issue, week: Week, the_plan: Plan, weekly: Selection, cutoff: datetime
) -> None:
    """Each planned edition's selection: the weekly overall is `weekly` (already made); the rest narrow it,
    ranked with the learnt interest `weekly` was ranked with, so every reader's picks learn alike."""
    lift = weekly.lift
    cfg = config.settings.selection
    pins, excludes = list(issue.pins or []), list(issue.excludes or [])
    monthly_cfg = monthly_settings(cfg, config, week)
    monthly_seen = monthly_featured(session, issue.id)
    overall: dict[Frequency, Selection] = {Frequency.WEEKLY: weekly}
    weekly_seen: set[int] | None = None
    if any(e.frequency is Frequency.MONTHLY for e in the_plan.editions):
        overall[Frequency.MONTHLY] = select_picks(
            session,
            monthly_cfg,
            week=issue.week,
            cutoff=cutoff,
            pins=pins,
            excludes=excludes,
            issue_id=issue.id,
            featured=monthly_seen,
            lift=lift,
        )
    for ed in the_plan.editions:
        base = overall[ed.frequency]
        if not ed.topics:
            ed.selection = base
        else:
            in_topics = _in_topics(the_plan.catalogue, set(ed.topics))
            monthly = ed.frequency is Frequency.MONTHLY
            if not monthly and weekly_seen is None:
                weekly_seen = featured_ids(session, issue.id)  # the same for every weekly topic edition
            seen = monthly_seen if monthly else (weekly_seen or set()) | edition_featured(session, issue.id, ed.key)
            own = select_picks(
                session,
                monthly_cfg if monthly else cfg,
                week=issue.week,
                cutoff=cutoff,
                pins=pins,
                excludes=excludes,
                issue_id=issue.id,
                only=in_topics,
                featured=seen,
                lift=lift,
            )
            ed.selection = fill_up(own, base, cfg.min_items)
        ed.skip_reason = ed.selection.skip_reason


def _in_topics(catalogue: Topics, topics: set[str]) -> Callable[[Comparison], bool]:
    return lambda c: bool(catalogue.of(c.data) & topics)


def edition_row(issue: Issue, ed: PlannedEdition, picks: list[Pick]) -> Edition:
    """The one place picks become rows: an Edition (not added to a session) with an EditionItem per pick,
    each with the comparison as it is now (the archive shows what was sent, not the page edited since)."""
    row = Edition(
        issue_id=issue.id,
        key=ed.key,
        label=ed.label,
        frequency=ed.frequency,
        topics=list(ed.topics),
        filled=sum(p.filler for p in picks),
    )
    for rank, pick in enumerate(picks, start=1):
        c = pick.comparison
        row.items.append(
            EditionItem(
                comparison_id=c.id,
                comparison=c,
                rank=rank,
                score=pick.score,
                score_parts=dict(pick.parts),
                pinned=pick.pinned,
                filler=pick.filler,
                snapshot={**c.data, "url": c.url, "slug": c.slug},
            )
        )
    return row


def compile_edition(
    config: Config, issue: Issue, ed: PlannedEdition, catalogue: Topics
) -> tuple[Edition, CompiledEmail]:
    """An Edition row (not added to a session) with its picks and its compile. The main edition is the
    plain issue (no edition banner), as readers of every topic, weekly, always had it."""
    sel = ed.selection
    assert sel is not None
    row = edition_row(issue, ed, sel.picks)
    view = (
        None
        if ed.key == MAIN
        else EditionView(ed.label, tuple(catalogue.name(k) for k in ed.topics), ed.frequency is Frequency.MONTHLY)
    )
    return row, _compiled_into(row, compile_issue(config, issue, list(row.items), edition=view))


def compile_main(config: Config, issue: Issue, picks: list[Pick]) -> tuple[Edition, CompiledEmail]:
    """The main edition of a draft from its live picks (the preview's; no readers' choices needed)."""
    label = edition_label(Frequency.WEEKLY, (), Topics((), {}))
    row = edition_row(issue, PlannedEdition(MAIN, label, Frequency.WEEKLY, ()), picks)
    return row, _compiled_into(row, compile_issue(config, issue, list(row.items)))


def _compiled_into(row: Edition, compiled: CompiledEmail) -> CompiledEmail:
    row.subject, row.preheader = compiled.subject, compiled.preheader
    row.html, row.text, row.placeholder_nonce = compiled.html, compiled.text, compiled.nonce
    row.links = compiled.links
    return compiled
