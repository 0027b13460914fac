"""A 10,000-subscriber send through a provider that fails 20 % of calls and drops connections.

`digest send` runs as its own process against the fake Resend: 10 % of calls
answer 500, 10 % answer 429 (retry-after 1 s), 12 % of connections are cut (half
of them after the emails were accepted, so the retry must be deduplicated by its
idempotency key; at 12 % every kind of fault occurs in every run, whatever order the
sending threads draw in). The send must complete with every subscriber mailed once.
"""

from __future__ import annotations

from sqlalchemy import func, select

from digest.storage.models import Delivery, DeliveryStatus, Issue, IssueStatus
from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.support_delivery import (
    assert_exactly_once,
    digest_cli,
    resend_env,
    resend_project,
    resend_runtime,
    seed_for_cli,
)

READERS = 10_000


def test_ten_thousand_readers_through_500s_429s_and_dropped_connections_each_get_one_copy(tmp_path, db_url) -> None:
    faults = Faults(error_rate=0.10, rate_limit_rate=0.10, rate_limit_retry_after=1.0, drop_rate=0.12, seed=20261118)
    state = FakeResend(faults=faults)
    with FakeResendServer(state) as server:
        # A generous rate keeps the test short; max_attempts bounds retries of one batch (0.16^10: never here).
        cfg = resend_project(
            tmp_path / "project",
            server.url,
            requests_per_second=100.0,
            max_attempts=10,
            concurrency=4,
            timeout_seconds=10.0,
        )
        rt = resend_runtime(cfg, server.url, db_url)
        readers = seed_for_cli(rt, READERS)
        result = digest_cli(cfg, resend_env(server.url, db_url), "send", timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{READERS} recipient(s) enqueued; {READERS} sent, 0 failed" in result.stdout
    outcomes = state.summary()["outcomes"]
    for kind in ("injected_500", "injected_429", "dropped_before", "accepted+dropped_after", "replayed"):
        assert outcomes.get(kind, 0) > 0, (kind, outcomes)
    assert_exactly_once(state.copies_by_recipient(), readers)
    with rt.sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.SENT))
            == READERS
        )
        assert s.scalar(select(Issue.status)) == IssueStatus.SENT
    rt.close()
