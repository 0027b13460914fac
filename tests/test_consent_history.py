"""An address that left comes back only by its owner's own confirmation, and consent is history.

Today's attack: A unsubscribes; an anonymous POST /subscribe for A makes A pending and
overwrites A's consent record with the stranger's request; an operator import with
--confirmed then activates A. Consent records must be appended, never overwritten, and the
pending re-sign-up must stay pending until the confirmation link is used.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from digest.delivery.mail_queue import drain
from digest.storage.models import ConsentRecord, Subscriber, SubscriberStatus
from digest.weeks import utcnow
from subscribers.api import add_subscriber
from subscribers.csvio import import_csv
from subscribers.erasure import forget
from tests.support_subscribers import (
    client,
    link_in,
    outbox_messages,
    path_of,
    runtime_with,
    subscriber,
    unsubscribe_url,
)


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def _history(rt, address: str) -> list[tuple[str, str | None, str | None]]:
    sid = subscriber(rt, address).id
    with rt.sessions() as s:
        rows = s.scalars(select(ConsentRecord).where(ConsentRecord.subscriber_id == sid).order_by(ConsentRecord.id))
        return [(r.kind, r.user_agent, r.source) for r in rows]


def _owner_joins_then_leaves(rt, c, address: str) -> None:
    c.post("/subscribe", json={"email": address, "source": "homepage"}, headers={"User-Agent": "Owner/1"})
    drain(rt)
    c.post(path_of(link_in(outbox_messages(rt, to=address)[-1], "/confirm/")), headers={"User-Agent": "Owner/1"})
    drain(rt)
    welcome = outbox_messages(rt, to=address)[-1]
    c.post(path_of(unsubscribe_url(welcome)), data={"List-Unsubscribe": "One-Click"})
    assert subscriber(rt, address).status == SubscriberStatus.UNSUBSCRIBED
    with rt.sessions.begin() as s:  # later: past the confirmation re-send window
        s.execute(
            update(Subscriber)
            .where(Subscriber.email == address)
            .values(confirmation_sent_at=utcnow() - timedelta(hours=1))
        )


def test_a_stranger_signing_up_someone_who_left_appends_and_overwrites_nothing(srt) -> None:
    c = client(srt)
    _owner_joins_then_leaves(srt, c, "a@example.com")
    owner = subscriber(srt, "a@example.com")
    kept = (owner.consent_at, owner.consent_ip, owner.consent_user_agent, owner.consent_source)
    assert owner.consent_user_agent == "Owner/1"
    before = _history(srt, "a@example.com")
    assert [k for k, _, _ in before] == ["signed_up", "confirmed"]

    c.post("/subscribe", json={"email": "a@example.com", "source": "evil"}, headers={"User-Agent": "Stranger/9"})
    again = subscriber(srt, "a@example.com")
    assert again.status == SubscriberStatus.PENDING
    assert (again.consent_at, again.consent_ip, again.consent_user_agent, again.consent_source) == kept
    history = _history(srt, "a@example.com")
    assert history[:2] == before  # earlier records untouched
    assert history[2][0] == "signed_up" and history[2][1] == "Stranger/9" and "evil" in history[2][2]


def test_operator_add_or_import_never_activates_a_pending_resignup_of_someone_who_left(srt, tmp_path) -> None:
    c = client(srt)
    _owner_joins_then_leaves(srt, c, "a@example.com")
    c.post("/subscribe", json={"email": "a@example.com"}, headers={"User-Agent": "Stranger/9"})
    with srt.sessions.begin() as s:
        assert add_subscriber(s, "a@example.com", confirmed=True, source="cli").action == "left"
    csv = tmp_path / "list.csv"
    csv.write_text("email\na@example.com\nnew@example.com\n")
    report = import_csv(srt, csv, confirmed=True, consent="met at the meetup")
    assert report.left == 1 and report.activated == 0 and report.added == 1
    assert subscriber(srt, "a@example.com").status == SubscriberStatus.PENDING
    assert subscriber(srt, "new@example.com").status == SubscriberStatus.ACTIVE
    assert [k for k, _, _ in _history(srt, "new@example.com")] == ["imported"]
    # Only the owner's own confirmation link brings A back, and that is recorded too.
    drain(srt)
    r = c.post(
        path_of(link_in(outbox_messages(srt, to="a@example.com")[-1], "/confirm/")), headers={"User-Agent": "Owner/2"}
    )
    assert r.status_code == 200 and subscriber(srt, "a@example.com").status == SubscriberStatus.ACTIVE
    assert [(k, ua) for k, ua, _ in _history(srt, "a@example.com")][-2:] == [
        ("signed_up", "Stranger/9"),
        ("confirmed", "Owner/2"),
    ]


def test_resubscribe_link_and_confirmed_add_append_their_consent(srt) -> None:
    c = client(srt)
    with srt.sessions.begin() as s:
        add_subscriber(s, "op@example.com", confirmed=True, source="cli")
    _owner_joins_then_leaves(srt, c, "r@example.com")
    page = path_of(unsubscribe_url(outbox_messages(srt, to="r@example.com")[-1]))
    c.post(page, data={"action": "resubscribe"}, headers={"User-Agent": "Owner/3"})
    assert subscriber(srt, "r@example.com").status == SubscriberStatus.ACTIVE
    assert [(k, ua) for k, ua, _ in _history(srt, "r@example.com")][-1] == ("resubscribed", "Owner/3")
    assert [k for k, _, _ in _history(srt, "op@example.com")] == ["added"]


def test_forget_erases_the_consent_history_with_the_person(srt) -> None:
    c = client(srt)
    _owner_joins_then_leaves(srt, c, "gone@example.com")
    forget(srt, "gone@example.com")
    with srt.sessions() as s:
        assert s.scalars(select(ConsentRecord)).all() == []


def test_the_operator_reads_the_history_with_the_cli(srt) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    c = client(srt)
    _owner_joins_then_leaves(srt, c, "h@example.com")
    c.post("/subscribe", json={"email": "h@example.com"}, headers={"User-Agent": "Stranger/9"})
    env = {
        **os.environ,
        "DIGEST_DATABASE_URL": srt.config.database_url,
        "DIGEST_SECRET_KEY": srt.secret_key,
        "PYTHONPATH": str(ROOT),
    }
    base = [sys.executable, "-m", "digest", "--config", str(srt.config.path), "subscribers", "consent"]
    r = subprocess.run([*base, "H@example.com", "--json"], capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [(row["kind"], row["user_agent"]) for row in json.loads(r.stdout)] == [
        ("signed_up", "Owner/1"),
        ("confirmed", "Owner/1"),
        ("signed_up", "Stranger/9"),
    ]
    r = subprocess.run([*base, "nobody@example.com"], capture_output=True, env=env, timeout=120)
    assert r.returncode != 0 and b"not on the list" in r.stderr and b"Traceback" not in r.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request, tmp_path):
    """An empty database of each kind, not yet migrated."""
    import uuid

    from sqlalchemy import text

    from tests.conftest import PG_ADMIN_URL, RUN_ID, _pg_admin

    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    request.getfixturevalue("pg_template")  # PostgreSQL is there, and its teardown drops this run's databases
    name = f"digest_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def test_the_migration_turns_existing_consent_fields_into_first_records(empty_db) -> None:
    from alembic import command
    from sqlalchemy import text

    from digest.storage.db import _alembic_config, make_engine, upgrade

    engine = make_engine(empty_db)
    try:
        command.upgrade(_alembic_config(engine), "0002_h1-1")  # the schema just before consent_records
        with engine.begin() as c:
            c.execute(
                text(
                    "INSERT INTO subscribers (email, status, created_at, consent_at, consent_ip, consent_user_agent,"
                    " consent_source) VALUES"
                    " ('w@example.com', 'active', '2026-01-01', '2026-01-01', '203.0.113.1', 'UA/1', 'web:hosted'),"
                    " ('i@example.com', 'active', '2026-01-01', '2026-01-02', NULL, NULL, 'import:a.csv: meetup'),"
                    " ('n@example.com', 'pending', '2026-01-01', NULL, NULL, NULL, NULL)"
                )
            )
        upgrade(engine)
        with engine.connect() as c:
            rows = c.execute(
                text(
                    "SELECT s.email, r.kind, r.ip, r.user_agent, r.source FROM consent_records r"
                    " JOIN subscribers s ON s.id = r.subscriber_id ORDER BY s.email"
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ("i@example.com", "imported", None, None, "import:a.csv: meetup"),
            ("w@example.com", "signed_up", "203.0.113.1", "UA/1", "web:hosted"),
        ]
    finally:
        engine.dispose()
