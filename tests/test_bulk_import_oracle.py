"""The set-based import writes the rows the per-row import wrote (one `add_subscriber` per line).

The oracle below is the import loop as it was before issue 23. Both run on the same database in
the same starting state (the oracle in a transaction rolled back after its snapshot), on one
generated file: new people with and without names, people already on the list (pending, active,
renamed, left, pending again after leaving, bounced), suppressed and erased addresses, spellings
of one address, bad lines. Every table the import touches is compared, ids aside (timestamps by
whether they are set), and so is the order the new rows were written in.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.delivery.mail_queue import queue_mail
from digest.storage.models import ConsentRecord, Event, OutgoingMail, Subscriber, SubscriberStatus, Suppression
from digest.weeks import utcnow
from subscribers.api import add_subscriber
from subscribers.csvio import ImportReport, import_csv, read_rows
from subscribers.erasure import forget
from subscribers.lifecycle import suppress
from tests.support_subscribers import runtime_with


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def old_import(session: Session, path: Path, *, confirmed: bool, consent: str | None) -> ImportReport:
    """The import before issue 23, row by row (its consent checks aside: the callers pass good ones)."""
    consent_text = " ".join((consent or "").split())
    rows, report = read_rows(path)
    source = f"import:{path.name}" + (f": {consent_text}" if confirmed else "")
    now = utcnow()
    for row in rows:
        result = add_subscriber(session, row.email, name=row.name, confirmed=confirmed, source=source[:200])
        if result.action == "suppressed":
            report.suppressed += 1
        elif result.action == "left":
            report.left += 1
        elif result.action == "added":
            report.added += 1
            if result.subscriber.status == SubscriberStatus.PENDING:
                result.subscriber.confirmation_sent_at = now
                queue_mail(session, "confirm", result.subscriber.id, now)
                report.confirmations += 1
        elif result.action == "updated" and confirmed:
            report.activated += 1
        else:
            report.unchanged += 1
    session.flush()
    return report


def _set(value: Any) -> bool:
    return value is not None


def snapshot(session: Session) -> dict[str, Any]:
    """Every row the import may write, by address instead of id, timestamps as set or not."""
    email_of = {sid: address for sid, address in session.execute(select(Subscriber.id, Subscriber.email))}
    subs = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
    events = session.scalars(select(Event).order_by(Event.id)).all()
    consents = session.scalars(select(ConsentRecord).order_by(ConsentRecord.id)).all()
    mail = session.scalars(select(OutgoingMail).order_by(OutgoingMail.id)).all()
    return {
        "subscribers in id order": [s.email for s in subs],
        "subscribers": sorted(
            (
                s.email,
                s.name,
                s.status,
                s.consent_source,
                s.consent_ip,
                s.consent_user_agent,
                s.topics,
                s.frequency,
                s.unsubscribe_reason,
                _set(s.created_at),
                _set(s.confirmed_at),
                _set(s.unsubscribed_at),
                _set(s.confirmation_sent_at),
                _set(s.consent_at),
                _set(s.paused_until),
            )
            for s in subs
        ),
        "events per person in id order": sorted(
            (
                email_of.get(e.subscriber_id or 0, ""),
                [
                    (x.kind, x.detail, x.issue_id, x.delivery_id, _set(x.created_at))
                    for x in events
                    if x.subscriber_id == e.subscriber_id
                ],
            )
            for e in events
        ),
        "consent per person in id order": sorted(
            (
                email_of[c.subscriber_id],
                [
                    (x.kind, x.ip, x.user_agent, x.source, _set(x.created_at))
                    for x in consents
                    if x.subscriber_id == c.subscriber_id
                ],
            )
            for c in consents
        ),
        "outgoing mail in id order": [
            (
                email_of.get(m.subscriber_id or 0),
                m.kind,
                m.status,
                m.attempts,
                m.error,
                _set(m.created_at),
                _set(m.sent_at),
                _set(m.claimed_until),
            )
            for m in mail
        ],
        "suppressions": sorted((s.email_hash, s.reason) for s in session.scalars(select(Suppression))),
    }


def seed(rt) -> None:
    """People already known before the import, in every state the import treats differently."""
    with rt.sessions.begin() as s:
        for i in range(12):
            add_subscriber(s, f"active{i}@example.com", name=f"Active {i}" if i % 2 else None, confirmed=True)
            add_subscriber(s, f"pending{i}@example.com", name=f"Pending {i}" if i % 3 else None)
        for address, status, left in [
            ("left@example.com", SubscriberStatus.UNSUBSCRIBED, True),
            ("bounced@example.com", SubscriberStatus.BOUNCED, False),
            ("again@example.com", SubscriberStatus.PENDING, True),
        ]:
            sub = add_subscriber(s, address, confirmed=True).subscriber
            sub.status, sub.unsubscribed_at = status, utcnow() if left else None
        add_subscriber(s, "suppressed-row@example.com", confirmed=True)
        suppress(s, "suppressed-row@example.com", "complaint")
        suppress(s, "suppressed-only@example.com", "hard_bounce")
    with rt.sessions.begin() as s:
        add_subscriber(s, "gone@example.com", confirmed=True)
    forget(rt, "gone@example.com")


def generated_file(tmp_path: Path, seed_value: int = 23) -> Path:
    rnd = random.Random(seed_value)
    known = (
        [f"active{i}@example.com" for i in range(12)]
        + [f"pending{i}@example.com" for i in range(12)]
        + [
            "left@example.com",
            "bounced@example.com",
            "again@example.com",
            "suppressed-row@example.com",
            "suppressed-only@example.com",
            "gone@example.com",
        ]
    )
    lines = ["email,name"] + [f"{address},{rnd.choice(['', 'Renamed', 'Active 1'])}" for address in known]
    for i in range(300):
        pick = rnd.random()
        if pick < 0.15:
            address = rnd.choice(known)
        elif pick < 0.2:
            address = f"Reader{rnd.randrange(300)}@Example.COM"  # another spelling: a duplicate, or new
        elif pick < 0.23:
            address = rnd.choice(
                ["not-an-address", "two@@example.com", "x@bücher.example", "anna@xn--bcher-kva.example"]
            )
        else:
            address = f"reader{i}@{rnd.choice(['example.com', 'mail.example.org', 'bücher.example'])}"
        name = rnd.choice(["", "", f"Reader {i}", "Zoë Ärger", "Active 1", "Pending 4", "=cmd()", "Zed", "www.x.com/y"])
        lines.append(f"{address},{name}")
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("confirmed", [False, True], ids=["pending", "confirmed"])
def test_set_based_import_writes_what_the_per_row_import_wrote(srt, tmp_path, confirmed) -> None:
    seed(srt)
    path = generated_file(tmp_path)
    consent = "signed up at the 2026 meetup" if confirmed else None
    with srt.sessions() as session:
        with session.begin():
            expected_report = old_import(session, path, confirmed=confirmed, consent=consent)
            expected = snapshot(session)
            session.rollback()
    report = import_csv(srt, path, confirmed=confirmed, consent=consent)
    with srt.sessions() as session:
        got = snapshot(session)
    assert report == expected_report
    assert report.added > 100 and report.bad and report.duplicates and report.suppressed == 3 and report.left == 3
    assert (report.activated > 0) == confirmed and report.unchanged > 0
    for table in expected:
        assert got[table] == expected[table], table


def test_dry_run_counts_what_the_import_then_does_and_stores_nothing(srt, tmp_path) -> None:
    seed(srt)
    path = generated_file(tmp_path, seed_value=5)
    with srt.sessions() as session:
        before = snapshot(session)
    planned = import_csv(srt, path, confirmed=True, consent="paper forms", dry_run=True)
    with srt.sessions() as session:
        assert snapshot(session) == before
    assert import_csv(srt, path, confirmed=True, consent="paper forms") == planned
