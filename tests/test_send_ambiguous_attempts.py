"""Never a new key for a batch that may have been delivered (invariant 6), checked recipient by
recipient against the fake Resend's own record of accepted emails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from digest.delivery.requeue import requeue_failed
from digest.storage.db import make_engine, upgrade
from digest.storage.models import (
    AttemptOutcome,
    Batch,
    BatchStatus,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SendAttempt,
    Subscriber,
)
from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.support_delivery import add_readers, assert_exactly_once, delivery_counts
from tests.test_delivery import WEEK, make_rt, send

STALL = Faults(stall_rate=1.0, stall_seconds=5.0)


def issue_id_of(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.sessions() as s:
        return s.scalar(select(Issue.id))


def test_a_batch_accepted_then_stalled_is_never_resent_under_a_new_key(tmp_path, db_url) -> None:
    state = FakeResend(faults=STALL)
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url, max_attempts=1, timeout_seconds=2.0)
        readers = add_readers(rt, 150)
        first = send(rt)
        assert first.summary is not None and first.summary.failed == 0 and first.summary.sent == 0
        assert state.copies_by_recipient() == {r: 1 for r in readers}  # accepted, the answers were lost
        issue_id = issue_id_of(rt)
        with rt.sessions.begin() as s:  # what `--retry-failed` does: nothing failed, nothing gets a new key
            assert requeue_failed(s, issue_id, now=datetime.now(UTC)).deliveries == 0
            keys = {b.batch_no: b.idem_key for b in s.scalars(select(Batch))}
            assert set(s.scalars(select(Batch.status))) == {BatchStatus.PENDING}
            assert s.scalar(select(Issue.status)) == IssueStatus.SENDING
        state.set_faults(Faults())
        again = send(rt)
        assert again.summary is not None and again.summary.sent == 150
        with rt.sessions() as s:
            assert {b.batch_no: b.idem_key for b in s.scalars(select(Batch))} == keys
            outcomes = [a.outcome for a in s.scalars(select(SendAttempt).order_by(SendAttempt.id))]
    assert outcomes == [AttemptOutcome.AMBIGUOUS, AttemptOutcome.AMBIGUOUS, "accepted", "accepted"]
    assert_exactly_once(state.copies_by_recipient(), readers)
    assert sum(1 for e in state.log if e.outcome == "replayed") == 2
    rt.close()


def test_each_attempt_records_whether_it_was_refused_or_ambiguous(tmp_path, db_url) -> None:
    state = FakeResend(faults=Faults(error_rate=1.0))
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url, max_attempts=1, timeout_seconds=2.0)
        add_readers(rt, 50)
        send(rt)
        state.set_faults(STALL)
        send(rt)
        with rt.sessions() as s:
            rows = list(s.scalars(select(SendAttempt).order_by(SendAttempt.id)))
    assert [r.outcome for r in rows] == [AttemptOutcome.REFUSED, AttemptOutcome.AMBIGUOUS]
    assert "Resend 500" in (rows[0].detail or "") and "Timeout" in (rows[1].detail or "")
    assert rows[0].idem_key == rows[1].idem_key and rows[0].finished_at is not None
    rt.close()


def test_staging_and_production_on_one_account_never_share_a_key(tmp_path, db_url) -> None:
    staging_db = tmp_path / "staging.db"  # a separate installation: its own migration, its own id
    engine = make_engine(f"sqlite:///{staging_db}")
    upgrade(engine)
    engine.dispose()
    state = FakeResend()
    with FakeResendServer(state) as server:
        production = make_rt(tmp_path / "production", server.url, db_url)
        staging = make_rt(tmp_path / "staging", server.url, f"sqlite:///{staging_db}")
        readers = add_readers(production, 120)
        add_readers(staging, 120)
        for rt in (production, staging):
            result = send(rt)
            assert result.summary is not None and result.summary.sent == 120 and result.summary.failed == 0
    assert not [e for e in state.log if e.status == 409]
    assert state.copies_by_recipient() == {r: 2 for r in readers}  # one from each installation
    keys = {r.key for r in state.records}
    assert len(keys) == 4 and all(WEEK.key in k for k in keys)
    for rt in (production, staging):
        rt.close()


def _age_first_attempts(rt, hours: float) -> None:  # type: ignore[no-untyped-def]
    long_ago = datetime.now(UTC) - timedelta(hours=hours)
    with rt.sessions.begin() as s:
        s.execute(update(Batch).values(first_attempt_at=long_ago))
        s.execute(update(SendAttempt).values(started_at=long_ago))


def test_after_the_key_window_a_batch_no_attempt_of_which_was_accepted_gets_a_new_key(tmp_path, db_url) -> None:
    state = FakeResend(faults=Faults(error_rate=1.0))
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url, max_attempts=1)
        readers = add_readers(rt, 150)
        send(rt)
        with rt.sessions() as s:
            old_keys = set(s.scalars(select(Batch.idem_key)))
        _age_first_attempts(rt, 25)
        state.set_faults(Faults())
        again = send(rt)
        assert again.summary is not None and again.summary.sent == 150
        with rt.sessions() as s:
            new_keys = set(s.scalars(select(Batch.idem_key)))
    assert not old_keys & new_keys
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()


def test_after_the_key_window_an_ambiguous_batch_waits_for_an_operator_who_accepts_duplicates(tmp_path, db_url) -> None:
    state = FakeResend(faults=STALL)
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url, max_attempts=1, timeout_seconds=2.0)
        readers = add_readers(rt, 50)
        send(rt)
        _age_first_attempts(rt, 25)
        state.set_faults(Faults())
        later = send(rt)
        assert later.summary is not None and later.summary.sent == 0 and later.summary.unconfirmed == 50
        assert "may have been delivered" in later.summary.errors[0]
        assert delivery_counts(rt)[DeliveryStatus.QUEUED] == 50  # still owed, not failed
        issue_id = issue_id_of(rt)
        with rt.sessions.begin() as s:
            assert s.scalar(select(Batch.status)) == BatchStatus.UNCONFIRMED
            assert s.scalar(select(Issue.status)) == IssueStatus.SENDING
            held = requeue_failed(s, issue_id, now=datetime.now(UTC))
        assert held.deliveries == 0 and held.unconfirmed == 50
        assert_exactly_once(state.copies_by_recipient(), readers)  # the stalled batch had gone out
        with rt.sessions.begin() as s:
            done = requeue_failed(s, issue_id, now=datetime.now(UTC), accept_duplicates=True)
        assert done.deliveries == 50 and done.duplicates_possible == 50
        resent = send(rt)
        assert resent.summary is not None and resent.summary.sent == 50
    assert state.copies_by_recipient() == {r: 2 for r in readers}  # what the operator accepted
    rt.close()


def test_retry_failed_within_the_key_window_keeps_a_refused_batchs_key(tmp_path, db_url) -> None:
    state = FakeResend(faults=Faults(force_status=422, force_name="validation_error"))
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url)
        readers = add_readers(rt, 50)
        send(rt)
        assert delivery_counts(rt)[DeliveryStatus.FAILED] == 50
        issue_id = issue_id_of(rt)
        with rt.sessions.begin() as s:
            key = s.scalar(select(Batch.idem_key))
            done = requeue_failed(s, issue_id, now=datetime.now(UTC))
        assert done.deliveries == 50 and done.same_key == 1
        state.set_faults(Faults())
        send(rt)
        with rt.sessions() as s:
            assert s.scalar(select(Batch.status)) == BatchStatus.SENT and s.scalar(select(Batch.idem_key)) == key
    assert_exactly_once(state.copies_by_recipient(), readers)
    assert {r.key for r in state.records} == {key}
    rt.close()


def test_a_409_for_a_different_payload_under_the_key_leaves_the_batch_unconfirmed_not_failed(tmp_path, db_url) -> None:
    state = FakeResend(faults=STALL)
    with FakeResendServer(state) as server:
        rt = make_rt(tmp_path, server.url, db_url, max_attempts=1, timeout_seconds=2.0)
        readers = add_readers(rt, 50)
        send(rt)  # accepted, answer lost
        with rt.sessions.begin() as s:  # the payload changes under the live key (a reader renamed)
            s.execute(update(Subscriber).where(Subscriber.email == readers[0]).values(name="Renamed Reader"))
        state.set_faults(Faults())
        again = send(rt)
        assert again.summary is not None and again.summary.unconfirmed == 50 and again.summary.failed == 0
        assert "may already have gone out" in again.summary.errors[0]
    assert delivery_counts(rt) == {DeliveryStatus.QUEUED: 50}  # owed: nobody knows, so nobody is called failed
    with rt.sessions() as s:
        assert s.scalar(select(Batch.status)) == BatchStatus.UNCONFIRMED
        assert s.scalar(select(Issue.status)) == IssueStatus.SENDING
    assert_exactly_once(state.copies_by_recipient(), readers)
    rt.close()
