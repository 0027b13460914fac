"""Recording what the provider answered, and closing batches and the issue.

Transports that send message by message (SMTP) report each result as it comes, and it is
recorded at once (`recorder`): a crash repeats at most the message in flight. Others answer
for the whole batch, recorded in one transaction with the attempt's outcome (`record`).
Transient failures never fail a delivery, and an outage pauses the issue with its reason
(`record_pause`); the issue is sent once no batch is open (`mark_sent_if_done`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from digest.delivery.claims import Claimed
from digest.delivery.messages import Recipient
from digest.delivery.results import ResultWriter
from digest.delivery.summary import SendSummary
from digest.delivery.transports.base import SendResult
from digest.runtime import Runtime
from digest.storage.db import affected_rows
from digest.storage.models import (
    AttemptOutcome,
    Batch,
    BatchStatus,
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SendAttempt,
)
from digest.weeks import utcnow


def recorder(
    recipients: list[Recipient], reported: dict[int, SendResult], summary: SendSummary, writer: ResultWriter
) -> Callable[[int, SendResult], None]:
    """Records each message's final result the moment the transport has it (SMTP, kill -9):
    committed before the transport sends the next message."""

    def record_one(index: int, result: SendResult) -> None:
        if result.retry or result.unconfirmed:
            return
        if result.ok:
            writer.sent(recipients[index].delivery_id, result.provider_id)
            summary.add(sent=1)
        else:
            writer.failed(recipients[index].delivery_id, result.error or "rejected")
            summary.add(failed=1)
        reported[index] = result

    return record_one


def record(
    rt: Runtime,
    batch: Claimed,
    results: list[tuple[Recipient, SendResult]],
    summary: SendSummary,
    *,
    finished: bool,
    attempt_id: int | None = None,
    reported: list[SendResult] | None = None,
) -> None:
    """Store the provider's answer; `finished` closes the batch (nothing of it is left to retry).

    `reported`: results of this attempt already recorded one by one as they came (SMTP)."""
    now = utcnow()
    sent = [
        {
            "id": r.delivery_id,
            "status": DeliveryStatus.SENT,
            "provider_id": res.provider_id,
            "sent_at": now,
            "error": None,
        }
        for r, res in results
        if res.ok
    ]
    failed = [
        {"id": r.delivery_id, "status": DeliveryStatus.FAILED, "error": (res.error or "rejected")[:2000]}
        for r, res in results
        if not res.ok and not res.unconfirmed
    ]
    unconfirmed = [res.error or "unconfirmed" for _, res in results if res.unconfirmed]
    n_sent = len(sent) + sum(1 for res in reported or [] if res.ok)
    n_failed = len(failed) + sum(1 for res in reported or [] if not res.ok)
    outcome = AttemptOutcome.ACCEPTED if n_sent else AttemptOutcome.AMBIGUOUS if unconfirmed else AttemptOutcome.REFUSED
    with rt.sessions.begin() as session:
        for rows in (sent, failed):
            if rows:
                session.execute(update(Delivery), rows)
        if attempt_id is not None:
            session.execute(
                update(SendAttempt)
                .where(SendAttempt.id == attempt_id)
                .values(
                    outcome=outcome,
                    finished_at=now,
                    detail=f"{n_sent} accepted, {n_failed} rejected, {len(unconfirmed)} unconfirmed",
                )
            )
        if finished:
            _close(session, batch, unconfirmed, now)
    summary.add(
        sent=len(sent),
        failed=len(failed),
        batches=1 if finished and not unconfirmed else 0,
        unconfirmed=len(unconfirmed),
        error=f"batch {batch.batch_no}: {unconfirmed[0]}" if unconfirmed else None,
    )


def _close(session: Session, batch: Claimed, unconfirmed: list[str], now: datetime) -> None:
    """The batch is sent, or (an answer lost for good) unconfirmed: its deliveries stay queued, owed,
    and an operator decides."""
    row = session.get(Batch, batch.id)
    assert row is not None
    if unconfirmed:
        row.status, row.last_error, row.claimed_by = BatchStatus.UNCONFIRMED, unconfirmed[0][:2000], None
        return
    batch_failed = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.issue_id == row.issue_id,
            Delivery.batch_no == row.batch_no,
            Delivery.status == DeliveryStatus.FAILED,
        )
    )
    row.status, row.sent_at = BatchStatus.SENT, now
    row.last_error = f"{batch_failed} email(s) rejected" if batch_failed else None


def left_over(rt: Runtime, issue_id: int) -> tuple[int, int]:
    """After a run: how many readers were dropped (left the list), and how many are still owed."""
    with rt.sessions() as session:
        counts = dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(
                    Delivery.issue_id == issue_id, Delivery.status.in_([DeliveryStatus.DROPPED, DeliveryStatus.QUEUED])
                )
                .group_by(Delivery.status)
            ).all()
        )
    return int(counts.get(DeliveryStatus.DROPPED, 0)), int(counts.get(DeliveryStatus.QUEUED, 0))


def record_pause(rt: Runtime, issue_id: int, since: datetime | None, reason: str | None) -> None:
    """Say on the issue why its send is paused (stats, the preview), or clear it once it goes on."""
    with rt.sessions.begin() as session:
        q = update(Issue).where(Issue.id == issue_id)
        if reason is None:
            q = q.where(Issue.paused_at.is_not(None))
        session.execute(
            q.values(paused_at=since if reason else None, pause_reason=reason).execution_options(
                synchronize_session=False
            )
        )


def mark_sent_if_done(rt: Runtime, issue_id: int) -> bool:
    with rt.sessions.begin() as session:
        # Invariant 6: a batch waiting out an outage or an operator's decision keeps the issue open.
        open_batches = exists().where(
            Batch.issue_id == issue_id,
            Batch.status.in_([BatchStatus.PENDING, BatchStatus.CLAIMED, BatchStatus.UNCONFIRMED]),
        )
        res = session.execute(
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING, ~open_batches)
            .values(status=IssueStatus.SENT, sent_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return affected_rows(res) > 0
