"""Statuses and kinds are StrEnums shared by the ORM and the raw-SQL paths.

Rows written by the sign-up's raw SQL read back through the ORM as enum members (so both paths
write the same values), and a misspelled status is refused before it reaches the database.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from digest.runtime import Runtime
from digest.storage.models import (
    ConsentKind,
    ConsentRecord,
    MailKind,
    MailStatus,
    OutgoingMail,
    Subscriber,
    SubscriberStatus,
)
from digest.weeks import utcnow
from subscribers.lifecycle import unsubscribe
from subscribers.signup import SignupRequest, signup


def test_raw_sql_sign_up_reads_back_as_enum_members(rt: Runtime) -> None:
    assert signup(rt, SignupRequest(email="enum@example.com", ip="192.0.2.1")).accepted
    with rt.sessions() as session:
        sub = session.scalars(select(Subscriber).where(Subscriber.email == "enum@example.com")).one()
        mail = session.scalars(select(OutgoingMail).where(OutgoingMail.subscriber_id == sub.id)).one()
        consent = session.scalars(select(ConsentRecord).where(ConsentRecord.subscriber_id == sub.id)).one()
    assert sub.status is SubscriberStatus.PENDING
    assert (mail.kind, mail.status) == (MailKind.CONFIRM, MailStatus.QUEUED)
    assert mail.kind is MailKind.CONFIRM and mail.status is MailStatus.QUEUED
    assert consent.kind is ConsentKind.SIGNED_UP


def test_raw_sql_sign_up_again_after_leaving_reads_back_as_enum_member(rt: Runtime) -> None:
    assert signup(rt, SignupRequest(email="back@example.com", ip="192.0.2.2")).accepted
    with rt.sessions.begin() as session:
        sub = session.scalars(select(Subscriber).where(Subscriber.email == "back@example.com")).one()
        unsubscribe(session, sub, issue_id=None, method="test")
    later = utcnow() + timedelta(days=2)  # past the confirmation resend window
    assert signup(rt, SignupRequest(email="back@example.com", ip="192.0.2.3"), now=later).accepted
    with rt.sessions() as session:
        status = session.scalar(select(Subscriber.status).where(Subscriber.email == "back@example.com"))
    assert status is SubscriberStatus.PENDING


def test_statuses_are_named_by_their_members_only() -> None:
    """Issue 22: the unpacked aliases (SUB_ACTIVE, ...) are gone, so a status has one name in the code."""
    from digest.storage import models

    assert not [
        name for name in dir(models) if re.fullmatch(r"(ISSUE|SUB|CONSENT|BATCH|ATTEMPT|DELIVERY|MAIL)_[A-Z_]+", name)
    ]
    assert SubscriberStatus.ACTIVE == "active" and f"{SubscriberStatus.ACTIVE}" == "active"


def test_a_misspelled_status_is_refused_before_the_database(rt: Runtime) -> None:
    with rt.sessions() as session:
        session.add(Subscriber(email="typo@example.com", status="actve"))
        with pytest.raises(StatementError, match="actve"):
            session.flush()


def test_every_event_kind_written_is_a_member(rt: Runtime) -> None:
    """The raw-SQL sign-up, the ORM lifecycle and preferences write `events.kind` from one enum."""
    from digest.storage.models import Event, SubscriberEventKind
    from subscribers.lifecycle import resubscribe, set_reason

    assert signup(rt, SignupRequest(email="kinds@example.com", ip="192.0.2.9")).accepted
    assert signup(rt, SignupRequest(email="kinds@example.com", ip="192.0.2.9", topics=("x",))).accepted
    with rt.sessions.begin() as session:
        sub = session.scalars(select(Subscriber).where(Subscriber.email == "kinds@example.com")).one()
        unsubscribe(session, sub, issue_id=None, method="test")
        set_reason(session, sub, code="too_many", text="", issue_id=None)
        resubscribe(session, sub, issue_id=None, ip=None, user_agent=None)
    with rt.sessions() as session:
        kinds = set(session.scalars(select(Event.kind)))
    assert kinds and kinds <= {k.value for k in SubscriberEventKind}, kinds
    assert {"subscribed", "unsubscribed", "resubscribed"} <= kinds


def test_no_event_kind_is_a_bare_string_in_the_code() -> None:
    import ast

    from tests.conftest import ROOT

    bare = []
    for folder in ("digest", "subscribers"):
        for path in (ROOT / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Event":
                    bare += [
                        f"{path.name}:{node.lineno}"
                        for k in node.keywords
                        if k.arg == "kind" and isinstance(k.value, ast.Constant)
                    ]
                if (
                    isinstance(node, ast.Compare)
                    and isinstance(node.left, ast.Attribute)
                    and node.left.attr == "kind"
                    and getattr(node.left.value, "id", None) == "Event"
                ):
                    bare += [f"{path.name}:{node.lineno}" for c in node.comparators if isinstance(c, ast.Constant)]
    assert bare == []
