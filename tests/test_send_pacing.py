"""Pacing and retries that keep a send at full speed: a batch waiting for its backoff frees its
sending slot, a 429 costs the shared schedule one slot (not a second), and the provider's
`ratelimit-limit` header sets the pace when it is lower than the configured rate.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest.cycle.freeze import prepare
from digest.delivery.loop import Sender
from digest.delivery.ratelimit import RateLimiter
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import BaseTransport, TransientError
from digest.weeks import Week
from tests.conftest import make_runtime, write_project
from tests.fake_resend import FakeResend, FakeResendServer
from tests.support_delivery import add_readers, assert_exactly_once, resend_project, resend_runtime, seed_comparisons

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
WEEK = Week.parse("2026-W47")


class FailsFirstCall(BaseTransport):
    """The outbox, except that its very first call fails transiently; records each call's key."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name, self.max_in_flight = inner.name, 1
        self.keys: list[str] = []

    def send_batch(self, emails, idempotency_key, folder, on_result=None):  # type: ignore[no-untyped-def]
        self.keys.append(idempotency_key)
        if len(self.keys) == 1:
            raise TransientError("503 from provider")
        return self.inner.send_batch(emails, idempotency_key, folder)

    def close(self) -> None:
        self.inner.close()


def test_a_batch_waiting_for_its_backoff_leaves_its_sending_slot_to_the_next_batch(tmp_path: Path, db_url: str) -> None:
    rt = make_runtime(write_project(tmp_path / "project"), db_url)
    seed_comparisons(rt, published=NOW - timedelta(days=1))
    add_readers(rt, 250)  # three batches
    issue_id = prepare(rt, WEEK, manual=True, now=NOW).issue_id
    transport = FailsFirstCall(make_transport(rt.config))
    summary = Sender(rt, transport, concurrency=1, limiter=None, backoff_base=2.0).run(issue_id)
    transport.close()
    assert summary.sent == 250 and summary.retries == 1
    first, *rest = transport.keys
    # With one sending slot, the next batch went out while the failed one waited (at least 1 s) to retry.
    assert rest[0] != first and first in rest and len(rest) == 3, transport.keys
    rt.close()


def test_a_429_costs_the_shared_schedule_one_slot_not_a_second(tmp_path: Path, db_url: str) -> None:
    rt = make_runtime(write_project(tmp_path / "p"), db_url)
    limiter = RateLimiter(rt.engine, "test", per_second=10)
    before = limiter.reserve()
    limiter.rate_limited()
    after = limiter.reserve()
    # The next slot is one extra interval later (the refused request's slot is given back), not a second.
    # (On PostgreSQL slots are database-clock times mapped to ours: a few ms of slack either way.)
    assert 1.5 * limiter.interval <= after - before < 3 * limiter.interval, (after - before, limiter.interval)
    rt.close()


def test_the_providers_ratelimit_limit_header_sets_the_pace_when_lower(tmp_path: Path, db_url: str) -> None:
    rt = make_runtime(write_project(tmp_path / "p"), db_url)
    limiter = RateLimiter(rt.engine, "test", per_second=20)
    limiter.observe({"ratelimit-limit": "5", "ratelimit-remaining": "4", "ratelimit-reset": "1"})
    assert limiter.interval >= 1 / 5
    limiter.observe({"ratelimit-limit": "50"})  # a higher provider limit never raises the configured rate
    assert limiter.interval >= 1 / 20 and limiter.interval < 1 / 5
    rt.close()


def test_a_send_configured_above_the_providers_limit_follows_the_header_instead_of_hitting_429s(
    tmp_path: Path, db_url: str, monkeypatch
) -> None:
    # The schedule is what the sender controls: record every slot it reserves and the pace it held then.
    # (Arrival times also carry the machine's scheduling jitter; a loaded machine turns that into 429s.)
    reserved: list[tuple[float, float]] = []
    real_reserve = RateLimiter.reserve

    def recording_reserve(self: RateLimiter) -> float:
        limit = self.limit
        slot = real_reserve(self)
        reserved.append((slot, limit))
        return slot

    monkeypatch.setattr(RateLimiter, "reserve", recording_reserve)
    state = FakeResend(rate_limit=4)
    with FakeResendServer(state) as server:
        cfg = resend_project(tmp_path / "project", server.url, requests_per_second=25.0, batch_size=10, concurrency=2)
        rt = resend_runtime(cfg, server.url, db_url)
        seed_comparisons(rt, published=NOW - timedelta(days=1))
        readers = add_readers(rt, 300)  # 30 requests
        issue_id = prepare(rt, WEEK, manual=True, now=NOW).issue_id
        transport = make_transport(rt.config)
        started = time.monotonic()
        summary = Sender(rt, transport).run(issue_id)
        transport.close()
    assert summary.sent == 300, summary
    outcomes = state.summary()["outcomes"]
    # Once the header said 4/s, every slot was reserved at that pace, at least 1/4 s after the one before
    # (PostgreSQL slots are database-clock times mapped to ours: a few ms of slack).
    paced = sorted(slot for slot, limit in reserved if limit == 4)
    assert len(paced) >= 28, reserved  # all but the first requests, sent before any answer came back
    gaps = [b - a for a, b in zip(paced, paced[1:])]
    assert min(gaps) >= 0.25 - 0.005, gaps
    # Paced at 25/s the fake would refuse most of the 30 requests; following its header, few are (the
    # ones a busy machine delivers late enough to bunch up with the next).
    assert outcomes.get("rate_limited", 0) <= 6, outcomes
    assert_exactly_once(state.copies_by_recipient(), readers)
    print(f"sent in {time.monotonic() - started:.1f} s: {outcomes}")
    rt.close()
