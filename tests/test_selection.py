"""Selection: window, score parts, tie-break, featured-once, pins/excludes, skipping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from digest.config import SelectionSettings
from digest.cycle.freeze import prepare
from digest.cycle.send import send_week
from digest.cycle.week import cutoff_for
from digest.errors import UserError
from digest.ingest.schema import ComparisonData
from digest.ingest.store import upsert
from digest.selection.scoring import score, select_picks
from digest.storage.models import Comparison, Issue, IssueStatus
from digest.weeks import Week
from subscribers.api import add_subscriber

CUTOFF = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 2026-W48 09:00 London (GMT)


def item(title: str, a: int, b: int, *, community: int | None = None, votes: int | None = None) -> ComparisonData:
    left, right = title.split(" vs ")
    tools = [
        {"category": "LLM", "name": left, "tagline": "", "panel_ship": a, "community": community, "price": "Free"},
        {"category": "LLM", "name": right, "tagline": "", "panel_ship": b, "community": community, "price": "Free"},
    ]
    return ComparisonData.model_validate({"title": title, "tools": tools, "community_votes": votes})


def add(rt, data: ComparisonData, days_before: float) -> None:
    with rt.sessions.begin() as s:
        upsert(s, [data], default_url="https://x.test/c", published=CUTOFF - timedelta(days=days_before))


def test_score_parts_are_documented_formula() -> None:
    cfg = SelectionSettings()
    c = Comparison(
        slug="a-vs-b",
        published_at=CUTOFF - timedelta(days=3.5),
        community_votes=20,
        data=item("A vs B", 100, 50, community=90).model_dump(mode="json"),
    )
    total, parts = score(c, cfg, CUTOFF)
    # panel 0.75; community (20*0.9 + 20*0.5)/40 = 0.7; freshness 0.5; diversity 1 (the issue is empty);
    # weights 0.5/0.3/0.2/0.3 sum 1.3
    assert parts == {"panel": 0.2885, "community": 0.1615, "freshness": 0.0769, "diversity": 0.2308}
    assert total == pytest.approx(0.985 / 1.3, abs=1e-4)


def test_community_without_votes_is_neutral_and_few_votes_are_discounted() -> None:
    cfg = SelectionSettings(weight_diversity=0)  # the other weights then add up to 1
    none = Comparison(
        slug="n", published_at=CUTOFF, community_votes=None, data=item("A vs B", 50, 50).model_dump(mode="json")
    )
    few = Comparison(
        slug="f",
        published_at=CUTOFF,
        community_votes=2,
        data=item("A vs B", 50, 50, community=100).model_dump(mode="json"),
    )
    many = Comparison(
        slug="m",
        published_at=CUTOFF,
        community_votes=2000,
        data=item("A vs B", 50, 50, community=100).model_dump(mode="json"),
    )
    c_none, c_few, c_many = (score(x, cfg, CUTOFF)[1]["community"] for x in (none, few, many))
    assert c_none == pytest.approx(0.15)  # 0.5 * 0.3
    assert c_none < c_few < c_many
    assert c_few < 0.3 * 0.6 and c_many > 0.3 * 0.99


def test_window_ranking_and_deterministic_ties(rt) -> None:
    add(rt, item("Old vs Tool", 100, 100), days_before=8)  # outside the 7-day window
    add(rt, item("Future vs Tool", 100, 100), days_before=-1)  # after the cut-off
    add(rt, item("Strong vs Tool", 100, 100), days_before=2)
    add(rt, item("Weak vs Tool", 10, 10), days_before=2)
    add(rt, item("Twin B vs Tool", 60, 60), days_before=3)
    add(rt, item("Twin A vs Tool", 60, 60), days_before=3)
    with rt.sessions() as s:
        sel = select_picks(s, rt.settings.selection, week="2026-W48", cutoff=CUTOFF)
    slugs = [p.comparison.slug for p in sel.picks]
    assert slugs == ["strong-vs-tool", "twin-a-vs-tool", "twin-b-vs-tool", "weak-vs-tool"]
    assert all(set(p.parts) == {"panel", "community", "freshness", "diversity"} for p in sel.picks)
    assert sel.skip_reason is None


def test_pins_excludes_and_max_items(rt) -> None:
    for i in range(7):
        add(rt, item(f"T{i} vs X", 100 - i * 10, 50), days_before=1)
    add(rt, item("Archive vs X", 5, 5), days_before=30)
    with rt.sessions() as s:
        sel = select_picks(
            s, rt.settings.selection, week="2026-W48", cutoff=CUTOFF, pins=["archive-vs-x"], excludes=["t0-vs-x"]
        )
    assert [p.comparison.slug for p in sel.picks] == ["archive-vs-x", "t1-vs-x", "t2-vs-x", "t3-vs-x", "t4-vs-x"]
    assert sel.picks[0].pinned
    with rt.sessions() as s, pytest.raises(UserError, match="unknown comparison slug 'nope'"):
        select_picks(s, rt.settings.selection, week="2026-W48", cutoff=CUTOFF, pins=["nope"])
    with rt.sessions() as s, pytest.raises(UserError, match="both pinned and excluded"):
        select_picks(s, rt.settings.selection, week="2026-W48", cutoff=CUTOFF, pins=["t1-vs-x"], excludes=["t1-vs-x"])


def test_too_few_picks_skips_the_week_never_an_empty_email(rt) -> None:
    add(rt, item("Lonely vs Tool", 100, 100), days_before=1)
    with rt.sessions.begin() as s:
        add_subscriber(s, "r@example.com", confirmed=True)
    result = send_week(rt, Week.parse("2026-W48"), manual=False, now=CUTOFF)
    assert result.summary is None
    assert "at least 2 needed" in result.prepared.skip_reason
    with rt.sessions() as s:
        issue = s.scalar(select(Issue))
        assert issue.status == IssueStatus.SKIPPED and issue.main_edition is None
    assert not (rt.outbox_dir / "2026-W48").exists()


def test_featured_comparisons_are_not_picked_again(rt) -> None:
    add(rt, item("One vs Tool", 90, 90), days_before=1)
    add(rt, item("Two vs Tool", 80, 80), days_before=1)
    add(rt, item("Three vs Tool", 70, 70), days_before=1)
    with rt.sessions.begin() as s:
        add_subscriber(s, "r@example.com", confirmed=True)
    first = prepare(rt, Week.parse("2026-W48"), manual=False, now=CUTOFF)
    assert [p.comparison.slug for p in first.selection.picks] == ["one-vs-tool", "two-vs-tool", "three-vs-tool"]
    with rt.sessions() as s:
        sel = select_picks(s, rt.settings.selection, week="2026-W49", cutoff=CUTOFF + timedelta(days=2))
    assert sel.picks == [] and sel.skip_reason


def test_cutoff_is_slot_or_now_for_current_week_by_hand(rt) -> None:
    now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # Wednesday of W48
    assert cutoff_for(rt, Week.parse("2026-W48"), manual=True, now=now) == now
    assert cutoff_for(rt, Week.parse("2026-W48"), manual=False, now=now) == CUTOFF
    assert cutoff_for(rt, Week.parse("2026-W47"), manual=True, now=now) == CUTOFF - timedelta(days=7)


def test_slot_follows_local_time_across_dst(project) -> None:
    from digest.config import ScheduleSettings

    london = ScheduleSettings(day="monday", time="09:00", timezone="Europe/London")
    assert Week.parse("2026-W14").slot(london).hour == 8  # BST (UTC+1) from 29 March
    assert Week.parse("2026-W13").slot(london).hour == 9  # GMT until then
