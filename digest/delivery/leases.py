"""Leases on queued work, shared by the issue sender (batches) and the transactional mail queue.

Both queues are worked by several processes at once (threads, uvicorn workers, `digest worker`s
on PostgreSQL), and a process may die in the middle of its work. So work is claimed with a
lease: a claim that was not renewed in time is over, and the next worker takes the work. On
PostgreSQL the claiming query skips rows another worker is taking this instant (SKIP LOCKED)
instead of queueing behind its lock; on SQLite one writer at a time makes that unnecessary.
The same backoff (`backoff`) spaces the retries of both queues.
"""

from __future__ import annotations

import os
import random
import socket
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, or_
from sqlalchemy.orm import InstrumentedAttribute

LEASE_SECONDS = 120
LEASE = timedelta(seconds=LEASE_SECONDS)  # a claim not renewed for this long is over
HEARTBEAT_SECONDS = 30  # how often a worker renews the claims it holds while it waits

_S = TypeVar("_S", bound=Select[Any])


def lapsed(column: InstrumentedAttribute[datetime | None], cutoff: datetime) -> ColumnElement[bool]:
    """No claim, or one whose time (`column`) is not after `cutoff`: the work may be claimed."""
    return or_(column.is_(None), column <= cutoff)


def skip_locked(query: _S, on_postgres: bool) -> _S:
    """Lock the rows being claimed, passing over those another worker is claiming right now."""
    return query.with_for_update(skip_locked=True) if on_postgres else query


def backoff(failures: int, first: float, ceiling: float, *, jitter: bool = False) -> float:
    """Seconds before the next try: `first`, twice that, four times ... at most `ceiling`.

    `failures` counts the failures so far (1 for the first). With `jitter` the wait is spread
    over 0.5x to 1.5x, so workers that failed together do not retry together."""
    wait = min(first * 2.0 ** min(max(0, failures - 1), 64), ceiling)
    return wait * (0.5 + random.random()) if jitter else wait


def worker_name() -> str:
    """The holder a claim names: this host and process (each thread adds its slot)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_gone(holder: str | None) -> bool:
    """A claim held by a process on this host that no longer exists can be taken over at once."""
    parts = (holder or "").split(":")
    if len(parts) < 2 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
