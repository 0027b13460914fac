"""Pick the week's comparisons: a documented, weighted score with a deterministic tie-break.

score = (w_panel * panel + w_community * community + w_freshness * freshness
         + w_diversity * diversity + w_interest * interest) / (sum of weights)
  panel      mean panel-ship share of both tools (0..1)
  community  mean community vote (0..1), shrunk toward 0.5 by `community_prior_votes`:
             (votes * vote + prior * 0.5) / (votes + prior); no votes at all -> 0.5;
             a vote with an unknown count counts as `prior` votes (half weight)
  freshness  1.0 at the cut-off, falling linearly to 0.0 at the start of the window
  diversity  share of the comparison's tools the issue does not have yet (1.0, 0.5 or 0.0)
  interest   (only with `weight_interest` > 0, off by default) how far readers' click-through on
             the comparison's best tool category over the last `interest_issues` issues was above
             the average of all comparisons: (category - average) / average, from 0 (at or below
             the average, or no clicks yet) up to 1 (twice the average or more). The caller
             measures it (digest.selection.interest) and passes category -> lift.
Picks are made one at a time (pins first), so diversity is measured against the picks before it:
the site publishes many comparisons with the same popular tool, and an issue reads better when
each card brings a new one. With too few other candidates a repeat still gets in, ranked lower.
Ties: higher score, then newer, then slug A-Z.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import SelectionSettings
from digest.errors import UserError
from digest.storage.models import MAIN_EDITION_KEY, Comparison, Edition, EditionItem, Issue, IssueStatus
from digest.weeks import as_utc


@dataclass
class Pick:
    comparison: Comparison
    score: float
    parts: dict[str, float]
    pinned: bool = False
    filler: bool = False  # the overall best, filling an edition whose topics had too few

    def as_dict(self) -> dict[str, Any]:
        return {
            "slug": self.comparison.slug,
            "title": self.comparison.title,
            "score": self.score,
            "parts": self.parts,
            "pinned": self.pinned,
            "filler": self.filler,
            "published_at": as_utc(self.comparison.published_at).isoformat(),
        }


@dataclass
class Selection:
    week: str
    cutoff: datetime
    window_start: datetime
    picks: list[Pick] = field(default_factory=list)
    others: list[Pick] = field(default_factory=list)  # candidates below the cut, scored against the picks
    candidates: int = 0
    skip_reason: str | None = None
    lift: Mapping[str, float] | None = None  # the learnt interest it was ranked with (its editions use it too)

    def as_dict(self) -> dict[str, Any]:
        return {
            "week": self.week,
            "cutoff": self.cutoff.isoformat(),
            "window_start": self.window_start.isoformat(),
            "candidates": self.candidates,
            "skipped": self.skip_reason is not None,
            "skip_reason": self.skip_reason,
            "picks": [p.as_dict() for p in self.picks],
        }


def tool_key(tool: dict[str, Any]) -> str:
    """A tool's name as a comparable key (case and spacing ignored): the same tool on two pages."""
    return " ".join(str(tool.get("name", "")).split()).casefold()


def tool_keys(comparison: Comparison) -> list[str]:
    return [tool_key(t) for t in comparison.data.get("tools", [])]


def diversity(comparison: Comparison, seen_tools: set[str]) -> float:
    """Share of the comparison's tools not in `seen_tools` (the tools of the picks before it)."""
    keys = tool_keys(comparison)
    return sum(k not in seen_tools for k in keys) / len(keys) if keys else 1.0


def categories(comparison: Comparison) -> list[str]:
    """The tool categories of a comparison, as click-through by category counts them."""
    return sorted(
        {
            str(t.get("category") or "").strip()
            for t in comparison.data.get("tools", [])
            if str(t.get("category") or "").strip()
        }
    )


def interest(comparison: Comparison, lift: Mapping[str, float]) -> float:
    """The best lift among the comparison's categories (0..1)."""
    return max((min(1.0, max(0.0, lift.get(c, 0.0))) for c in categories(comparison)), default=0.0)


def score(
    comparison: Comparison,
    cfg: SelectionSettings,
    cutoff: datetime,
    seen_tools: AbstractSet[str] = frozenset(),
    lift: Mapping[str, float] | None = None,
) -> tuple[float, dict[str, float]]:
    tools = comparison.data.get("tools", [])
    panel = sum(t.get("panel_ship", 0) for t in tools) / (100.0 * max(1, len(tools)))
    votes_pct = [t["community"] for t in tools if t.get("community") is not None]
    prior = cfg.community_prior_votes
    if votes_pct:
        vote = sum(votes_pct) / (100.0 * len(votes_pct))
        n = comparison.community_votes if comparison.community_votes is not None else prior
        community = (n * vote + prior * 0.5) / (n + prior) if n + prior > 0 else vote
    else:
        community = 0.5
    age = (cutoff - as_utc(comparison.published_at)).total_seconds() / 86400.0
    freshness = min(1.0, max(0.0, 1.0 - age / cfg.window_days))
    total_w = (
        cfg.weight_panel + cfg.weight_community + cfg.weight_freshness + cfg.weight_diversity + cfg.weight_interest
    )
    parts = {
        "panel": round(cfg.weight_panel * panel / total_w, 4),
        "community": round(cfg.weight_community * community / total_w, 4),
        "freshness": round(cfg.weight_freshness * freshness / total_w, 4),
        "diversity": round(cfg.weight_diversity * diversity(comparison, set(seen_tools)) / total_w, 4),
    }
    if cfg.weight_interest > 0:
        parts["interest"] = round(cfg.weight_interest * interest(comparison, lift or {}) / total_w, 4)
    return round(sum(parts.values()), 4), parts


def ranked(
    comparisons: list[Comparison],
    cfg: SelectionSettings,
    cutoff: datetime,
    seen_tools: set[str],
    lift: Mapping[str, float] | None = None,
) -> list[Pick]:
    """Best first: higher score, then newer, then slug A-Z."""
    picks = [Pick(c, *score(c, cfg, cutoff, seen_tools, lift)) for c in comparisons]
    picks.sort(key=lambda p: (-p.score, -as_utc(p.comparison.published_at).timestamp(), p.comparison.slug))
    return picks


def featured_ids(session: Session, except_issue_id: int | None = None) -> set[int]:
    """Comparisons already in an issue that went out (or is going out): its picks, its main edition's."""
    q = (
        select(EditionItem.comparison_id)
        .join(Edition, Edition.id == EditionItem.edition_id)
        .join(Issue, Issue.id == Edition.issue_id)
        .where(Edition.key == MAIN_EDITION_KEY, Issue.status.in_([IssueStatus.SENDING, IssueStatus.SENT]))
    )
    if except_issue_id is not None:
        q = q.where(Issue.id != except_issue_id)
    return set(session.scalars(q))


def resolve_slugs(session: Session, slugs: list[str], what: str) -> list[Comparison]:
    rows = {c.slug: c for c in session.scalars(select(Comparison).where(Comparison.slug.in_(slugs)))}
    missing = [s for s in slugs if s not in rows]
    if missing:
        raise UserError(f"{what}: unknown comparison slug {missing[0]!r} (see `digest comparisons list`)")
    return [rows[s] for s in slugs]


def select_picks(
    session: Session,
    cfg: SelectionSettings,
    *,
    week: str,
    cutoff: datetime,
    pins: Sequence[str] = (),
    excludes: Sequence[str] = (),
    issue_id: int | None = None,
    lift: Mapping[str, float] | None = None,
    only: Callable[[Comparison], bool] | None = None,
    featured: set[int] | None = None,
) -> Selection:
    """The week's picks. `lift`: category -> readers' interest (see the module docstring); used only
    with weight_interest. An edition narrows it: `only` keeps the comparisons of its topics (pins
    outside them are left out); `featured` replaces the comparisons already sent (a monthly edition
    may repeat the weekly ones, not earlier months'; its `cfg.window_days` spans the month)."""
    both = set(pins) & set(excludes)
    if both:
        raise UserError(f"pin/exclude: {sorted(both)[0]!r} is both pinned and excluded")
    pinned = resolve_slugs(session, list(dict.fromkeys(pins)), "pin")
    resolve_slugs(session, list(dict.fromkeys(excludes)), "exclude")
    cutoff = as_utc(cutoff)
    start = cutoff - timedelta(days=cfg.window_days)
    sel = Selection(week=week, cutoff=cutoff, window_start=start, lift=lift)
    if featured is None:
        featured = featured_ids(session, issue_id)
    rows = session.scalars(
        select(Comparison).where(Comparison.published_at >= start, Comparison.published_at <= cutoff)
    )
    candidates = [c for c in rows if c.id not in featured and c.slug not in excludes and c.slug not in pins]
    if only is not None:
        pinned = [c for c in pinned if only(c)]
        candidates = [c for c in candidates if only(c)]
    sel.candidates = len(candidates) + len(pinned)
    seen: set[str] = set()
    picks: list[Pick] = []
    for c in pinned:
        picks.append(Pick(c, *score(c, cfg, cutoff, seen, lift), pinned=True))
        seen.update(tool_keys(c))
    rest = list(candidates)
    while rest and len(picks) < cfg.max_items:
        best = ranked(rest, cfg, cutoff, seen, lift)[0]
        picks.append(best)
        seen.update(tool_keys(best.comparison))
        rest.remove(best.comparison)
    sel.picks = picks[: cfg.max_items]
    sel.others = ranked(rest, cfg, cutoff, seen, lift)
    if len(sel.picks) < cfg.min_items:
        sel.skip_reason = (
            f"only {len(sel.picks)} comparison(s) published between {start:%Y-%m-%d %H:%M} and "
            f"{cutoff:%Y-%m-%d %H:%M} UTC and not featured before; at least {cfg.min_items} needed "
            f"(selection.min_items)"
        )
    return sel
