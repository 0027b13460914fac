"""Sign-up retries are safe: the fast path's raw statements raise SQLAlchemy's own errors (so a
duplicate is retried and an outage answers 503), and a re-rendered confirmation gets a new
idempotency key (reusing the first try's key would make the provider answer 409 and lose it)."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy.exc import IntegrityError

from digest.delivery.mail_queue import _batch_key
from digest.mail import OutgoingEmail
from subscribers.rawsql import Raw


def test_raw_sign_up_statements_raise_sqlalchemy_errors(rt) -> None:
    """The sign-up fast path's retry (IntegrityError) and 503 (DBAPIError) need SQLAlchemy's classes."""
    with rt.engine.connect() as conn:
        raw = Raw(conn)
        sql = "INSERT INTO suppressions (email_hash, reason, created_at) VALUES (:h, :r, :t)"
        params = {"h": "x" * 64, "r": "manual", "t": raw.ts(datetime.now())}
        raw.run(sql, params)
        with pytest.raises(IntegrityError):
            raw.run(sql, params)
        raw.close()
        conn.rollback()


def test_transactional_batch_key_changes_with_the_payload() -> None:
    """A re-rendered confirmation (new token) must not reuse the key of the first try."""

    def mail(html: str) -> OutgoingEmail:
        return OutgoingEmail(to="a@example.com", subject="Confirm", html=html, text="t", from_addr="x <x@example.com>")

    assert _batch_key([(1, 0, mail("token-1"))]) == _batch_key([(1, 0, mail("token-1"))])
    assert _batch_key([(1, 0, mail("token-1"))]) != _batch_key([(1, 0, mail("token-2"))])
