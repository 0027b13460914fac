"""Record clicks off the request path: the redirect answers at once, rows are written in batches.

`/c/<token>` only appends to an in-process queue; a thread writes whatever has queued every
`[tracking] flush_seconds` in one INSERT, and `stop()` writes the rest, so a graceful shutdown
(SIGTERM under `digest serve`) loses nothing. If the database is away, the rows wait in the
queue for the next flush (up to MAX_QUEUED, past which the oldest are dropped and logged).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from digest.storage.models import Click, Delivery

log = logging.getLogger("digest.clicks")

MAX_QUEUED = 200_000
CHUNK = 5000  # rows per INSERT

# Link scanners of mail gateways and security products, and HTTP libraries no person reads with.
# Matched case-insensitively where a word of the User-Agent starts; the name goes into clicks.agent.
SCANNER_AGENTS = (
    "barracuda", "mimecast", "proofpoint", "urldefense", "safelinks", "forcepoint", "websense", "symantec",
    "messagelabs", "trendmicro", "trend micro", "sophos", "fireeye", "ironport", "cisco", "zscaler",
    "bitdefender", "kaspersky", "avast", "checkpoint", "cloudmark", "spamtitan", "libraesva", "hornetsecurity",
    "vadesecure", "abnormal", "ms-office", "microsoft office", "bingpreview", "googleimageproxy", "yahoomailproxy",
    "headlesschrome", "phantomjs", "python-requests", "python-urllib", "curl", "wget", "go-http-client",
    "okhttp", "java/", "libwww-perl", "scrapy", "bot", "crawler", "spider", "scanner", "preview",
)
_AGENT = re.compile("(?<![a-z])(?:" + "|".join(re.escape(a) for a in sorted(SCANNER_AGENTS, key=len, reverse=True))
                    + ")", re.I)


def scanner_agent(user_agent: str | None) -> str | None:
    """The known scanner a User-Agent names (lower-case), or None. An empty agent is a scanner's too."""
    if not user_agent or not user_agent.strip():
        return "no user agent"
    m = _AGENT.search(user_agent)
    return m.group(0).lower() if m else None


class ClickRecorder:
    """One per web process: `record` is called on the request path, `flush` from its own thread."""

    def __init__(self, sessions: sessionmaker[Session], flush_seconds: float = 1.0, retention_days: int | None = None):
        self._sessions = sessions
        self._retention = retention_days
        self._next_prune = 0.0
        self._every = flush_seconds
        self._queue: deque[dict[str, Any]] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one flush at a time (the thread's and stop()'s)

    def record(self, *, issue_id: int, delivery_id: int, link: int, method: str, agent: str | None,
               kind: str = "click", at: datetime | None = None, edition_id: int | None = None) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            log.warning("click queue full (%d): the oldest click was dropped", MAX_QUEUED)
        self._queue.append({"issue_id": issue_id, "delivery_id": delivery_id, "reader": delivery_id, "kind": kind,
                            "edition_id": edition_id, "link": link, "method": method, "agent": agent,
                            "at": at or datetime.now(UTC)})

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="click-recorder", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.flush()
            self._prune()

    def _prune(self) -> None:
        """Once an hour: clicks past the retention period stop naming anyone."""
        if self._retention is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + 3600
        try:
            with self._sessions.begin() as session:
                unlink_older_than(session, self._retention)
        except SQLAlchemyError as exc:
            log.warning("could not make old clicks anonymous yet (%s)", type(exc).__name__)

    def stop(self) -> None:
        """Stop the thread and write everything still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def flush(self) -> int:
        """Write everything queued, in chunks of CHUNK rows; on a database error the rows go back to
        the front of the queue for the next flush. Returns how many were written."""
        written = 0
        with self._lock:
            while self._queue:
                rows: list[dict[str, Any]] = []
                while self._queue and len(rows) < CHUNK:
                    rows.append(self._queue.popleft())
                try:
                    self._insert(rows)
                except SQLAlchemyError as exc:
                    self._queue.extendleft(reversed(rows))
                    log.warning("could not record %d clicks yet (%s); they wait for the next flush",
                                len(self._queue), type(exc).__name__)
                    break
                written += len(rows)
        return written

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._sessions.begin() as session:
                session.execute(insert(Click), rows)
        except IntegrityError:  # a delivery deleted meanwhile (its issue was): keep the others
            for row in rows:
                try:
                    with self._sessions.begin() as session:
                        session.execute(insert(Click), [row])
                except IntegrityError:
                    log.info("click for a delivery that no longer exists was not recorded")


def unlink_clicks(session: Session, delivery_ids: Iterable[int]) -> int:
    """Make the clicks and pixel opens of these deliveries nobody's: no delivery, no agent, and a random
    negative `reader` per delivery (its requests still count once, as before). Returns rows changed."""
    changed = 0
    for delivery_id in set(delivery_ids):
        # The edition stays (pixel opens are recorded without one: it came from the delivery).
        edition = select(Delivery.edition_id).where(Delivery.id == delivery_id).scalar_subquery()
        result = session.execute(update(Click).where(Click.delivery_id == delivery_id).values(
            delivery_id=None, agent=None, reader=-(secrets.randbits(62) + 1),
            edition_id=func.coalesce(Click.edition_id, edition)).execution_options(synchronize_session=False))
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed


def unlink_older_than(session: Session, days: int, now: datetime | None = None) -> int:
    """`[tracking] retention_days`: clicks older than that stop naming a delivery (the counts stay)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    old = session.scalars(select(Click.delivery_id).where(Click.at < cutoff, Click.delivery_id.is_not(None))
                          .distinct())
    return unlink_clicks(session, [int(d) for d in old if d is not None])
