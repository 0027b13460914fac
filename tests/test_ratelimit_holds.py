"""Rate limits hold: IPv6 clients count by /64, and the check and the count are one atomic step.

Confirmation mail has a budget too: a mailbox gets a few a day however its address is spelt
(`victim+1@`, `victim+2@`, Gmail's dots), and each recipient domain and the whole service a
few an hour, so sign-ups cannot be used to mail-bomb someone.

The concurrency tests run the README's multi-worker deployment (uvicorn --workers 4) on
PostgreSQL and fire 100 simultaneous sign-ups for one address (or one mailbox's spellings).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from digest.runtime import Runtime
from digest.storage.models import MailKind, OutgoingMail, Subscriber, SubscriberStatus
from subscribers.ratelimit import ip_key, prune
from subscribers.signup import SignupRequest, signup
from tests.conftest import apply_overrides, make_runtime, write_project
from tests.support_http import UvicornWorkers
from tests.support_subscribers import runtime_with

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("198.51.100.7", "198.51.100.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("testclient", "testclient"),
    ],
)
def test_the_ip_key_is_the_ipv4_address_or_the_ipv6_slash_64(ip: str, key: str) -> None:
    assert ip_key(ip) == key


def test_rotating_ipv6_addresses_within_one_64_share_one_limit(rt: Runtime) -> None:
    limit = rt.settings.subscribe.per_ip_per_minute
    outcomes = [
        signup(rt, SignupRequest(email=f"r{i}@example.com", ip=f"2001:db8:7:7::{i + 1:x}"), now=NOW).status
        for i in range(limit + 3)
    ]
    assert outcomes == ["accepted"] * limit + ["limited"] * 3
    # Another /64 has its own budget; an IPv4-mapped address counts as the IPv4 one.
    assert signup(rt, SignupRequest(email="x@example.com", ip="2001:db8:7:8::1"), now=NOW).accepted
    for i in range(limit):
        assert signup(rt, SignupRequest(email=f"v{i}@example.com", ip="192.0.2.9"), now=NOW).accepted
    assert signup(rt, SignupRequest(email="w@example.com", ip="::ffff:192.0.2.9"), now=NOW).status == "limited"


@pytest.mark.parametrize(
    ("address", "mailbox"),
    [
        ("victim+1@example.org", "victim@example.org"),
        ("Victim+news+x@Example.org", "victim@example.org"),
        ("first.last@example.org", "first.last@example.org"),  # dots are part of the name outside Gmail
        ("anne-marie@example.org", "anne-marie@example.org"),  # '-' is part of many real names: never a tag here
        ("J.Doe+x@gmail.com", "jdoe@gmail.com"),
        ("j.d.o.e@googlemail.com", "jdoe@gmail.com"),  # googlemail.com is the same mailbox as gmail.com
        ("+tag@example.org", "+tag@example.org"),  # nothing before the '+': the whole local part is the name
    ],
)
def test_the_canonical_mailbox_drops_tags_and_gmail_dots(address: str, mailbox: str) -> None:
    from subscribers.addresses import canonical_mailbox

    assert canonical_mailbox(address) == mailbox


def _confirmations(rt: Runtime, domain: str | None = None) -> int:
    """Confirmation mails queued, in all or to one domain."""
    with rt.sessions() as s:
        query = (
            select(func.count())
            .select_from(OutgoingMail)
            .join(Subscriber, Subscriber.id == OutgoingMail.subscriber_id)
            .where(OutgoingMail.kind == MailKind.CONFIRM)
        )
        if domain:
            query = query.where(Subscriber.email.like(f"%@{domain}"))
        return s.scalar(query) or 0


def test_twenty_spellings_of_one_mailbox_from_two_clients_send_it_three_confirmations(rt: Runtime) -> None:
    """The audit's attack: victim+1 ... victim+20 from two addresses sent 20 confirmations in seconds."""
    outcomes = [
        signup(
            rt,
            SignupRequest(email=f"victim+{i}@example.org", ip=("192.0.2.1", "198.51.100.2")[i % 2]),
            now=NOW + timedelta(seconds=i),
        )
        for i in range(1, 21)
    ]
    assert _confirmations(rt) == 3  # confirmations_per_mailbox_per_day
    assert rt.settings.subscribe.confirmations_per_mailbox_per_day == 3
    # The per-address limit counts the mailbox too (5 an hour), with the answer it always gave.
    address_limit = rt.settings.subscribe.per_address_per_hour
    assert [o.status for o in outcomes] == ["accepted"] * address_limit + ["limited"] * (20 - address_limit)
    assert len({o.message for o in outcomes if o.accepted}) == 1  # sent or not, the same words


def test_a_mailbox_gets_three_confirmations_a_day_however_spelt_and_more_the_next_day(rt: Runtime) -> None:
    spellings = [
        "Pat.Doe@gmail.com",
        "patdoe@googlemail.com",
        "p.a.t.doe+news@gmail.com",
        "PATDOE+x@gmail.com",
        "pat.d.oe@gmail.com",
        "patdoe+again@googlemail.com",
    ]
    for n, address in enumerate(spellings):
        at = NOW + timedelta(hours=2 * n)  # past the hourly limits; the drainer prunes old buckets meanwhile
        with rt.sessions.begin() as s:
            prune(s, at)
        assert signup(rt, SignupRequest(email=address, ip=f"192.0.2.{n + 1}"), now=at).accepted
    assert _confirmations(rt) == 3
    with rt.sessions.begin() as s:
        prune(s, NOW + timedelta(hours=24, minutes=1))
    assert signup(rt, SignupRequest(email="pat.doe+tomorrow@gmail.com"), now=NOW + timedelta(hours=24, minutes=1))
    assert _confirmations(rt) == 4  # the first one's day is over


def test_resending_to_one_pending_address_counts_against_its_mailbox_too(rt: Runtime) -> None:
    every = timedelta(minutes=rt.settings.subscribe.confirmation_resend_minutes, seconds=1)
    for n in range(5):  # each past the resend window, within the hourly per-address limit
        assert signup(rt, SignupRequest(email="kim@example.org", ip=f"192.0.2.{n + 1}"), now=NOW + every * n).accepted
    assert _confirmations(rt) == 3
    with rt.sessions() as s:
        assert (
            s.scalar(select(Subscriber.status).where(Subscriber.email == "kim@example.org")) == SubscriberStatus.PENDING
        )


def test_hourly_caps_per_recipient_domain_and_in_all_stop_confirmations_silently(tmp_path: Path, db_url: str) -> None:
    rt = runtime_with(
        tmp_path / "p", db_url, {"subscribe": {"confirmations_per_domain_per_hour": 3, "confirmations_per_hour": 5}}
    )
    try:
        outcomes = [
            signup(
                rt, SignupRequest(email=f"user{i}@example.org", ip=f"192.0.2.{i + 1}"), now=NOW + timedelta(seconds=i)
            )
            for i in range(5)
        ]
        outcomes += [
            signup(
                rt,
                SignupRequest(email=f"user{i}@example.net", ip=f"198.51.100.{i + 1}"),
                now=NOW + timedelta(seconds=10 + i),
            )
            for i in range(4)
        ]
        assert {(o.status, o.message) for o in outcomes} == {("accepted", outcomes[0].message)}
        assert _confirmations(rt, "example.org") == 3  # the domain's cap
        assert _confirmations(rt, "example.net") == 2  # the service's cap: 5 in all
        assert signup(rt, SignupRequest(email="late@example.net"), now=NOW + timedelta(minutes=61)).accepted
        assert _confirmations(rt, "example.net") == 3  # an hour later
        assert subscriber_count(rt) == _confirmations(rt)  # a capped new address is not stored either
    finally:
        rt.close()


def subscriber_count(rt: Runtime) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(Subscriber)) or 0


def _queued(rt: Runtime, email: str) -> int:
    with rt.sessions() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(OutgoingMail)
                .join(Subscriber, Subscriber.id == OutgoingMail.subscriber_id)
                .where(Subscriber.email == email)
            )
            or 0
        )


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
    tmp_path: Path, pg_url: str
) -> None:
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
            s.add(
                Subscriber(
                    email="left@example.com",
                    status=SubscriberStatus.UNSUBSCRIBED,
                    created_at=NOW,
                    confirmation_sent_at=NOW - timedelta(days=30),
                )
            )
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


@pytest.mark.slow
def test_100_simultaneous_signups_for_one_mailbox_or_one_domain_on_4_workers_queue_at_most_the_caps(
    tmp_path: Path, pg_url: str
) -> None:
    cfg = write_project(tmp_path / "project")
    cfg.write_text(
        apply_overrides(
            cfg.read_text(),
            {
                "subscribe": {
                    "per_ip_per_minute": 1000,
                    "per_ip_per_hour": 1000,
                    "per_address_per_hour": 1000,
                    "confirmations_per_domain_per_hour": 5,
                    "confirmations_per_hour": 12,
                }
            },
        )
    )
    rt = make_runtime(cfg, pg_url)
    server = UvicornWorkers(cfg, pg_url, 4, tmp_path)
    try:
        server.wait_ready()
        statuses = _hammer(server.url, [{"email": f"victim+{i}@example.org"} for i in range(100)])
        assert set(statuses) == {200}, statuses  # capped or not, every answer is the same
        assert _confirmations(rt, "example.org") == 3  # one mailbox: 3 a day
        statuses = _hammer(server.url, [{"email": f"u{i}@example.net"} for i in range(100)])
        assert set(statuses) == {200}, statuses
        assert _confirmations(rt, "example.net") == 5  # one domain: 5 an hour
        statuses = _hammer(server.url, [{"email": f"u@d{i}.example.com"} for i in range(100)])
        assert set(statuses) == {200}, statuses
        # The service: 12 sign-ups an hour, each counted whoever it was for: example.org's 5 (of which
        # the mailbox's day let 3 mail), example.net's 5, then 2 of these.
        assert _confirmations(rt) == 10 and _confirmations(rt, "%.example.com") == 2
    finally:
        server.stop()
        rt.close()


def test_one_client_gets_per_ip_per_hour_sign_ups_an_hour_so_it_cannot_spend_the_shared_caps(
    tmp_path: Path, db_url: str
) -> None:
    """10 a minute from one IP was 600 an hour: one script spent gmail.com's 100 and the service's 500."""
    rt = runtime_with(tmp_path / "p", db_url)
    try:
        s = rt.settings.subscribe
        assert s.per_ip_per_hour == 30 and s.per_ip_per_minute < s.per_ip_per_hour < s.confirmations_per_hour
        # 6 a minute for 10 minutes: under the minute limit all along.
        outcomes = [
            signup(rt, SignupRequest(email=f"rand{i}@gmail.com", ip="192.0.2.77"), now=NOW + timedelta(seconds=10 * i))
            for i in range(60)
        ]
        assert [o.status for o in outcomes] == ["accepted"] * 30 + ["limited"] * 30
        assert all(o.retry_after > 60 for o in outcomes[30:])  # the hour's window, not the minute's
        assert _confirmations(rt, "gmail.com") == 30
        # The same client's IPv6 /64 and its IPv4-mapped spelling count alike; other clients are not held up.
        assert (
            signup(
                rt, SignupRequest(email="next@gmail.com", ip="::ffff:192.0.2.77"), now=NOW + timedelta(minutes=11)
            ).status
            == "limited"
        )
        other = SignupRequest(email="other@gmail.com", ip="192.0.2.78")
        assert signup(rt, other, now=NOW + timedelta(minutes=11)).queued
    finally:
        rt.close()


def test_per_ip_per_hour_answers_429_with_retry_after_over_http(tmp_path: Path, db_url: str) -> None:
    from tests.support_subscribers import client

    rt = runtime_with(tmp_path / "p", db_url, {"subscribe": {"per_ip_per_minute": 100, "per_ip_per_hour": 3}})
    try:
        c = client(rt)
        assert [c.post("/subscribe", json={"email": f"h{i}@example.com"}).status_code for i in range(3)] == [200] * 3
        r = c.post("/subscribe", json={"email": "h3@example.com"})
        assert r.status_code == 429 and 60 < int(r.headers["Retry-After"]) <= 3600
        assert subscriber_count(rt) == 3
    finally:
        rt.close()


def _set_up(rt: Runtime, email: str, state: str) -> None:
    """The victim as the attacker cannot see it: not on the list, pending, active or suppressed."""
    from digest.storage.models import SubscriberStatus
    from subscribers.lifecycle import suppress

    if state == "new":
        return
    with rt.sessions.begin() as s:
        if state == "suppressed":
            suppress(s, email, "complaint")
            return
        s.add(
            Subscriber(
                email=email,
                status=SubscriberStatus.ACTIVE if state == "active" else SubscriberStatus.PENDING,
                created_at=NOW,
                confirmation_sent_at=NOW - timedelta(minutes=1),
            )
        )


@pytest.mark.parametrize("state", ["new", "pending", "active", "suppressed"])
def test_the_confirmation_caps_do_not_tell_whether_an_address_is_on_the_list(
    tmp_path: Path, db_url: str, state: str
) -> None:
    """The audit's oracle: fill the service's hourly cap to one short with one's own addresses, sign
    the victim up, then one more own address. Its confirmation must not depend on the victim's state."""
    rt = runtime_with(
        tmp_path / "p", db_url, {"subscribe": {"confirmations_per_hour": 5, "confirmations_per_domain_per_hour": 5}}
    )
    try:
        _set_up(rt, "victim@example.org", state)
        for i in range(4):
            assert signup(
                rt,
                SignupRequest(email=f"me{i}@attacker.example.com", ip=f"192.0.2.{i + 1}"),
                now=NOW + timedelta(seconds=i),
            ).queued
        assert signup(
            rt, SignupRequest(email="victim@example.org", ip="198.51.100.1"), now=NOW + timedelta(seconds=10)
        ).accepted
        last = signup(
            rt, SignupRequest(email="me4@attacker.example.com", ip="198.51.100.2"), now=NOW + timedelta(seconds=11)
        )
        assert last.accepted and not last.queued  # the victim's sign-up took the fifth, whatever its state
        assert _confirmations(rt, "attacker.example.com") == 4
    finally:
        rt.close()


@pytest.mark.parametrize("state", ["new", "pending", "active", "suppressed"])
def test_the_per_domain_cap_does_not_tell_whether_an_address_is_on_the_list(
    tmp_path: Path, db_url: str, state: str
) -> None:
    rt = runtime_with(tmp_path / "p", db_url, {"subscribe": {"confirmations_per_domain_per_hour": 3}})
    try:
        _set_up(rt, "victim@example.org", state)
        for i in range(2):  # an own catch-all address at the victim's provider
            assert signup(
                rt, SignupRequest(email=f"me{i}@example.org", ip=f"192.0.2.{i + 1}"), now=NOW + timedelta(seconds=i)
            ).queued
        assert signup(
            rt, SignupRequest(email="victim@example.org", ip="198.51.100.1"), now=NOW + timedelta(seconds=10)
        ).accepted
        last = signup(rt, SignupRequest(email="me2@example.org", ip="198.51.100.2"), now=NOW + timedelta(seconds=11))
        assert last.accepted and not last.queued
        elsewhere = SignupRequest(email="me@example.net", ip="198.51.100.3")
        assert signup(rt, elsewhere, now=NOW + timedelta(seconds=12)).queued  # another domain's cap is its own
    finally:
        rt.close()
