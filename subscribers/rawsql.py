"""A DB-API cursor inside a SQLAlchemy transaction, for the handful of statements on the sign-up path.

SQLAlchemy's per-statement machinery costs more than SQLite itself takes to run these
tiny statements, and the sign-up is the one request that must be cheap at volume. The SQL
is written once with `:name` parameters (portable between SQLite and PostgreSQL) and values
are stored exactly as the ORM would store them, so the rest of the code reads them back
unchanged. Everything else keeps using the ORM.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


@lru_cache(maxsize=64)
def _pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


class Raw:
    def __init__(self, conn: Connection):
        self.pg = conn.dialect.name == "postgresql"
        dbapi = conn.dialect.dbapi
        assert dbapi is not None  # every dialect we run on (sqlite3, psycopg) has its DB-API module
        self.dbapi = dbapi
        # A checked-out connection always has its DB-API connection (None only after close).
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def run(self, sql: str, params: dict[str, Any]) -> Any:
        """Driver errors come out as SQLAlchemy's (IntegrityError, OperationalError, ...), as callers expect."""
        try:
            self.cursor.execute(_pyformat(sql) if self.pg else sql, params)
        except self.dbapi.Error as exc:
            closed = bool(getattr(getattr(self.cursor, "connection", None), "closed", False)) if self.pg else False
            raise DBAPIError.instance(sql, params, exc, self.dbapi.Error, connection_invalidated=closed) from exc
        return self.cursor

    def one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.run(sql, params).fetchone()
        return row

    def ts(self, value: datetime) -> Any:
        """A UTC datetime as SQLAlchemy's DateTime(timezone=True) stores it."""
        if self.pg:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def read_ts(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        stamp: datetime = value
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)

    def json(self, value: Any) -> Any:
        if self.pg:
            from psycopg.types.json import Json

            return Json(value)
        return json.dumps(value)

    def close(self) -> None:
        self.cursor.close()
