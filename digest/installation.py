"""This installation's id: generated once (by the migration), stored in the database.

Staging and production may share one provider account; the id in every idempotency
key keeps their batches apart, so neither is ever answered with the other's result.
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
