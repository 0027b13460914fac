"""Operators see editions: `digest select`, `digest send` and `digest stats` per edition."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from digest.storage.models import Frequency
from digest.weeks import current_week, utcnow
from tests.conftest import make_runtime, write_project
from tests.support_delivery import digest_cli
from tests.support_editions import MODELS, add_reader, seed_categories

SECRET = "test-secret-key-0123456789"


def test_select_send_and_stats_show_each_edition_with_its_picks_and_readers(tmp_path, db_url) -> None:
    cfg = write_project(tmp_path / "project")
    rt = make_runtime(cfg, db_url)
    seed_categories(rt, published=utcnow() - timedelta(days=1))
    week = current_week(rt.settings.schedule)  # the CLI sends this week's issue by the real clock
    monthly = week.first_of_month(rt.settings.schedule)  # then the monthly reader gets theirs
    more = [("monthly/all", 1)] if monthly else []
    for i in range(3):
        add_reader(rt, f"all{i}@example.com")
    for i in range(2):
        add_reader(rt, f"models{i}@example.com", topics="open-models")
    add_reader(rt, "images@example.com", topics="image-generation")
    add_reader(rt, "monthly@example.com", frequency=Frequency.MONTHLY)
    add_reader(rt, "paused@example.com", paused_until=datetime(2027, 1, 1, tzinfo=UTC))
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET}

    draft = json.loads(digest_cli(cfg, env, "select", "--week", week.key, "--json").stdout)
    eds = {e["key"]: e for e in draft["editions"]}
    assert [(k, e["readers"]) for k, e in eds.items()] == [
        ("weekly/all", 3),
        ("weekly/image-generation", 1),
        ("weekly/open-models", 2),
        *more,
    ]
    assert {p["title"] for p in eds["weekly/open-models"]["picks"]} == set(MODELS)
    assert [p["filler"] for p in eds["weekly/image-generation"]["picks"]] == [False, True]
    assert all(
        set(p["parts"]) == {"panel", "community", "freshness", "diversity"} for p in eds["weekly/open-models"]["picks"]
    )  # the same explained scoring
    assert draft["paused"] == 1 and draft["monthly_waiting"] == (0 if monthly else 1)
    text = digest_cli(cfg, env, "select", "--week", week.key).stdout
    assert f"{3 + len(more)} edition(s); 1 paused reader(s) skipped; {draft['monthly_waiting']} monthly" in text
    assert "weekly/open-models" in text and "(filler)" in text

    sent = digest_cli(cfg, env, "send", "--week", week.key)
    assert sent.returncode == 0, sent.stderr
    listed = ", ".join(
        f"{k} {n}" for k, n in [("weekly/all", 3), ("weekly/image-generation", 1), ("weekly/open-models", 2), *more]
    )
    assert f"{3 + len(more)} edition(s) ({listed}); 1 paused" in sent.stdout

    frozen = json.loads(digest_cli(cfg, env, "select", "--week", week.key, "--json").stdout)
    assert [(e["key"], e["readers"]) for e in frozen["editions"]] == [
        ("weekly/all", 3),
        ("weekly/image-generation", 1),
        ("weekly/open-models", 2),
        *more,
    ]
    assert frozen["paused"] == 1 and frozen["monthly_waiting"] == draft["monthly_waiting"]
    stats = json.loads(digest_cli(cfg, env, "stats", "--week", week.key, "--json").stdout)
    assert [(e["key"], e["recipients"], e["sent"]) for e in stats["editions"]] == [
        ("weekly/all", 3, 3),
        ("weekly/image-generation", 1, 1),
        ("weekly/open-models", 2, 2),
        *[(k, n, n) for k, n in more],
    ]
    assert stats["skipped_paused"] == 1 and stats["skipped_monthly"] == draft["monthly_waiting"]
    table = digest_cli(cfg, env, "stats", "--week", week.key).stdout
    assert "weekly/open-models" in table and "not sent this time: 1 paused reader(s)" in table
    rt.close()
