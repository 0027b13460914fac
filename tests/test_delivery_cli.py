"""`digest send` / `digest stats` as an operator runs them: stop on 401, --retry-failed, stats with rates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from digest.cycle.send import send_week
from digest.storage.models import Delivery, Event, Issue
from digest.weeks import Week, utcnow
from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.support_delivery import (
    add_readers,
    assert_exactly_once,
    digest_cli,
    resend_env,
    resend_project,
    resend_runtime,
    seed_comparisons,
    seed_for_cli,
)


def test_401_stops_the_send_with_one_clear_message_and_a_rerun_resumes(tmp_path, db_url) -> None:
    state = FakeResend(faults=Faults(force_status=401, force_name="missing_api_key", force_message="API key revoked"))
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url)
        rt = resend_runtime(cfg, server.url, db_url)
        readers = seed_for_cli(rt, 450)
        env = resend_env(server.url, db_url)
        stopped = digest_cli(cfg, env, "send")
        assert stopped.returncode == 1
        errors = [line for line in stopped.stderr.splitlines() if line.strip()]
        assert len(errors) == 1, stopped.stderr
        assert errors[0].startswith("error: send stopped: Resend 401 missing_api_key: ")
        assert "RESEND_API_KEY" in errors[0] and "Traceback" not in stopped.stderr
        assert len(state.log) <= 4  # one request per sending thread at most, then everything stops
        assert state.records == []
        state.set_faults(Faults())
        resumed = digest_cli(cfg, env, "send")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "resumed; 450 sent, 0 failed" in resumed.stdout
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()


def test_missing_api_key_is_reported_before_anything_changes(tmp_path, sqlite_url) -> None:
    cfg = resend_project(tmp_path / "project", "http://127.0.0.1:9")
    rt = resend_runtime(cfg, "http://127.0.0.1:9", sqlite_url)
    seed_for_cli(rt, 3)
    env = resend_env("http://127.0.0.1:9", sqlite_url)
    env["RESEND_API_KEY"] = ""
    result = digest_cli(cfg, env, "send")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: RESEND_API_KEY is not set; the resend transport needs the API key in the environment"
    )
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 0
    rt.close()


def test_batches_that_keep_failing_are_owed_not_failed_and_a_plain_send_finishes_them_once(
    tmp_path, sqlite_url
) -> None:
    state = FakeResend(faults=Faults(error_rate=1.0))
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url, max_attempts=1)
        rt = resend_runtime(cfg, server.url, sqlite_url)
        readers = seed_for_cli(rt, 150)
        env = resend_env(server.url, sqlite_url)
        failed = digest_cli(cfg, env, "send")
        assert failed.returncode == 75
        assert "150 recipient(s) enqueued; 0 sent, 0 failed" in failed.stdout
        assert "still owed after 1 attempt(s) in this run: Resend 500 application_error" in failed.stdout
        assert "150 reader(s) still owed: 2 batch(es) kept failing" in failed.stdout
        assert "--retry-failed" not in failed.stdout and "`digest send --week" in failed.stdout
        state.set_faults(Faults())
        again = digest_cli(cfg, env, "send")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "resumed; 150 sent, 0 failed" in again.stdout
        retried = digest_cli(cfg, env, "send", "--retry-failed")
        assert retried.returncode == 0, retried.stdout + retried.stderr
        assert "no failed deliveries to retry" in retried.stdout
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()


def test_accept_duplicates_is_refused_without_retry_failed(tmp_path, sqlite_url) -> None:
    cfg = resend_project(tmp_path / "project", "http://127.0.0.1:9")
    result = digest_cli(cfg, resend_env("http://127.0.0.1:9", sqlite_url), "send", "--accept-duplicates")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --accept-duplicates: only together with --retry-failed"


def test_stats_reports_counts_and_rates_as_a_table_and_as_json(tmp_path, db_url) -> None:
    state = FakeResend()
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url)
        rt = resend_runtime(cfg, server.url, db_url)
        now = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
        seed_comparisons(rt, published=now - timedelta(days=1))
        readers = add_readers(rt, 200)
        state.reject_to = {readers[0], readers[1]}
        send_week(rt, Week.parse("2026-W47"), manual=True, now=now)
    stamp = utcnow()
    with rt.sessions.begin() as s:
        issue_id = s.scalar(select(Issue.id))
        ids = list(s.scalars(select(Delivery.id).where(Delivery.status == "sent").order_by(Delivery.id)))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:180])).values(delivered_at=stamp))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:90])).values(opened_at=stamp))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[:27])).values(clicked_at=stamp))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[180:184])).values(bounced_at=stamp))
        s.execute(update(Delivery).where(Delivery.id.in_(ids[184:185])).values(complained_at=stamp))
        for _ in range(3):
            s.add(Event(kind="unsubscribed", issue_id=issue_id, detail={}))
        s.add(Event(kind="unsubscribed", issue_id=None, detail={}))  # not attributed to this issue
    env = resend_env(server.url, db_url)
    result = digest_cli(cfg, env, "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {
        k: data[k]
        for k in (
            "week",
            "recipients",
            "sent",
            "failed",
            "delivered",
            "bounced",
            "complained",
            "opened",
            "clicked",
            "unsubscribed",
        )
    } == {
        "week": "2026-W47",
        "recipients": 200,
        "sent": 198,
        "failed": 2,
        "delivered": 180,
        "bounced": 4,
        "complained": 1,
        "opened": 90,
        "clicked": 27,
        "unsubscribed": 3,
    }
    assert data["rates"]["failed"] == 0.01 and data["rates"]["opened"] == round(90 / 198, 4)
    assert data["rates"]["unsubscribed"] == round(3 / 198, 4)
    table = digest_cli(cfg, env, "stats", "--week", "2026-W47")
    assert table.returncode == 0
    for word in ("recipients", "delivered", "bounced", "complained", "opened", "clicked", "unsubscribed", "45.5%"):
        assert word in table.stdout
    missing = digest_cli(cfg, env, "stats", "--week", "2020-W01")
    assert missing.returncode == 2 and missing.stderr.strip() == "error: week: there is no issue for 2020-W01"
    bad = digest_cli(cfg, env, "stats", "--week", "2026-47")
    assert bad.returncode == 2 and "is not an ISO week key" in bad.stderr
    rt.close()
