"""Sliding-window rate limits kept in the database, so every web worker and process shares them.

Each limit's window is split into six buckets; a key has one row per bucket counting its
hits. A check sums the key's last six buckets (so "10 per minute" looks at the last 50-60
seconds): a cheap read refuses a key already at its limit, and otherwise an upsert adds
one hit. On PostgreSQL the upsert returns the key's count with that hit included
(`count_sql`) and holds the bucket row's lock until the caller's transaction ends, so
simultaneous requests for one key (in any worker, on any machine) are counted one after
another; a request that takes a key past its limit is refused and its transaction rolled
back, hit included. On SQLite the caller's transaction holds the database's write lock
from its first read (BEGIN IMMEDIATE), so the read's count is already exact. All the
limits of a sign-up (per IP, per mailbox, the confirmation caps) take one SELECT and one
upsert between them, whatever the traffic.
Per-IP keys are the IPv4 address or the IPv6 /64 (`ip_key`).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import Connection, delete
from sqlalchemy.orm import Session

from digest.links import email_hash
from digest.storage.db import affected_rows
from digest.storage.models import RateLimitHit
from digest.weeks import utcnow
from subscribers.addresses import canonical_mailbox
from subscribers.rawsql import Raw

BUCKETS = 6
# Old buckets are deleted past the longest window any limit uses (a mailbox's confirmations per day).
KEEP = timedelta(days=1)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def ip_key(ip: str) -> str:
    """Whom a per-IP limit counts: an IPv4 address (also when IPv4-mapped), or an IPv6 client's /64.

    One IPv6 subscriber line gets a whole /64 and may use any address in it, so counting
    single IPv6 addresses would let one client rotate past the limit."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip[:64]  # not an address (a test client, a unix socket): counted as given
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


# The per-mailbox limits' kinds: sign-ups an hour (`a`), confirmations a day (`cm`).
MAILBOX_KINDS = ("a", "cm")


def mailbox_key(kind: str, address: str) -> str:
    """A per-mailbox limit's key: every spelling of one mailbox (a `+tag`, Gmail's dots) is one key,
    and erasing the person (`erasure.forget`) finds their keys again from the address."""
    return f"{kind}:{email_hash(canonical_mailbox(address))[:40]}"


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
    return ", ".join(
        f"(SELECT sum(hits) FROM rate_limit_hits WHERE key = :k{i} AND at >= :t{i}),"
        f" (SELECT min(at) FROM rate_limit_hits WHERE key = :k{i} AND at >= :t{i})"
        for i in range(n)
    )


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
        # Raw DB-API values (object): a count column is an int or None by the SQL that reads it.
        count, oldest = int(values[2 * i] or 0), raw.read_ts(values[2 * i + 1])  # type: ignore[call-overload]
        if count >= lim.limit and oldest is not None:
            wait = math.ceil((oldest + lim.bucket * BUCKETS - now).total_seconds())
            verdict = Verdict(False, max(1, wait), lim.key)
            if worst is None or verdict.retry_after > worst.retry_after:
                worst = verdict
    return worst or Verdict(True)


@lru_cache(maxsize=8)
def hit_sql(n: int) -> str:
    """Count one hit per limit (an upsert). Enough on SQLite, where the caller's transaction
    holds the write lock from its first read, so the read's verdict is still true here."""
    values = ", ".join(f"(:k{i}, :b{i}, 1)" for i in range(n))
    return (
        f"INSERT INTO rate_limit_hits (key, at, hits) VALUES {values}"
        " ON CONFLICT (key, at) DO UPDATE SET hits = rate_limit_hits.hits + 1"
    )


@lru_cache(maxsize=8)
def count_sql(n: int) -> str:
    """hit_sql returning each key's count in its window, this hit included (PostgreSQL).

    The upsert takes the current bucket's row lock and waits for every transaction that
    counted a hit on it before; its RETURNING therefore sees their hits, and the decision
    made on it is exact however many workers run (usable as a CTE too). Older buckets are
    summed beside it; nobody writes them any more."""
    since = " ".join(f"WHEN :k{i} THEN :t{i}" for i in range(n))
    return (
        hit_sql(n) + " RETURNING key, hits + COALESCE((SELECT sum(o.hits) FROM rate_limit_hits AS o"
        f" WHERE o.key = rate_limit_hits.key AND o.at < rate_limit_hits.at AND o.at >= CASE o.key {since} END), 0)"
    )


def hit_params(raw: Raw, limits: list[Limit], now: datetime) -> dict[str, object]:
    params = read_params(raw, limits, now)
    for i, lim in enumerate(limits):
        params[f"b{i}"] = raw.ts(lim.bucket_start(now))
    return params


def counted(limits: list[Limit], rows: list[tuple[object, ...]]) -> Verdict:
    """The verdict on count_sql's rows: refused when a key went past its limit with this hit.

    The caller then rolls its transaction back, so a refused request is not counted."""
    # Raw DB-API values (object): `total` is COUNT(*)'s integer by the SQL that reads it.
    totals = {str(key): int(total or 0) for key, total in rows}  # type: ignore[call-overload]
    for lim in limits:
        if totals.get(lim.key, 0) > lim.limit:
            return Verdict(False, max(1, math.ceil(lim.bucket.total_seconds())), lim.key)
    return Verdict(True)


class Refused(Exception):
    """Raised inside the caller's transaction so that it rolls back (the hit included)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.key)
        self.verdict = verdict


def hit(
    raw: Raw, limits: list[Limit], now: datetime, sql: str | None = None, params: dict[str, object] | None = None
) -> None:
    """Count the hits; on PostgreSQL with count_sql (or `sql`, a statement built around it that
    returns its rows), raising Refused past a limit. On SQLite the caller's read decided."""
    cursor = raw.run(
        sql or (count_sql if raw.pg else hit_sql)(len(limits)), {**hit_params(raw, limits, now), **(params or {})}
    )
    if not raw.pg:
        return
    verdict = counted(limits, list(cursor.fetchall()))
    if not verdict.allowed:
        raise Refused(verdict)


def check_and_hit(conn: Connection, limits: list[Limit], now: datetime | None = None) -> Verdict:
    """Refuse when any key is at its limit; otherwise count one hit per key (call inside a transaction
    and roll it back on a refusal)."""
    now = now or utcnow()
    raw = Raw(conn)
    try:
        row = raw.one(f"SELECT {read_columns(len(limits))}", read_params(raw, limits, now))
        verdict = judge(raw, limits, tuple(row or ()), now)
        if verdict.allowed:
            try:
                hit(raw, limits, now)
            except Refused as exc:
                return exc.verdict
        return verdict
    finally:
        raw.close()


def prune(session: Session, now: datetime | None = None) -> int:
    """Delete buckets no window looks at any more (the drainer calls this now and then)."""
    now = now or utcnow()
    return affected_rows(session.execute(delete(RateLimitHit).where(RateLimitHit.at < now - KEEP)))
