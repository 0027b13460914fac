"""Sliding-window rate limits kept in the database, so every web worker and process shares them.

One hit row per accepted attempt; a key is over its limit when `limit` hits lie inside the
window. Both limits of a sign-up (per IP, per address) are read in one query and written in
one insert, inside the caller's transaction: on SQLite that transaction holds the write lock
(BEGIN IMMEDIATE), so the count is exact; on PostgreSQL two simultaneous requests for the same
key may both pass at the very edge of a window (an overshoot of at most the concurrency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.orm import Session

from digest.storage.models import RateLimitHit
from digest.weeks import as_utc, utcnow

# Old hits are deleted past the longest window any limit uses.
KEEP = timedelta(hours=2)


@dataclass(frozen=True)
class Limit:
    key: str
    limit: int
    window: timedelta


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the oldest hit of the tightest full window expires
    key: str = ""


def check_and_hit(session: Session, limits: list[Limit], now: datetime | None = None) -> Verdict:
    """Refuse when any key is full; otherwise record one hit per key."""
    now = now or utcnow()
    conds = [and_(RateLimitHit.key == lim.key, RateLimitHit.at > now - lim.window) for lim in limits]
    rows = session.execute(
        select(RateLimitHit.key, func.count(), func.min(RateLimitHit.at)).where(or_(*conds)).group_by(RateLimitHit.key)
    ).all()
    seen = {key: (count, oldest) for key, count, oldest in rows}
    worst: Verdict | None = None
    for lim in limits:
        count, oldest = seen.get(lim.key, (0, None))
        if count >= lim.limit and oldest is not None:
            wait = math.ceil((as_utc(oldest) + lim.window - now).total_seconds())
            verdict = Verdict(False, max(1, wait), lim.key)
            if worst is None or verdict.retry_after > worst.retry_after:
                worst = verdict
    if worst is not None:
        return worst
    session.execute(insert(RateLimitHit), [{"key": lim.key, "at": now} for lim in limits])
    return Verdict(True)


def prune(session: Session, now: datetime | None = None) -> int:
    """Delete hits no window looks at any more (the drainer calls this now and then)."""
    now = now or utcnow()
    return session.execute(delete(RateLimitHit).where(RateLimitHit.at < now - KEEP)).rowcount or 0
