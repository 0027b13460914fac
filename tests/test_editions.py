"""Editions: one per choice in use, each selected from its topics, compiled once, each reader once a week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from digest.config import TopicSettings
from digest.cycle.send import send_week
from digest.selection.topics import build
from digest.storage.models import Batch, Delivery, Edition, Frequency, Issue, Subscriber
from digest.weeks import Week
from tests.support_editions import DEV, IMAGES, MODELS, add_reader, seed_categories
from tests.support_subscribers import outbox_messages, text_of

W49_NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W49 (slot Monday 30 Nov: not a month's first)
W50_NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W50 (slot Monday 7 Dec: December's first)


def copy_for(rt, week: str, to: str):
    found = outbox_messages(rt, week, to=to)
    assert len(found) == 1, f"{to} got {len(found)} copies of {week}"
    return found[0]


def test_topics_are_the_categories_renamed_merged_or_hidden() -> None:
    cats = ["Developer Tools", "developer  tools", "Open Models", "Closed Models", "Image Generation", "Agents"]
    plain = build(TopicSettings(), cats)
    assert [(t.key, t.name) for t in plain.topics] == [
        ("agents", "Agents"),
        ("closed-models", "Closed Models"),
        ("developer-tools", "Developer Tools"),
        ("image-generation", "Image Generation"),
        ("open-models", "Open Models"),
    ]
    settings = TopicSettings(
        rename={"Developer Tools": "Coding"},
        merge={"Models": ["Open Models", "closed models"]},
        hide=["Image Generation"],
    )
    shaped = build(settings, cats)
    assert [(t.key, t.name) for t in shaped.topics] == [
        ("agents", "Agents"),
        ("developer-tools", "Coding"),
        ("models", "Models"),
    ]
    comparison = {"tools": [{"category": "Open Models"}, {"category": "Developer Tools"}]}
    assert shaped.of(comparison) == {"models", "developer-tools"}  # the topics of both its tools
    assert shaped.of({"tools": [{"category": "Image Generation"}] * 2}) == set()
    assert shaped.parse("image-generation+models+gone") == ("models",)  # no longer offered: dropped
    assert shaped.parse("agents+developer-tools+models") == ()  # every topic is all topics
    assert shaped.parse("image-generation") == ()


def test_config_refuses_a_category_in_two_merged_topics(tmp_path) -> None:
    from digest.config import load_config
    from digest.errors import ConfigError
    from tests.conftest import write_project

    cfg = write_project(tmp_path)
    text = cfg.read_text()
    assert "\nmerge = {}" in text
    cfg.write_text(text.replace("\nmerge = {}", '\nmerge = { A = ["Open Models"], B = ["open models"] }'))
    with pytest.raises(ConfigError, match="topics: .*'open models' is in both 'A' and 'B'"):
        load_config(cfg, env={})


def test_each_reader_gets_the_edition_of_their_topics_once(rt) -> None:
    seed_categories(rt, published=W49_NOW - timedelta(days=1))
    add_reader(rt, "all@example.com")
    add_reader(rt, "models@example.com", topics="open-models")
    add_reader(rt, "images@example.com", topics="image-generation")
    add_reader(rt, "both@example.com", topics="developer-tools+open-models")
    add_reader(rt, "monthly@example.com", frequency=Frequency.MONTHLY)
    add_reader(rt, "paused@example.com", paused_until=W49_NOW + timedelta(days=10))
    result = send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    plan = result.prepared.plan
    assert plan is not None and result.summary is not None
    assert plan.paused == 1 and plan.monthly_waiting == 1  # skipped and counted
    assert result.summary.sent == 4
    with rt.sessions() as s:
        eds = {e.key: e for e in s.scalars(select(Edition))}
        assert set(eds) == {
            "weekly/all",
            "weekly/open-models",
            "weekly/image-generation",
            "weekly/developer-tools+open-models",
        }
        assert eds["weekly/open-models"].label == "Open Models, weekly"
        assert eds["weekly/image-generation"].filled == 1
        # The issue's content is its editions; the archive's is the all-topics one.
        issue = s.scalar(select(Issue))
        assert issue.main_edition is eds["weekly/all"] and eds["weekly/all"].html
        per_reader = dict(
            s.execute(
                select(Subscriber.email, Edition.key)
                .join(Delivery, Delivery.subscriber_id == Subscriber.id)
                .join(Edition, Edition.id == Delivery.edition_id)
            ).all()
        )
    assert per_reader == {
        "all@example.com": "weekly/all",
        "models@example.com": "weekly/open-models",
        "images@example.com": "weekly/image-generation",
        "both@example.com": "weekly/developer-tools+open-models",
    }
    with rt.sessions() as s:  # each batch holds one edition's readers; batch numbers run on across editions
        used = set(s.execute(select(Delivery.batch_no, Delivery.edition_id)).all())
        batches = set(s.execute(select(Batch.batch_no, Batch.edition_id)).all())
    assert used == batches and sorted(b for b, _ in batches) == list(range(len(batches)))
    models = text_of(copy_for(rt, "2026-W49", "models@example.com"))
    assert all(t in models for t in MODELS) and not any(t in models for t in DEV + IMAGES)
    assert "Your edition: Open Models" in models
    images = copy_for(rt, "2026-W49", "images@example.com")
    body = text_of(images)
    assert IMAGES[0] in body and "ALSO WORTH A LOOK: THIS WEEK'S BEST OVERALL" in body
    assert body.index(IMAGES[0]) < body.index("ALSO WORTH A LOOK")
    html = images.get_body(("html",)).get_content()
    assert "Also worth a look: this week&rsquo;s best overall" in html or "this week’s best overall" in html
    everything = text_of(copy_for(rt, "2026-W49", "all@example.com"))
    assert "Your edition" not in everything
    assert not outbox_messages(rt, "2026-W49", to="monthly@example.com")
    assert not outbox_messages(rt, "2026-W49", to="paused@example.com")


def test_monthly_readers_get_the_best_of_the_month_on_its_first_slot_only(rt) -> None:
    seed_categories(rt, published=datetime(2026, 11, 16, tzinfo=UTC), tag=" (November)", best=100)
    seed_categories(rt, published=W49_NOW - timedelta(days=1), best=60)
    seed_categories(rt, published=W50_NOW - timedelta(days=1), tag=" (December)", best=60)
    add_reader(rt, "weekly@example.com")
    add_reader(rt, "monthly@example.com", frequency=Frequency.MONTHLY)
    add_reader(rt, "monthly-models@example.com", frequency=Frequency.MONTHLY, topics="open-models")
    add_reader(rt, "paused@example.com", paused_until=datetime(2026, 12, 5, tzinfo=UTC))  # resumes by itself
    w49 = send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    assert w49.summary is not None and w49.summary.sent == 1
    assert w49.prepared.plan is not None and w49.prepared.plan.monthly_waiting == 2 and w49.prepared.plan.paused == 1
    w50 = send_week(rt, Week.parse("2026-W50"), manual=True, now=W50_NOW)
    assert w50.summary is not None and w50.summary.sent == 4
    monthly = text_of(copy_for(rt, "2026-W50", "monthly@example.com"))
    assert "this month's" in monthly and "Your edition: the best of the month" in monthly
    assert "(November)" in monthly  # the month's best, not only this week's
    weekly = text_of(copy_for(rt, "2026-W50", "weekly@example.com"))
    assert "(November)" not in weekly and "(December)" in weekly
    models = text_of(copy_for(rt, "2026-W50", "monthly-models@example.com"))
    assert not any(t in models for t in DEV)
    copy_for(rt, "2026-W50", "paused@example.com")
    with rt.sessions() as s:
        keys = set(s.scalars(select(Edition.key).join(Issue).where(Issue.week == "2026-W50")))
    assert keys == {"weekly/all", "monthly/all", "monthly/open-models"}


W51_NOW = datetime(2026, 12, 16, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W51 (slot Monday 14 Dec)
W52_NOW = datetime(2026, 12, 23, 12, 0, tzinfo=UTC)


def test_when_the_months_first_week_is_skipped_monthly_readers_get_the_next_issue_that_goes_out(rt) -> None:
    """A quiet first week (too few new comparisons: skipped) must not cost monthly readers their month:
    the next issue that goes out that month carries their edition, once; the weeks after do not."""
    seed_categories(rt, published=datetime(2026, 11, 16, tzinfo=UTC), tag=" (November)", best=100)
    add_reader(rt, "weekly@example.com")
    add_reader(rt, "monthly@example.com", frequency=Frequency.MONTHLY)
    w50 = send_week(rt, Week.parse("2026-W50"), manual=True, now=W50_NOW)
    assert w50.prepared.status == "skipped"  # nothing new in the week before 7 December
    seed_categories(rt, published=W51_NOW - timedelta(days=1), tag=" (December)", best=60)
    w51 = send_week(rt, Week.parse("2026-W51"), manual=True, now=W51_NOW)
    assert w51.summary is not None and w51.summary.sent == 2, w51.prepared
    monthly = text_of(copy_for(rt, "2026-W51", "monthly@example.com"))
    assert "Your edition: the best of the month" in monthly and "(November)" in monthly  # the month's window
    assert "(November)" not in text_of(copy_for(rt, "2026-W51", "weekly@example.com"))
    seed_categories(rt, published=W52_NOW - timedelta(days=1), tag=" (late December)", best=60)
    w52 = send_week(rt, Week.parse("2026-W52"), manual=True, now=W52_NOW)
    assert w52.summary is not None and w52.summary.sent == 1  # the month is served: weekly readers only
    assert w52.prepared.plan is not None and w52.prepared.plan.monthly_waiting == 1
    assert not outbox_messages(rt, "2026-W52", to="monthly@example.com")


def test_a_month_carries_one_monthly_edition_whichever_week_is_sent_late(rt) -> None:
    """Weeks sent out of order by hand never give monthly readers a second edition in a month, and a
    first week that never went out (a draft, the server down) is carried like a skipped one."""
    seed_categories(rt, published=datetime(2026, 11, 16, tzinfo=UTC), tag=" (November)", best=100)
    add_reader(rt, "monthly@example.com", frequency=Frequency.MONTHLY)
    add_reader(rt, "weekly@example.com")
    send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)  # the service ran before December (skipped)
    assert send_week(rt, Week.parse("2026-W50"), manual=True, now=W50_NOW).prepared.status == "skipped"
    # W51 missed (the server was down); W52 goes out and carries the monthly edition.
    seed_categories(rt, published=W52_NOW - timedelta(days=1), tag=" (late December)", best=60)
    w52 = send_week(rt, Week.parse("2026-W52"), manual=True, now=W52_NOW)
    assert w52.summary is not None and w52.summary.sent == 2
    copy_for(rt, "2026-W52", "monthly@example.com")
    # The operator then sends the missed W51, and re-sends the skipped W50: weekly readers only.
    for week, published in (
        ("2026-W51", datetime(2026, 12, 10, tzinfo=UTC)),
        ("2026-W50", datetime(2026, 12, 3, tzinfo=UTC)),
    ):
        seed_categories(rt, published=published, tag=f" ({week})", best=60)  # found late, in that week's window
        late = send_week(rt, Week.parse(week), manual=True, now=W52_NOW + timedelta(days=1))
        assert late.summary is not None and late.summary.sent == 1, (week, late.prepared)
        assert not outbox_messages(rt, week, to="monthly@example.com")


def test_two_weeks_of_a_month_frozen_at_once_carry_one_monthly_edition(rt, monkeypatch) -> None:
    """An operator re-sends a skipped first week by hand while `digest serve` freezes the next week:
    each freeze must see the other's choice (on PostgreSQL both ran at once and both carried it)."""
    import threading
    import time

    from digest.cycle import editions

    seed_categories(rt, published=datetime(2026, 11, 16, tzinfo=UTC), tag=" (November)", best=100)
    add_reader(rt, "monthly@example.com", frequency=Frequency.MONTHLY)
    add_reader(rt, "weekly@example.com")
    send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    assert send_week(rt, Week.parse("2026-W50"), manual=True, now=W50_NOW).prepared.status == "skipped"
    seed_categories(rt, published=datetime(2026, 12, 3, tzinfo=UTC), tag=" (W50)", best=60)
    seed_categories(rt, published=datetime(2026, 12, 10, tzinfo=UTC), tag=" (W51)", best=60)
    real = editions.carries_monthly

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        answer = real(*args, **kwargs)
        time.sleep(1.0)  # the rest of a freeze (select, compile, enqueue) takes this long or longer
        return answer

    monkeypatch.setattr(editions, "carries_monthly", slow)
    errors: list[BaseException] = []

    def send(week: str, now: datetime) -> None:
        try:
            send_week(rt, Week.parse(week), manual=True, now=now)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=send, args=("2026-W50", W51_NOW)),
        threading.Thread(target=send, args=("2026-W51", W51_NOW)),
    ]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(60)
    assert not errors, errors
    copies = [w for w in ("2026-W50", "2026-W51") if outbox_messages(rt, w, to="monthly@example.com")]
    assert len(copies) == 1, copies


def test_a_later_weeks_draft_does_not_claim_the_monthly_edition_before_the_first_slot(rt) -> None:
    """`digest select --week` or the preview of a week ahead, while the month's first slot is still to
    come: that slot will carry it, so the later week's draft shows the monthly readers waiting."""
    from digest.cycle.editions import carries_monthly

    send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)  # the service runs
    schedule = rt.settings.schedule
    with rt.sessions() as s:
        assert not carries_monthly(s, Week.parse("2026-W51"), schedule, W49_NOW)  # W50's slot is ahead
        assert carries_monthly(s, Week.parse("2026-W50"), schedule, W49_NOW)
        assert carries_monthly(s, Week.parse("2026-W51"), schedule, W51_NOW)  # W50 never went out


def test_a_first_week_that_never_went_out_is_carried_too(rt) -> None:
    seed_categories(rt, published=datetime(2026, 11, 16, tzinfo=UTC), tag=" (November)", best=100)
    add_reader(rt, "monthly@example.com", frequency=Frequency.MONTHLY)
    add_reader(rt, "weekly@example.com")
    send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)  # the service ran before December (skipped)
    # No W50 issue at all (the server was down past max_lateness_hours).
    seed_categories(rt, published=W51_NOW - timedelta(days=1), tag=" (December)", best=60)
    w51 = send_week(rt, Week.parse("2026-W51"), manual=True, now=W51_NOW)
    assert w51.summary is not None and w51.summary.sent == 2
    assert "(November)" in text_of(copy_for(rt, "2026-W51", "monthly@example.com"))


def test_the_database_refuses_a_second_edition_for_a_reader_in_one_week(rt) -> None:
    seed_categories(rt, published=W49_NOW - timedelta(days=1))
    sid = add_reader(rt, "reader@example.com", topics="open-models")
    send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    seed_categories(rt, published=W50_NOW - timedelta(days=1), tag=" (December)")
    send_week(rt, Week.parse("2026-W50"), manual=True, now=W50_NOW)
    with rt.sessions() as s:
        w49 = s.scalar(select(Issue.id).where(Issue.week == "2026-W49"))
        editions = {
            key: (eid, iid)
            for key, eid, iid in s.execute(
                select(Issue.week, Edition.id, Edition.issue_id).join(Issue).where(Edition.key == "weekly/all")
            )
        }
    row = {"subscriber_id": sid, "email": "reader@example.com", "batch_no": 99, "status": "queued"}
    # The all-topics edition of the same week: (issue, subscriber) is taken.
    with pytest.raises(IntegrityError), rt.sessions.begin() as s:
        s.execute(insert(Delivery), [{**row, "issue_id": w49, "edition_id": editions["2026-W49"][0]}])
    # An edition of another week's issue under this week's issue: the composite key refuses it.
    with pytest.raises(IntegrityError), rt.sessions.begin() as s:
        s.execute(
            insert(Delivery), [{**row, "subscriber_id": None, "issue_id": w49, "edition_id": editions["2026-W50"][0]}]
        )
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 2


def test_a_topic_edition_never_sends_its_readers_a_comparison_twice(rt) -> None:
    """Week 1's image edition had Flux (below the all-topics cut); in week 2 Flux is still in the
    window but its readers got it already: their edition fills up instead."""
    seed_categories(
        rt, published=W49_NOW - timedelta(days=1), categories={"Developer Tools": DEV, "Open Models": MODELS}
    )
    seed_categories(rt, published=W49_NOW - timedelta(days=1), categories={"Image Generation": IMAGES}, best=40)
    add_reader(rt, "images@example.com", topics="image-generation")
    send_week(rt, Week.parse("2026-W49"), manual=True, now=W49_NOW)
    with rt.sessions() as s:
        issue = s.scalar(select(Issue))
        assert IMAGES[0] not in {i.comparison.title for i in issue.main_edition.items}  # below the all-topics cut
    assert IMAGES[0] in text_of(copy_for(rt, "2026-W49", "images@example.com"))
    seed_categories(rt, published=W49_NOW + timedelta(days=3), tag=" (again)")
    send_week(rt, Week.parse("2026-W50"), manual=True, now=W49_NOW + timedelta(days=5))
    second = text_of(copy_for(rt, "2026-W50", "images@example.com"))
    assert f"{IMAGES[0]} (again)" in second
    assert f"{IMAGES[0]}\n" not in second.replace(" (again)", " (AGAIN)")
