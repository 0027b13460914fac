"""The provider's request rate, shared by every send worker through the database.

One row of `send_rate` holds the next free request slot. Reserving a slot is a
single UPDATE (the row lock serializes workers on any number of machines):
`next_slot = max(next_slot, now) + interval`, and the caller sleeps until its slot.
Requests are thus spaced by at least `interval` across all workers, which keeps
every window of one second at or under the limit with no bursts. On PostgreSQL
the database clock is used, so workers on machines with skewed clocks agree.

The spacing carries a small margin (1 %) because the provider counts arrivals,
and arrivals jitter by a few milliseconds around the moment a request leaves.
When they jitter more (a busy machine) and the provider answers 429, this process
widens its margin a little (and narrows it again as requests succeed), and the
shared schedule gives up one slot: the refused request is retried later by its
batch alone, nobody else stops. Only a run of 429s in a row (someone else is using
the budget) holds every worker off for the provider's `retry-after`.

The provider's `ratelimit-limit` header, when lower than the configured rate,
becomes the pace (Resend's limit is per second); on that change every worker
waits one window, for the requests sent at the faster pace to leave it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from digest.storage.models import SendRate

if TYPE_CHECKING:
    from digest.delivery.transports.base import Transport
    from digest.runtime import Runtime

log = logging.getLogger("digest.ratelimit")

MARGIN = 0.99
# A 429 costs a slot or two; spacing wider costs a share of every second. So 429s widen the
# spacing only gently (0.5 % each, at most to 5 % under the limit), and successes narrow it back.
MIN_MARGIN = 0.95
WIDEN, NARROW = 0.995, 0.0005  # per 429, per success
HOLD_AFTER = 3  # 429s in a row before every worker is held off

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
_PG_SHIFT = text(
    "UPDATE send_rate SET next_slot = GREATEST(next_slot, EXTRACT(EPOCH FROM clock_timestamp())::float8) + :seconds "
    "WHERE name = :name"
)
_SQLITE_SHIFT = text("UPDATE send_rate SET next_slot = MAX(next_slot, :now) + :seconds WHERE name = :name")
_SQLITE_HOLD = text("UPDATE send_rate SET next_slot = MAX(next_slot, :now + :seconds) WHERE name = :name")


class RateLimiter:
    """`acquire()` blocks until this caller may send one request; tell it how the request went
    with `observe()` (the provider's headers), `succeeded()` or `rate_limited()`."""

    def __init__(self, engine: Engine, name: str, per_second: float, margin: float = MARGIN):
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.engine = engine
        self.name = name
        self.per_second = per_second  # as configured
        self.limit = per_second  # as paced: lowered to the provider's own limit when it says so
        self.base_margin = margin
        self.margin = margin
        self._in_a_row = 0
        self._lock = threading.Lock()
        self._pg = engine.dialect.name == "postgresql"
        self._offset: float | None = None  # database clock minus ours (PostgreSQL), a lower bound
        self._ensure_row()

    @property
    def interval(self) -> float:
        return 1.0 / (self.limit * self.margin)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the provider's `ratelimit-limit` from any answer: the pace is the lower of it and ours."""
        value = next((v for k, v in headers.items() if k.lower() == "ratelimit-limit"), None)
        try:
            limit = float(str(value).split(";")[0]) if value is not None else 0.0
        except ValueError:
            return
        if limit <= 0:
            return
        with self._lock:
            pace, slower = min(self.per_second, limit), min(self.per_second, limit) < self.limit
            self.limit = pace
        if slower:
            # Requests already sent at the faster pace may fill the provider's window: let it pass once.
            log.warning(
                "the provider allows %g requests/s, fewer than the configured %g: pacing at %g",
                limit,
                self.per_second,
                pace,
            )
            self.hold_off(1.0)

    def succeeded(self) -> None:
        with self._lock:
            self._in_a_row = 0
            self.margin = min(self.base_margin, self.margin + NARROW)

    def rate_limited(self, retry_after: float | None = None) -> None:
        """A 429: widen this process's spacing a little and give one slot back to the provider.

        The refused request's batch waits `retry_after` on its own; the others keep their
        slots. After HOLD_AFTER 429s in a row every worker waits `retry_after`.
        """
        with self._lock:
            self._in_a_row += 1
            self.margin = max(MIN_MARGIN, self.margin * WIDEN)
            in_a_row = self._in_a_row
        self._shift(self.interval)
        if in_a_row >= HOLD_AFTER and retry_after:
            self.hold_off(retry_after)

    def _shift(self, seconds: float) -> None:
        with self.engine.begin() as conn:
            if self._pg:
                conn.execute(_PG_SHIFT, {"seconds": seconds, "name": self.name})
            else:
                conn.execute(_SQLITE_SHIFT, {"seconds": seconds, "name": self.name, "now": time.time()})

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
                row = conn.execute(
                    _SQLITE_RESERVE, {"interval": self.interval, "name": self.name, "now": before}
                ).first()
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
        """No worker sends before `seconds` from now (a provider asking everyone to wait)."""
        if seconds <= 0:
            return
        with self.engine.begin() as conn:
            if self._pg:
                conn.execute(_PG_HOLD, {"seconds": seconds, "name": self.name})
            else:
                conn.execute(_SQLITE_HOLD, {"seconds": seconds, "name": self.name, "now": time.time()})


def make_limiter(rt: Runtime, transport: Transport) -> RateLimiter | None:
    """A transport that declares a rate (its capabilities) shares that budget across all workers."""
    from digest.providers import registry

    name = getattr(transport, "name", "")
    try:
        spec = registry.get(name)
    except KeyError:
        return None
    rate = spec.capabilities.rate(rt.config.transport_section(name))
    return RateLimiter(rt.engine, name, rate) if rate else None
