"""This installation's id: generated once (by the migration), stored in the database.

Staging and production may share one provider account; the id in every idempotency
key keeps their batches apart, so neither is ever answered with the other's result.
It is mixed into Message-IDs for the same reason (a staging copy may share the secret too).
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digest.storage.models import Installation


def installation_id(session: Session) -> str:
    found = session.scalar(select(Installation.install_id).where(Installation.id == 1))
    if found:
        return found
    try:  # a database whose row was deleted by hand: make one, once
        with session.begin_nested():
            session.add(Installation(id=1, install_id=uuid.uuid4().hex[:16]))
    except IntegrityError:
        pass
    found = session.scalar(select(Installation.install_id).where(Installation.id == 1))
    assert found
    return found


def message_id_salt(session: Session, issue_id: int | None) -> str:
    """What digest.mail.MessageIds mixes in for a message of `issue_id` (None: transactional mail).

    The installation's id, except for issues enqueued before Message-IDs carried it: those keep the
    ids their first attempts went out with ("": the old key), so a batch retried after the upgrade
    sends the same payload under the same idempotency key."""
    install = installation_id(session)
    since = session.scalar(select(Installation.message_ids_from_issue).where(Installation.id == 1)) or 0
    return "" if issue_id is not None and issue_id < since else install
