"""`selection.weight_interest` (off by default): comparisons in categories readers clicked more than
average over the last issues are boosted, and the boost shows in each pick's score breakdown."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, select

from digest.cycle.draft import reader_interest
from digest.render.tracked import position
from digest.selection.scoring import select_picks
from digest.storage.models import Click, Delivery, Issue
from digest.weeks import Week
from tests.support_serve import seed, send_issue


def _item(title: str, category: str, ship: int) -> dict:
    a, b = title.split(" vs ")
    return {
        "title": title,
        "intro": "x",
        "community_votes": 0,
        "tools": [
            {
                "category": category,
                "name": a,
                "tagline": "t",
                "panel_ship": ship,
                "community": None,
                "price": "Free",
                "description": "d",
            },
            {
                "category": category,
                "name": b,
                "tagline": "t",
                "panel_ship": ship,
                "community": None,
                "price": "Free",
                "description": "d",
            },
        ],
        "quotes": [],
    }


def _with_interest(rt, weight: float) -> None:
    s = rt.settings
    rt.config.settings = s.model_copy(
        update={"selection": s.selection.model_copy(update={"weight_interest": weight, "min_items": 2})}
    )


def _notes_clicked_then_a_new_week(rt) -> tuple[Week, datetime]:
    """2026-W40 went to 10 readers and 6 clicked its Notes comparison (none its Chat one); W41 has a new
    Notes comparison (panel 60) and a new Chat one (panel 90). Returns W41 and its slot."""
    w1, w2 = Week.parse("2026-W40"), Week.parse("2026-W41")
    t1 = w1.slot(rt.settings.schedule)
    seed(
        rt,
        t1 - timedelta(days=1),
        people=10,
        extra=[_item("Alpha Notes vs Beta Notes", "Notes", 70), _item("Chat One vs Chat Two", "Chat", 70)],
    )
    send_issue(rt, w1.key, t1)
    with rt.sessions.begin() as s:
        issue = s.scalar(select(Issue).where(Issue.week == w1.key))
        notes_rank = next(i.rank for i in issue.main_edition.items if "Notes" in i.comparison.title)
        readers = s.scalars(select(Delivery.id).where(Delivery.issue_id == issue.id)).all()[:6]
        s.execute(
            insert(Click),
            [
                {
                    "issue_id": issue.id,
                    "delivery_id": d,
                    "reader": d,
                    "kind": "click",
                    "link": position(notes_rank, "card"),
                    "method": "GET",
                    "agent": None,
                    "at": t1 + timedelta(hours=n),
                }
                for n, d in enumerate(readers)
            ],
        )
    t2 = w2.slot(rt.settings.schedule)
    seed(
        rt,
        t2 - timedelta(days=1),
        people=0,
        extra=[_item("Gamma Notes vs Delta Notes", "Notes", 60), _item("Chat Three vs Chat Four", "Chat", 90)],
    )
    return w2, t2


def test_categories_readers_click_more_are_boosted_when_the_selection_learns(rt) -> None:
    w2, t2 = _notes_clicked_then_a_new_week(rt)

    def picks(weight: float):
        _with_interest(rt, weight)
        with rt.sessions() as s:
            sel = select_picks(s, rt.settings.selection, week=w2.key, cutoff=t2, lift=reader_interest(rt, s))
        return sel.picks

    plain = picks(0.0)  # the default: nothing learnt, no interest term
    assert [p.comparison.title for p in plain][:2] == ["Chat Three vs Chat Four", "Gamma Notes vs Delta Notes"]
    assert all("interest" not in p.parts for p in plain)
    with rt.sessions() as s:
        assert reader_interest(rt, s) is None
        _with_interest(rt, 1.0)
        lift = reader_interest(rt, s)
    # 6 clicks in 10 emails for Notes; on average 6 in 40 placements (the two sample comparisons are
    # Developer Tools, Chat had none): Notes was 4x the average, lift 3 (the score caps it at 1).
    assert lift == {"Notes": 3.0}

    learnt = picks(1.0)
    assert [p.comparison.title for p in learnt][:2] == ["Gamma Notes vs Delta Notes", "Chat Three vs Chat Four"]
    notes, chat = learnt[0], learnt[1]
    assert notes.parts["interest"] > 0 and chat.parts["interest"] == 0
    assert abs(sum(notes.parts.values()) - notes.score) < 1e-3  # one more term of the same breakdown


def test_topic_and_monthly_editions_learn_the_same_interest_as_the_weekly_picks(rt) -> None:
    """An operator who turns `weight_interest` on means every reader's picks, not only the all-topics ones."""
    from digest.cycle.draft import plan_editions
    from digest.selection.topics import category_key
    from digest.storage.models import Frequency
    from tests.support_editions import add_reader

    w2, t2 = _notes_clicked_then_a_new_week(rt)
    both = "+".join(sorted([category_key("Notes"), category_key("Chat")]))
    add_reader(rt, "topics@example.com", topics=both)
    add_reader(rt, "monthly@example.com", topics=both, frequency=Frequency.MONTHLY)

    def first_two(weight: float) -> dict[str, list[str]]:
        _with_interest(rt, weight)
        from digest.cycle.draft import current_selection
        from digest.cycle.week import get_or_create_issue

        issue_id = get_or_create_issue(rt, w2)
        with rt.sessions() as s:
            issue = s.get(Issue, issue_id)
            weekly = current_selection(rt, s, issue, t2)
            the_plan = plan_editions(rt, s, issue, w2, weekly, t2, t2)
            return {
                ed.key: [p.comparison.title for p in ed.selection.picks][:2]
                for ed in the_plan.editions
                if ed.selection is not None and ed.topics
            }

    plain = first_two(0.0)
    assert plain and all(v == ["Chat Three vs Chat Four", "Gamma Notes vs Delta Notes"] for v in plain.values()), plain
    learnt = first_two(1.0)
    assert len(learnt) == len(plain)
    # Notes first in each (the monthly one may also bring back last month's Notes comparison, which its
    # readers never had, ahead of the Chat one: its window is the month).
    assert all(v[0] == "Gamma Notes vs Delta Notes" for v in learnt.values()), learnt
    assert learnt["weekly/" + both] == ["Gamma Notes vs Delta Notes", "Chat Three vs Chat Four"]
    assert learnt["monthly/" + both] == ["Gamma Notes vs Delta Notes", "Alpha Notes vs Beta Notes"]
