"""Record one delivery's final result the moment the transport has it, for a few microseconds.

A transport that sends message by message (SMTP) reports each accepted message before it
sends the next, and the sender must have that on disk first: a kill -9 then repeats at
most the message in flight. Through an ORM session that was about 0.5 ms of CPU per
message (a pool checkout with its ping, the ORM's bulk-update path, BEGIN and COMMIT),
as much as building the message. Here one sending thread keeps one database connection
for a whole batch and writes each result with one UPDATE in autocommit: a single
round trip, durable when it returns (PostgreSQL commits it; SQLite in WAL mode has it in
its log), as the session's commit was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from digest.storage.models import Delivery, DeliveryStatus
from digest.weeks import utcnow


class ResultWriter:
    """One thread's connection for recording results; `close()` gives it back to the pool."""

    def __init__(self, engine: Engine):
        self.engine = engine
        dialect = engine.dialect
        if dialect.name not in ("postgresql", "sqlite"):
            raise ValueError(f"no result writer for {dialect.name}")
        # psycopg takes %(name)s, sqlite3 :name; both are the DBAPI's own named styles.
        style = "%({})s" if dialect.name == "postgresql" else ":{}"
        status, provider_id, sent_at, error, row = (
            style.format(n) for n in ("status", "provider_id", "sent_at", "error", "id")
        )
        table = Delivery.__tablename__
        self._sent_sql = (
            f"UPDATE {table} SET status = {status}, provider_id = {provider_id}, sent_at = {sent_at}, "
            f"error = NULL WHERE id = {row}"
        )
        self._failed_sql = f"UPDATE {table} SET status = {status}, error = {error} WHERE id = {row}"
        # The value the column's type stores (SQLite keeps datetimes as text in its own format).
        processor = Delivery.__table__.c.sent_at.type.bind_processor(dialect)
        self._when: Callable[[Any], Any] = processor or (lambda value: value)
        self._postgres = dialect.name == "postgresql"
        self._fairy: Any = None
        self._cursor: Any = None

    def _cur(self) -> Any:
        if self._cursor is None:
            self._fairy = self.engine.raw_connection()
            if self._postgres:  # one round trip per result, committed when it returns; undone in close()
                self._fairy.driver_connection.autocommit = True
            # SQLite: the engine's connections run with isolation_level None (autocommit) already.
            self._cursor = self._fairy.driver_connection.cursor()
        return self._cursor

    def sent(self, delivery_id: int, provider_id: str | None) -> None:
        params = {
            "status": DeliveryStatus.SENT.value,
            "provider_id": provider_id,
            "sent_at": self._when(utcnow()),
            "id": delivery_id,
        }
        self._execute(self._sent_sql, params)

    def failed(self, delivery_id: int, error: str) -> None:
        self._execute(
            self._failed_sql, {"status": DeliveryStatus.FAILED.value, "error": error[:2000], "id": delivery_id}
        )

    def _execute(self, sql: str, params: dict[str, Any]) -> None:
        self._cur().execute(sql, params)  # psycopg prepares it on the server after a few runs

    def close(self) -> None:
        if self._fairy is None:
            return
        fairy, self._fairy, self._cursor = self._fairy, None, None
        try:
            if self._postgres:
                fairy.driver_connection.autocommit = False  # as the pool hands connections out
        except Exception:  # noqa: BLE001 - a broken connection: the pool must not hand it out again
            fairy.invalidate()
        fairy.close()
