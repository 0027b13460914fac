"""Sliding-window rate limits kept in the database, so every web worker and process shares them.

Each limit's window is split into six buckets; a key has one row per bucket counting its
hits. A check sums the key's last six buckets (so "10 per minute" looks at the last 50-60
seconds) and, when the request is let through, adds one hit with an upsert. Refused
requests are not counted. Both limits of a sign-up (per IP, per address) take one SELECT
and one upsert, whatever the traffic, inside the caller's transaction: on SQLite that
transaction holds the write lock (BEGIN IMMEDIATE), so the count is exact; on PostgreSQL
two simultaneous requests for the same key may both pass at the very edge of a limit (an
overshoot of at most the concurrency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from sqlalchemy import Connection, delete
from sqlalchemy.orm import Session

from digest.storage.models import RateLimitHit
from digest.weeks import utcnow
from subscribers.rawsql import Raw

BUCKETS = 6
# Old buckets are deleted past the longest window any limit uses.
KEEP = timedelta(hours=2)
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Limit:
    key: str
    limit: int
    window: timedelta

    @property
    def bucket(self) -> timedelta:
        return self.window / BUCKETS

    def bucket_start(self, now: datetime) -> datetime:
        width = self.bucket.total_seconds()
        return _EPOCH + timedelta(seconds=math.floor((now - _EPOCH).total_seconds() / width) * width)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the oldest counted bucket leaves the window
    key: str = ""


@lru_cache(maxsize=8)
def read_columns(n: int) -> str:
    """Select-list of (hits, oldest bucket) per limit, to embed in the caller's one read query."""
    return ", ".join(f"(SELECT sum(hits) FROM rate_limit_hits WHERE key = :k{i} AND at >= :t{i}),"
                     f" (SELECT min(at) FROM rate_limit_hits WHERE key = :k{i} AND at >= :t{i})" for i in range(n))


def read_params(raw: Raw, limits: list[Limit], now: datetime) -> dict[str, object]:
    params: dict[str, object] = {}
    for i, lim in enumerate(limits):
        params[f"k{i}"] = lim.key
        params[f"t{i}"] = raw.ts(lim.bucket_start(now) - lim.bucket * (BUCKETS - 1))
    return params


def judge(raw: Raw, limits: list[Limit], values: tuple[object, ...], now: datetime) -> Verdict:
    """`values`: the read_columns results in order. Refused if any key is at its limit."""
    worst: Verdict | None = None
    for i, lim in enumerate(limits):
        count, oldest = int(values[2 * i] or 0), raw.read_ts(values[2 * i + 1])  # type: ignore[call-overload]
        if count >= lim.limit and oldest is not None:
            wait = math.ceil((oldest + lim.bucket * BUCKETS - now).total_seconds())
            verdict = Verdict(False, max(1, wait), lim.key)
            if worst is None or verdict.retry_after > worst.retry_after:
                worst = verdict
    return worst or Verdict(True)


@lru_cache(maxsize=8)
def hit_sql(n: int) -> str:
    """Count one hit per limit (an upsert; usable as a PostgreSQL CTE too)."""
    values = ", ".join(f"(:k{i}, :b{i}, 1)" for i in range(n))
    return (f"INSERT INTO rate_limit_hits (key, at, hits) VALUES {values}"
            " ON CONFLICT (key, at) DO UPDATE SET hits = rate_limit_hits.hits + 1")


def hit_params(raw: Raw, limits: list[Limit], now: datetime) -> dict[str, object]:
    params: dict[str, object] = {}
    for i, lim in enumerate(limits):
        params[f"k{i}"], params[f"b{i}"] = lim.key, raw.ts(lim.bucket_start(now))
    return params


def check_and_hit(conn: Connection, limits: list[Limit], now: datetime | None = None) -> Verdict:
    """Refuse when any key is at its limit; otherwise count one hit per key."""
    now = now or utcnow()
    raw = Raw(conn)
    try:
        row = raw.one(f"SELECT {read_columns(len(limits))}", read_params(raw, limits, now))
        verdict = judge(raw, limits, tuple(row or ()), now)
        if verdict.allowed:
            raw.run(hit_sql(len(limits)), hit_params(raw, limits, now))
        return verdict
    finally:
        raw.close()


def prune(session: Session, now: datetime | None = None) -> int:
    """Delete buckets no window looks at any more (the drainer calls this now and then)."""
    now = now or utcnow()
    return session.execute(delete(RateLimitHit).where(RateLimitHit.at < now - KEEP)).rowcount or 0
