"""The provider's request rate, shared by every send worker through the database.

One row of `send_rate` holds the next free request slot. Reserving a slot is a
single UPDATE (the row lock serializes workers on any number of machines):
`next_slot = max(next_slot, now) + interval`, and the caller sleeps until its slot.
Requests are thus spaced by at least `interval` across all workers, which keeps
every window of one second at or under the limit with no bursts. On PostgreSQL
the database clock is used, so workers on machines with skewed clocks agree.

The spacing carries a small margin (2 %) because the provider counts arrivals,
and arrivals jitter by a few milliseconds around the moment a request leaves.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from digest.storage.models import SendRate

MARGIN = 0.98

_PG_RESERVE = text(
    "UPDATE send_rate SET next_slot = GREATEST(next_slot, EXTRACT(EPOCH FROM clock_timestamp())::float8) + :interval "
    "WHERE name = :name RETURNING next_slot - :interval, EXTRACT(EPOCH FROM clock_timestamp())::float8"
)
_PG_HOLD = text(
    "UPDATE send_rate SET next_slot = GREATEST(next_slot, EXTRACT(EPOCH FROM clock_timestamp())::float8 + :seconds) "
    "WHERE name = :name"
)
_SQLITE_RESERVE = text(
    "UPDATE send_rate SET next_slot = MAX(next_slot, :now) + :interval WHERE name = :name "
    "RETURNING next_slot - :interval"
)
_SQLITE_HOLD = text("UPDATE send_rate SET next_slot = MAX(next_slot, :now + :seconds) WHERE name = :name")


class RateLimiter:
    """`acquire()` blocks until this caller may send one request; `hold_off()` after a 429."""

    def __init__(self, engine: Engine, name: str, per_second: float, margin: float = MARGIN):
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.engine = engine
        self.name = name
        self.per_second = per_second
        self.interval = 1.0 / (per_second * margin)
        self._pg = engine.dialect.name == "postgresql"
        self._offset: float | None = None  # database clock minus ours (PostgreSQL), a lower bound
        self._ensure_row()

    def _ensure_row(self) -> None:
        insert = pg_insert if self._pg else sqlite_insert
        with self.engine.begin() as conn:
            conn.execute(insert(SendRate).values(name=self.name, next_slot=0.0).on_conflict_do_nothing())

    def reserve(self) -> float:
        """Take the next slot; returns when it starts, in this machine's `time.time()`.

        On PostgreSQL slots are database-clock times. Each reservation also bounds the offset
        between the two clocks: the database read its clock at some moment between our `before`
        and `after`, so `db_now - after` is a lower bound. Keeping the largest lower bound means a
        slow commit can never make a request leave before its slot, only (slightly) after it.
        """
        before = time.time()
        with self.engine.begin() as conn:
            if self._pg:
                # A lost reservation is harmless (a crash forgets it), so do not wait for the disk.
                conn.execute(text("SET LOCAL synchronous_commit = off"))
                row = conn.execute(_PG_RESERVE, {"interval": self.interval, "name": self.name}).first()
            else:
                row = conn.execute(_SQLITE_RESERVE, {"interval": self.interval, "name": self.name,
                                                     "now": before}).first()
        after = time.time()
        if row is None:  # the row was deleted under us: recreate it and try again
            self._ensure_row()
            return self.reserve()
        if not self._pg:
            return float(row[0])
        slot, db_now = float(row[0]), float(row[1])
        self._offset = max(self._offset if self._offset is not None else db_now - after, db_now - after)
        return slot - self._offset

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Wait for a slot; returns False when `stop` was set while waiting (the slot is lost)."""
        wait = self.reserve() - time.time()
        if wait <= 0:
            return True
        if stop is None:
            time.sleep(wait)
            return True
        return not stop.wait(wait)

    def hold_off(self, seconds: float) -> None:
        """The provider said 429 with retry-after: no worker sends before then."""
        if seconds <= 0:
            return
        with self.engine.begin() as conn:
            if self._pg:
                conn.execute(_PG_HOLD, {"seconds": seconds, "name": self.name})
            else:
                conn.execute(_SQLITE_HOLD, {"seconds": seconds, "name": self.name, "now": time.time()})
