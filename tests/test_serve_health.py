"""/healthz: database, scheduler, next run, last issue, overdue flag; 503 when something is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from digest.cycle.send import CycleResult
from digest.runtime import Runtime
from digest.schedule.service import WeeklyService
from digest.schedule.slots import make_trigger
from digest.storage.db import make_engine, make_session_factory
from digest.storage.models import MAIN_EDITION_KEY, Delivery, Edition, Frequency, Issue, IssueStatus
from digest.web.app import create_app
from digest.weeks import Week

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W47; its slot was Monday
LOCAL = ("127.0.0.1", 50000)  # details are for the machine itself (tests/test_health_visibility.py)


def _no_send(rt, week, *, manual, now=None, stop=None) -> CycleResult:  # type: ignore[no-untyped-def]
    raise AssertionError("nothing is due in these tests")


@pytest.fixture
def served(rt: Runtime) -> Iterator[tuple[TestClient, WeeklyService]]:
    service = WeeklyService(rt, clock=lambda: NOW, send=_no_send, holder="health:1")
    app = create_app(rt)
    app.state.scheduler = service
    service.start(watch=False)
    try:
        yield TestClient(app, client=LOCAL), service
    finally:
        service.shutdown()


def test_healthy_service_answers_200_with_the_details(served) -> None:  # type: ignore[no-untyped-def]
    client, service = served
    resp = client.get("/healthz")
    assert resp.status_code == 200, resp.json()
    body = resp.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert body["database"]["reachable"] is True
    assert body["scheduler"]["running"] is True
    expected = make_trigger(service.rt.settings.schedule).get_next_fire_time(None, datetime.now(UTC))
    assert datetime.fromisoformat(body["scheduler"]["next_run_time"]) == expected
    assert body["last_issue"] is None
    assert body["overdue"] is False and body["schedule"]["week"] == "2026-W47"
    assert resp.headers["cache-control"] == "no-store"
    assert client.get("/healthz/live").status_code == 200


def test_last_issue_and_its_deliveries_are_reported(served) -> None:  # type: ignore[no-untyped-def]
    client, service = served
    with service.rt.sessions.begin() as s:
        issue = Issue(week="2026-W47", status=IssueStatus.SENT, number=7, pins=[], excludes=[], sent_at=NOW)
        s.add(issue)
        s.flush()
        s.add(
            Edition(
                issue_id=issue.id,
                key=MAIN_EDITION_KEY,
                label="All topics, weekly",
                frequency=Frequency.WEEKLY,
                topics=[],
                subject="Hello <b>",
            )
        )
        s.add_all(
            [Delivery(issue_id=issue.id, email=f"r{i}@example.com", batch_no=0, status="sent") for i in range(3)]
            + [Delivery(issue_id=issue.id, email="x@example.com", batch_no=0, status="failed")]
        )
    body = client.get("/healthz").json()
    assert body["last_issue"]["week"] == "2026-W47" and body["last_issue"]["status"] == IssueStatus.SENT
    assert body["last_issue"]["number"] == 7 and body["last_issue"]["subject"] == "Hello <b>"
    assert body["last_issue"]["deliveries"] == {"sent": 3, "failed": 1}


def test_an_overdue_issue_is_a_503_that_says_what_to_run(served) -> None:  # type: ignore[no-untyped-def]
    client, service = served
    with service.rt.sessions.begin() as s:  # the newsletter has started: last week's issue went out
        s.add(Issue(week="2026-W46", status=IssueStatus.SENT, pins=[], excludes=[]))
    resp = client.get("/healthz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["overdue"] is True and body["schedule"]["overdue"] is True
    assert any("digest send --week 2026-W47" in p for p in body["problems"])
    assert client.get("/healthz/live").status_code == 200  # liveness is not about the schedule
    # Sent by the operator: healthy again.
    with service.rt.sessions.begin() as s:
        s.add(Issue(week="2026-W47", status=IssueStatus.SENT, pins=[], excludes=[]))
    assert client.get("/healthz").status_code == 200


def test_a_stopped_or_missing_scheduler_is_a_503(rt: Runtime) -> None:
    app = create_app(rt)
    resp = TestClient(app, client=LOCAL).get("/healthz")
    assert resp.status_code == 503
    assert resp.json()["scheduler"]["running"] is False
    service = WeeklyService(rt, clock=lambda: NOW, send=_no_send, holder="health:2")
    app.state.scheduler = service
    service.start(watch=False)
    assert TestClient(app, client=LOCAL).get("/healthz").status_code == 200
    service.shutdown()
    resp = TestClient(app, client=LOCAL).get("/healthz")
    assert resp.status_code == 503 and "the scheduler is not running" in resp.json()["problems"]


def test_a_failed_weekly_job_is_a_503(served) -> None:  # type: ignore[no-untyped-def]
    client, service = served
    from digest.errors import TemplateError

    def broken(rt, week, *, manual, now=None, stop=None):  # type: ignore[no-untyped-def]
        raise TemplateError("digest.mjml.j2:3: unexpected end of template")

    service.send = broken
    service.clock = lambda: Week.parse("2026-W47").slot(service.rt.settings.schedule) + timedelta(minutes=1)
    assert service.run_due("schedule", wait=True) == "error"
    body = client.get("/healthz").json()
    assert any("digest.mjml.j2:3" in p for p in body["problems"])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_an_unreachable_database_is_a_503_not_a_500(project: Path, tmp_path: Path, kind: str) -> None:
    from digest.config import load_config

    if kind == "postgresql":
        url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    else:
        folder = tmp_path / "var" / "gone.db"
        folder.mkdir(parents=True)  # a folder where the database file should be
        url = f"sqlite:///{folder}"
    config = load_config(project, env={"DIGEST_DATABASE_URL": url, "DIGEST_SECRET_KEY": "k" * 32})
    engine = make_engine(url)
    rt = Runtime(config=config, engine=engine, sessions=make_session_factory(engine))
    service = WeeklyService(rt, clock=lambda: NOW, send=_no_send, holder="health:3")
    app = create_app(rt)
    app.state.scheduler = service
    client = TestClient(app, raise_server_exceptions=False, client=LOCAL)
    resp = client.get("/healthz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["database"]["reachable"] is False and body["database"]["error"]
    assert any(p.startswith("database unreachable") for p in body["problems"])
    assert client.get("/healthz/live").status_code == 503
    engine.dispose()
