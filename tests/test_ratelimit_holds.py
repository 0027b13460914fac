"""Rate limits hold: IPv6 clients count by /64, and the check and the count are one atomic step.

The concurrency test runs the README's multi-worker deployment (uvicorn --workers 4) on
PostgreSQL and fires 100 simultaneous sign-ups for one address.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from digest.runtime import Runtime
from digest.storage.models import SUB_UNSUBSCRIBED, OutgoingMail, Subscriber
from subscribers.ratelimit import ip_key
from subscribers.signup import SignupRequest, signup
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.support_http import UvicornWorkers

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("ip", "key"), [
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("198.51.100.7", "198.51.100.7"),
    ("fe80::1%eth0", "fe80::/64"),
    ("testclient", "testclient"),
])
def test_the_ip_key_is_the_ipv4_address_or_the_ipv6_slash_64(ip: str, key: str) -> None:
    assert ip_key(ip) == key


def test_rotating_ipv6_addresses_within_one_64_share_one_limit(rt: Runtime) -> None:
    limit = rt.settings.subscribe.per_ip_per_minute
    outcomes = [signup(rt, SignupRequest(email=f"r{i}@example.com", ip=f"2001:db8:7:7::{i + 1:x}"), now=NOW).status
                for i in range(limit + 3)]
    assert outcomes == ["accepted"] * limit + ["limited"] * 3
    # Another /64 has its own budget; an IPv4-mapped address counts as the IPv4 one.
    assert signup(rt, SignupRequest(email="x@example.com", ip="2001:db8:7:8::1"), now=NOW).accepted
    for i in range(limit):
        assert signup(rt, SignupRequest(email=f"v{i}@example.com", ip="192.0.2.9"), now=NOW).accepted
    assert signup(rt, SignupRequest(email="w@example.com", ip="::ffff:192.0.2.9"), now=NOW).status == "limited"


def _queued(rt: Runtime, email: str) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(OutgoingMail).join(
            Subscriber, Subscriber.id == OutgoingMail.subscriber_id).where(Subscriber.email == email)) or 0


def _hammer(url: str, bodies: list[dict[str, str]]) -> list[int]:
    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=len(bodies))
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            gate = asyncio.Event()

            async def one(body: dict[str, str]) -> int:
                await gate.wait()
                return (await client.post(url + "/subscribe", json=body)).status_code

            tasks = [asyncio.create_task(one(b)) for b in bodies]
            await asyncio.sleep(0.5)
            gate.set()
            return list(await asyncio.gather(*tasks))

    return asyncio.run(run())


@pytest.mark.slow
def test_100_simultaneous_signups_on_4_workers_let_through_at_most_the_limit_and_queue_one_mail(
        tmp_path: Path, pg_url: str) -> None:
    cfg = write_project(tmp_path / "project")
    cfg.write_text(apply_overrides(cfg.read_text(), {"subscribe": {"per_ip_per_minute": 1000}}))
    rt = make_runtime(cfg, pg_url)
    address_limit = rt.settings.subscribe.per_address_per_hour
    server = UvicornWorkers(cfg, pg_url, 4, tmp_path)
    try:
        server.wait_ready()
        statuses = _hammer(server.url, [{"email": "same@example.com"}] * 100)
        assert sorted(set(statuses)) == [200, 429], statuses
        assert statuses.count(200) <= address_limit
        assert _queued(rt, "same@example.com") == 1
        # Someone who left long ago signs up again, 100 times at once: one new confirmation.
        with rt.sessions.begin() as s:
            s.add(Subscriber(email="left@example.com", status=SUB_UNSUBSCRIBED, created_at=NOW,
                             confirmation_sent_at=NOW - timedelta(days=30)))
        statuses = _hammer(server.url, [{"email": "left@example.com"}] * 100)
        assert 200 in statuses and statuses.count(200) <= address_limit
        assert _queued(rt, "left@example.com") == 1
        # The per-IP limit holds the same way: 100 addresses from one client, limit 10.
        cfg.write_text(apply_overrides(cfg.read_text(), {"subscribe": {"per_ip_per_minute": 10}}))
    finally:
        server.stop()
        rt.close()
    server = UvicornWorkers(cfg, pg_url, 4, tmp_path)
    try:
        server.wait_ready()
        statuses = _hammer(server.url, [{"email": f"p{i}@example.com"} for i in range(100)])
        assert statuses.count(200) <= 10 and statuses.count(429) >= 90, statuses
    finally:
        server.stop()
