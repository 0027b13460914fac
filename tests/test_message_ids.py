"""Message-IDs are globally unique and unguessable, yet stable for one delivery.

Mailbox providers de-duplicate and thread on Message-ID: `<d1@example.com>` on every installation's
first delivery (and again after a database restore hands out the same row ids) would make Gmail drop
or merge mail that is new. The same delivery built again (a retried batch) keeps its id.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session

from digest.cycle.send import send_week
from digest.delivery.mail_builder import MailBuilder
from digest.delivery.messages import IssueMessages, Recipient
from digest.links import Tokens
from digest.mail import MessageIds
from digest.runtime import Runtime
from digest.storage.db import make_engine
from digest.storage.installation import installation_id
from digest.storage.models import Installation, Issue, Subscriber
from digest.weeks import Week
from tests.conftest import database_at, fresh_pg_url, make_runtime, write_project
from tests.support_delivery import add_readers, seed_comparisons

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
WEEK = Week.parse("2026-W47")
ID = re.compile(r"<[0-9a-f]{32}@example\.com>")
SHARED_SECRET = "secret-of-production-and-its-staging-copy"


def _installation(tmp_path: Path, sqlite_template: Path, name: str, secret: str):  # type: ignore[no-untyped-def]
    db = tmp_path / name / "digest.db"
    db.parent.mkdir(parents=True)
    shutil.copy(sqlite_template, db)
    return make_runtime(write_project(tmp_path / name / "project"), f"sqlite:///{db}", DIGEST_SECRET_KEY=secret)


def _sent_ids(rt) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out = {}
    for path in (rt.config.outbox_dir / WEEK.key).glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        out[str(msg["To"])] = str(msg["Message-ID"])
    return out


def _sent_apart(installations: list[Runtime], readers: int) -> tuple[dict[str, str], dict[str, str]]:
    """The same week sent to the same readers by two installations: each reader's two Message-IDs differ."""
    ids = []
    for rt in installations:
        seed_comparisons(rt, published=NOW - timedelta(days=1))
        add_readers(rt, readers)
        assert send_week(rt, WEEK, manual=True, now=NOW).summary.sent == readers  # type: ignore[union-attr]
        ids.append(_sent_ids(rt))
    first, second = ids
    assert first.keys() == second.keys()  # the same readers, the same delivery row ids on both
    for to in first:
        assert ID.fullmatch(first[to]) and ID.fullmatch(second[to]), (first[to], second[to])
        assert first[to] != second[to], to
    return first, second


def test_two_installations_never_share_a_message_id(tmp_path, sqlite_template) -> None:
    a, b = _sent_apart(
        [
            _installation(tmp_path, sqlite_template, name, secret)
            for name, secret in (("a", "secret-of-installation-a-0123"), ("b", "secret-of-installation-b-0123"))
        ],
        readers=3,
    )
    assert len(set(a.values())) == 3
    assert not any(re.search(r"<d\d+@", v) for v in [*a.values(), *b.values()])


def _issue(rt) -> Issue:  # type: ignore[no-untyped-def]
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    with rt.sessions() as s:
        return s.scalar(select(Issue).where(Issue.week == WEEK.key).options(selectinload(Issue.main_edition)))


def test_the_same_delivery_built_again_keeps_its_message_id(tmp_path, sqlite_url) -> None:
    rt = make_runtime(write_project(tmp_path / "project"), sqlite_url)
    seed_comparisons(rt, published=NOW - timedelta(days=1))
    add_readers(rt, 1)
    send_week(rt, WEEK, manual=True, now=NOW)
    issue = _issue(rt)
    with rt.sessions() as s:
        install = installation_id(s)
    reader = Recipient(delivery_id=1, subscriber_id=1, email="r@example.com", name=None)

    def messages() -> IssueMessages:
        return IssueMessages(rt.settings, Tokens(rt.secret_key), issue, issue.main_edition, installation=install)

    first = messages().build(reader)
    again = messages().build(reader)
    assert first.message_id == again.message_id and ID.fullmatch(first.message_id)
    # A restored database giving delivery 1 to someone else, or another week, is another message.
    other = Recipient(delivery_id=1, subscriber_id=2, email="s@example.com", name=None)
    assert messages().build(other).message_id != first.message_id
    issue.week = "2026-W48"
    assert messages().build(reader).message_id != first.message_id


def test_confirmation_and_welcome_mails_get_unique_stable_message_ids(tmp_path, sqlite_url) -> None:
    rt = make_runtime(write_project(tmp_path / "project"), sqlite_url)
    person = Subscriber(id=7, email="reader@example.com", name=None)
    builder = MailBuilder(rt)
    confirm, welcome = builder.build(1, "confirm", person), builder.build(2, "welcome", person)
    assert ID.fullmatch(confirm.message_id) and ID.fullmatch(welcome.message_id)
    assert confirm.message_id != welcome.message_id
    assert MailBuilder(rt).build(1, "confirm", person).message_id == confirm.message_id
    other_install = make_runtime(
        write_project(tmp_path / "other"), sqlite_url, DIGEST_SECRET_KEY="another-secret-0123456789"
    )
    assert MailBuilder(other_install).build(1, "confirm", person).message_id != confirm.message_id


def _second_database(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> str:
    """Another database of the same kind, with its own installation id (as its own migration would give it;
    the test databases are all copies of one migrated template, so they would share the template's)."""
    if db_url.startswith("sqlite"):
        db = tmp_path / "second-db" / "digest.db"
        db.parent.mkdir(parents=True)
        shutil.copy(request.getfixturevalue("sqlite_template"), db)
        url = f"sqlite:///{db}"
    else:
        url = fresh_pg_url(request.getfixturevalue("pg_template"))
    eng = make_engine(url)
    with eng.begin() as c:
        c.execute(delete(Installation))  # digest.storage.installation makes a new one, once
    eng.dispose()
    return url


def test_installations_sharing_a_secret_never_share_a_message_id(request, tmp_path, db_url) -> None:
    """A staging copy of production's environment (the same DIGEST_SECRET_KEY) on its own database."""
    a = make_runtime(write_project(tmp_path / "a"), db_url, DIGEST_SECRET_KEY=SHARED_SECRET)
    b = make_runtime(
        write_project(tmp_path / "b"), _second_database(request, tmp_path, db_url), DIGEST_SECRET_KEY=SHARED_SECRET
    )
    first, _ = _sent_apart([a, b], readers=2)
    person = Subscriber(id=1, email="reader@example.com", name=None)
    confirm_a = MailBuilder(a).build(1, "confirm", person).message_id
    assert confirm_a != MailBuilder(b).build(1, "confirm", person).message_id

    # The same installation (another process on the same database) builds the same message again: the same id.
    again = make_runtime(write_project(tmp_path / "a2"), db_url, DIGEST_SECRET_KEY=SHARED_SECRET)
    assert MailBuilder(again).build(1, "confirm", person).message_id == confirm_a
    issue = _issue(again)
    with again.sessions() as s:
        install = installation_id(s)
    reader = Recipient(delivery_id=1, subscriber_id=1, email="reader000000@example.com", name="Reader 0")
    rebuilt = IssueMessages(
        again.settings, Tokens(again.secret_key), issue, issue.main_edition, installation=install
    ).build(reader)
    assert rebuilt.message_id == first["reader000000@example.com"]
    for rt in (a, b, again):
        rt.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_before_0005(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each kind at 0004_h19, the schema before Message-IDs carried the installation id."""
    return database_at(request, tmp_path, "0004_h19")


def test_an_issue_enqueued_before_the_upgrade_keeps_its_message_ids(db_before_0005) -> None:
    """A batch of that issue retried after the upgrade sends the same payload under its idempotency key."""
    from sqlalchemy import text

    from digest.storage.db import upgrade
    from digest.storage.installation import message_id_salt

    engine = make_engine(db_before_0005)
    with engine.begin() as c:
        old = c.execute(
            text(
                "INSERT INTO issues (week, status, pins, excludes, created_at)"
                " VALUES ('2026-W48', 'sending', '[]', '[]', '2026-11-23 08:00:00') RETURNING id"
            )
        ).scalar_one()
    upgrade(engine)
    with engine.begin() as c:
        new = c.execute(
            text(
                "INSERT INTO issues (week, status, pins, excludes, created_at)"
                " VALUES ('2026-W49', 'draft', '[]', '[]', '2026-11-30 08:00:00') RETURNING id"
            )
        ).scalar_one()
    with Session(engine) as s:
        install = installation_id(s)
        assert message_id_salt(s, old) == ""  # the key the issue's first attempts were built with
        assert message_id_salt(s, new) == install and message_id_salt(s, None) == install
    engine.dispose()
    key = Tokens(SHARED_SECRET).derived_key(MessageIds.PURPOSE)
    before = f"<{hashlib.blake2b(b'issue', key=key[:64], digest_size=16).hexdigest()}@example.com>"
    assert MessageIds(key, "example.com", "").make("issue") == before  # the id as the code before made it
    assert MessageIds(key, "example.com", install).make("issue") != before
