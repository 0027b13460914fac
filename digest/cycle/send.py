"""One week's run: freeze the issue unless it already is, then send whatever of it is still unsent.

Whoever freezes first enqueues; anyone later (a second scheduler, a retry, a manual run) finds the
issue frozen and can only help send its remaining batches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from digest.cycle.freeze import Prepared, prepare
from digest.delivery.loop import Sender
from digest.delivery.summary import SendSummary
from digest.delivery.transports import make_transport
from digest.delivery.transports.base import Transport
from digest.runtime import Runtime
from digest.storage.models import IssueStatus
from digest.weeks import Week


@dataclass
class CycleResult:
    prepared: Prepared
    summary: SendSummary | None = None


def send_week(
    rt: Runtime,
    week: Week,
    *,
    manual: bool,
    now: datetime | None = None,
    transport: Transport | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[SendSummary], None] | None = None,
) -> CycleResult:
    """Prepare the week's issue and send whatever of it is still unsent."""
    prepared = prepare(rt, week, manual=manual, now=now)
    if prepared.status == IssueStatus.SKIPPED or prepared.issue_id is None:
        return CycleResult(prepared)
    if prepared.status == IssueStatus.SENT:
        return CycleResult(prepared)
    own = transport is None
    transport = transport or make_transport(rt.config)
    try:
        summary = Sender(rt, transport, on_batch=on_batch).run(prepared.issue_id, stop=stop)
    finally:
        if own:
            transport.close()
    return CycleResult(prepared, summary)  # Sender.run marks the issue sent once no batch is open
