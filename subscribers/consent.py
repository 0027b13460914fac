"""Consent history: every sign-up request, confirmation, resubscribe and operator add is one
appended `consent_records` row; nothing rewrites an earlier one.

The subscriber row keeps its first consent fields (for the export); the history says who
asked, who confirmed and who came back, so a stranger's request for someone's address is on
record as exactly that.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from digest.storage.models import ConsentKind, ConsentRecord
from digest.weeks import utcnow

# The same row from the raw-SQL sign-up path (subscribers.signup).
INSERT_SQL = (
    "INSERT INTO consent_records (subscriber_id, kind, created_at, ip, user_agent, source)"
    f" VALUES (:sid, '{ConsentKind.SIGNED_UP}', :now, :ip, :ua, :source)"
)
INSERT_FROM_SQL = (
    "INSERT INTO consent_records (subscriber_id, kind, created_at, ip, user_agent, source)"
    f" SELECT id, '{ConsentKind.SIGNED_UP}', :now, :ip, :ua, :source FROM {{table}}"
)


def record_consent(
    session: Session,
    subscriber_id: int,
    kind: ConsentKind,
    *,
    source: str | None,
    ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> None:
    """Append one record in the caller's transaction."""
    session.execute(
        insert(ConsentRecord).values(
            subscriber_id=subscriber_id,
            kind=kind,
            created_at=now or utcnow(),
            ip=(ip or "")[:64] or None,
            user_agent=(user_agent or "")[:500] or None,
            source=(source or "")[:200] or None,
        )
    )


def consent_history(session: Session, subscriber_id: int) -> list[ConsentRecord]:
    """Oldest first: what an operator shows when someone asks how they got on the list."""
    return list(
        session.scalars(
            select(ConsentRecord).where(ConsentRecord.subscriber_id == subscriber_id).order_by(ConsentRecord.id)
        )
    )
