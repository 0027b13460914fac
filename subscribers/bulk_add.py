"""Adding a whole file of subscribers at once (`subscribers import`): `add_subscriber` per row, set-based.

One `add_subscriber` call per row (a SELECT, a suppression check, INSERTs and a flush each) ran
at about 285 rows a second: a million readers took an hour. Here the rows go into a temporary
table (PostgreSQL's COPY; batched executemany on SQLite), one join finds the rows already on the
list or suppressed, and the new people, their `subscribed` (and `confirmed`) events, their consent
records and their queued confirmations are each one INSERT ... SELECT. Rows already on the list
(few, usually) are settled in Python exactly as `add_subscriber` settles them and written in
batches. tests/test_bulk_import_oracle.py compares every row this writes with what the per-row
path writes for the same file, on both databases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    exists,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from digest.links import email_hash
from digest.storage.models import (
    ConsentKind,
    ConsentRecord,
    Event,
    Frequency,
    MailKind,
    MailStatus,
    OutgoingMail,
    Subscriber,
    SubscriberEventKind,
    SubscriberStatus,
    Suppression,
)

# (phase, done, total): what a progress bar shows.
Progress = Callable[[str, int, int], None]
CHUNK = 10_000  # rows per executemany (SQLite) and between progress reports

_STAGE = Table(
    "digest_import_rows",
    MetaData(),
    Column("line", Integer, nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", String(200)),
    Column("hash", String(64), nullable=False),
    prefixes=["TEMPORARY"],
)
_TIME = DateTime(timezone=True)


class Candidate(NamedTuple):
    """One good line of the file: already validated and normalised, unique in the file."""

    line: int
    email: str
    name: str | None


@dataclass
class Outcome:
    """What happened to the candidates; `add_subscriber`'s actions, counted."""

    added: int = 0
    activated: int = 0  # already on the list and changed by a confirmed import
    unchanged: int = 0
    left: int = 0
    suppressed: int = 0
    confirmations: int = 0


class _Known(NamedTuple):
    """A candidate the database already knows: its subscriber row (if any) and its suppression."""

    sid: int | None
    status: str | None
    unsubscribed_at: datetime | None
    name: str | None
    suppressed: bool


@dataclass
class _Changes:
    renames: list[dict[str, Any]] = field(default_factory=list)
    activations: list[int] = field(default_factory=list)


def add_many(
    session: Session,
    rows: Sequence[Candidate],
    *,
    confirmed: bool,
    source: str,
    now: datetime,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    """Add or update every row as `add_subscriber(..., source=source)` would (the caller commits).

    `dry_run` counts the same outcome and writes nothing but its temporary table.
    """
    outcome = Outcome()
    _stage(session, rows, progress)
    known = _known(session)
    changes = _settle(rows, known, confirmed, outcome)
    outcome.added = len(rows) - len(known)
    outcome.confirmations = 0 if confirmed else outcome.added
    if not dry_run:
        _write_changes(session, changes, source=source, now=now)
        session.execute(
            delete(_STAGE).where(
                or_(
                    exists().where(Subscriber.email == _STAGE.c.email),
                    exists().where(Suppression.email_hash == _STAGE.c.hash),
                )
            )
        )
        _insert_new(session, confirmed=confirmed, source=source, now=now, progress=progress)
    session.execute(text(f"DROP TABLE {_temp_schema(session)}.{_STAGE.name}"))
    return outcome


def _temp_schema(session: Session) -> str:
    return "pg_temp" if session.get_bind().dialect.name == "postgresql" else "temp"


def _stage(session: Session, rows: Sequence[Candidate], progress: Progress | None) -> None:
    """The candidates in a temporary table of this transaction: COPY on PostgreSQL, executemany on SQLite."""
    session.execute(text(f"DROP TABLE IF EXISTS {_temp_schema(session)}.{_STAGE.name}"))
    _STAGE.create(session.connection())
    total = len(rows)
    if session.get_bind().dialect.name == "postgresql":
        # The joins and sorts by line over a million staged rows fit in memory instead of spilling to disk.
        session.execute(text("SET LOCAL work_mem = '256MB'"))
        driver = session.connection().connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {_STAGE.name} (line, email, name, hash) FROM STDIN") as copy:
            for done, row in enumerate(rows, 1):
                copy.write_row((row.line, row.email, row.name, email_hash(row.email)))
                if progress is not None and done % CHUNK == 0:
                    progress("storing", done, total)
        session.execute(text(f"ANALYZE {_STAGE.name}"))  # temporary tables get no autovacuum statistics
    else:
        for start in range(0, total, CHUNK):
            chunk = rows[start : start + CHUNK]
            session.execute(
                insert(_STAGE),
                [{"line": r.line, "email": r.email, "name": r.name, "hash": email_hash(r.email)} for r in chunk],
            )
            if progress is not None:
                progress("storing", start + len(chunk), total)


def _known(session: Session) -> dict[int, _Known]:
    """The staged lines whose address is on the list or suppressed, by line."""
    sub, stage = Subscriber, _STAGE.c
    query = (
        select(stage.line, sub.id, sub.status, sub.unsubscribed_at, sub.name, Suppression.id.is_not(None))
        .select_from(_STAGE)
        .outerjoin(sub, sub.email == stage.email)
        .outerjoin(Suppression, Suppression.email_hash == stage.hash)
        .where(or_(sub.id.is_not(None), Suppression.id.is_not(None)))
    )
    return {
        line: _Known(sid, status, left_at, name, bool(suppressed))
        for line, sid, status, left_at, name, suppressed in session.execute(query)
    }


def _settle(rows: Sequence[Candidate], known: dict[int, _Known], confirmed: bool, outcome: Outcome) -> _Changes:
    """`add_subscriber`'s decisions for the rows already known, counted as the import reports them."""
    changes = _Changes()
    for row in rows:
        found = known.get(row.line)
        if found is None:
            continue
        if found.suppressed:
            outcome.suppressed += 1
            continue
        if found.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING) or (
            found.status == SubscriberStatus.PENDING and found.unsubscribed_at is not None
        ):
            outcome.left += 1
            continue
        assert found.sid is not None
        rename = bool(row.name) and found.name != row.name
        activate = confirmed and found.status != SubscriberStatus.ACTIVE
        if rename:
            changes.renames.append({"id": found.sid, "name": row.name})
        if activate:
            changes.activations.append(found.sid)
        if (rename or activate) and confirmed:
            outcome.activated += 1
        else:
            outcome.unchanged += 1
    return changes


def _write_changes(session: Session, changes: _Changes, *, source: str, now: datetime) -> None:
    """Rows already on the list: new names, and (confirmed import) pending people made active."""
    if changes.renames:
        session.execute(update(Subscriber), changes.renames)
    if not changes.activations:
        return
    session.execute(
        update(Subscriber),
        [
            {"id": sid, "status": SubscriberStatus.ACTIVE, "confirmed_at": now, "unsubscribed_at": None}
            for sid in changes.activations
        ],
    )
    session.execute(
        insert(Event),
        [
            {
                "kind": SubscriberEventKind.CONFIRMED,
                "subscriber_id": sid,
                "detail": {"source": source},
                "created_at": now,
            }
            for sid in changes.activations
        ],
    )
    session.execute(
        insert(ConsentRecord),
        [
            {
                "subscriber_id": sid,
                "kind": ConsentKind.IMPORTED,
                "created_at": now,
                "ip": None,
                "user_agent": None,
                "source": source or None,
            }
            for sid in changes.activations
        ],
    )


def _insert_new(session: Session, *, confirmed: bool, source: str, now: datetime, progress: Progress | None) -> None:
    """The staged rows left are new people: each table gets them in one INSERT ... SELECT, in file order.

    Long because it is four INSERT ... SELECT statements, one per table, in order.
    """
    stage = _STAGE.c
    at = literal(now, _TIME)
    steps = 4  # subscribers, events, consent records, queued confirmations
    _report(progress, 1, steps)
    session.execute(
        insert(Subscriber).from_select(
            [
                "email",
                "name",
                "status",
                "created_at",
                "confirmed_at",
                "consent_at",
                "consent_source",
                "confirmation_sent_at",
                "topics",
                "frequency",
            ],
            select(
                stage.email,
                stage.name,
                literal(SubscriberStatus.ACTIVE if confirmed else SubscriberStatus.PENDING, String),
                at,
                literal(now if confirmed else None, _TIME),
                at,
                literal(source, String),
                literal(None if confirmed else now, _TIME),
                literal("", String),
                literal(Frequency.WEEKLY, String),
            ).order_by(stage.line),
        )
    )
    new = select(Subscriber.id).select_from(_STAGE).join(Subscriber, Subscriber.email == stage.email)
    _report(progress, 2, steps)
    kinds = [SubscriberEventKind.SUBSCRIBED] + ([SubscriberEventKind.CONFIRMED] if confirmed else [])
    each = union_all(
        *(select(literal(n, Integer).label("n"), literal(kind, String).label("kind")) for n, kind in enumerate(kinds))
    ).subquery("kinds")
    session.execute(
        insert(Event).from_select(  # per person `subscribed` then `confirmed`, as add_subscriber writes
            ["subscriber_id", "kind", "detail", "created_at"],
            new.join(each, true())
            .add_columns(each.c.kind, literal({"source": source}, JSON), at)
            .order_by(stage.line, each.c.n),
        )
    )
    _report(progress, 3, steps)
    session.execute(
        insert(ConsentRecord).from_select(
            ["subscriber_id", "kind", "created_at", "source"],
            new.add_columns(literal(ConsentKind.IMPORTED, String), at, literal(source or None, String)).order_by(
                stage.line
            ),
        )
    )
    if not confirmed:
        _report(progress, steps, steps)
        session.execute(
            insert(OutgoingMail).from_select(
                ["subscriber_id", "kind", "status", "attempts", "created_at"],
                new.add_columns(
                    literal(MailKind.CONFIRM, String), literal(MailStatus.QUEUED, String), literal(0, Integer), at
                ).order_by(stage.line),
            )
        )


def _report(progress: Progress | None, step: int, steps: int) -> None:
    if progress is not None:
        progress("writing", step, steps)
