"""Record clicks off the request path: the redirect answers at once, rows are written in batches.

`/c/<token>` only appends to an in-process queue; a thread writes whatever has queued every
`[tracking] flush_seconds` in one INSERT, and `stop()` writes the rest, so a graceful shutdown
(SIGTERM under `digest serve`) loses nothing. If the database is away, the rows wait in the
queue for the next flush (up to MAX_QUEUED, past which the oldest are dropped and logged).

Repeats are counted, not stored (`clicks.hits`): a request for the same link of the same message
(delivery, edition, link, kind, method and scanner agent) within `[tracking] repeat_seconds` of
the row's first request adds one to that row, in the queue and at the flush (one UPDATE for the
rows a flush adds to), so one reader's link requested 10,000 times is a row or two, not 10,000.
A burst (several different links of one message) is told apart as before.
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

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from digest.storage.models import Click, Delivery
from digest.weeks import as_utc

log = logging.getLogger("digest.clicks")

MAX_QUEUED = 200_000
CHUNK = 5000  # rows per INSERT

# Link scanners of mail gateways and security products, and HTTP libraries no person reads with.
# Matched case-insensitively where a word of the User-Agent starts; the name goes into clicks.agent.
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "safelinks",
    "forcepoint",
    "websense",
    "symantec",
    "messagelabs",
    "trendmicro",
    "trend micro",
    "sophos",
    "fireeye",
    "ironport",
    "cisco",
    "zscaler",
    "bitdefender",
    "kaspersky",
    "avast",
    "checkpoint",
    "cloudmark",
    "spamtitan",
    "libraesva",
    "hornetsecurity",
    "vadesecure",
    "abnormal",
    "ms-office",
    "microsoft office",
    "bingpreview",
    "googleimageproxy",
    "yahoomailproxy",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "curl",
    "wget",
    "go-http-client",
    "okhttp",
    "java/",
    "libwww-perl",
    "scrapy",
    "bot",
    "crawler",
    "spider",
    "scanner",
    "preview",
)
_AGENT = re.compile(
    "(?<![a-z])(?:" + "|".join(re.escape(a) for a in sorted(SCANNER_AGENTS, key=len, reverse=True)) + ")", re.I
)


def scanner_agent(user_agent: str | None) -> str | None:
    """The known scanner a User-Agent names (lower-case), or None. An empty agent is a scanner's too."""
    if not user_agent or not user_agent.strip():
        return "no user agent"
    m = _AGENT.search(user_agent)
    return m.group(0).lower() if m else None


_ADD_HITS = text("UPDATE clicks SET hits = hits + :more WHERE id = :cid")
_Key = tuple[int, int | None, int | None, int, str, str, str | None]


def _key(row: dict[str, Any]) -> _Key:
    """What makes two requests repeats of one another: one link of one message, asked the same way."""
    return (
        row["issue_id"],
        row["delivery_id"],
        row["edition_id"],
        row["link"],
        row["kind"],
        row["method"],
        row["agent"],
    )


class ClickRecorder:
    """One per web process: `record` is called on the request path, `flush` from its own thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        flush_seconds: float = 1.0,
        retention_days: int | None = None,
        repeat_seconds: float = 60.0,
    ):
        self._sessions = sessions
        self._retention = retention_days
        self._next_prune = 0.0
        self._every = flush_seconds
        self._repeat = timedelta(seconds=repeat_seconds)
        self._queue: deque[dict[str, Any]] = deque()
        self._open: dict[_Key, dict[str, Any]] = {}  # the newest queued row of each key, which repeats add to
        self._queued = threading.Lock()  # the queue and `_open` change together
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one flush at a time (the thread's and stop()'s)

    def record(
        self,
        *,
        issue_id: int,
        delivery_id: int,
        link: int,
        method: str,
        agent: str | None,
        kind: str = "click",
        at: datetime | None = None,
        edition_id: int | None = None,
    ) -> None:
        row = {
            "issue_id": issue_id,
            "delivery_id": delivery_id,
            "reader": delivery_id,
            "kind": kind,
            "edition_id": edition_id,
            "link": link,
            "method": method,
            "agent": agent,
            "at": as_utc(at) if at else datetime.now(UTC),
            "hits": 1,
        }
        key = _key(row)
        with self._queued:
            same = self._open.get(key)
            if same is not None and abs(row["at"] - same["at"]) < self._repeat:
                same["hits"] += 1
                same["at"] = min(same["at"], row["at"])
                return
            if len(self._queue) >= MAX_QUEUED:
                dropped = self._queue.popleft()
                if self._open.get(_key(dropped)) is dropped:
                    del self._open[_key(dropped)]
                log.warning("click queue full (%d): the oldest click was dropped", MAX_QUEUED)
            self._queue.append(row)
            self._open[key] = row

    def _take(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` queued rows, oldest first; repeats from now on start new rows."""
        with self._queued:
            rows: list[dict[str, Any]] = []
            while self._queue and len(rows) < limit:
                row = self._queue.popleft()
                if self._open.get(_key(row)) is row:
                    del self._open[_key(row)]
                rows.append(row)
            return rows

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
        the front of the queue for the next flush. Returns how many requests were written."""
        written = 0
        with self._lock:
            while self._queue:
                rows = self._take(CHUNK)
                try:
                    self._insert(rows)
                except SQLAlchemyError as exc:
                    with self._queued:
                        self._queue.extendleft(reversed(rows))
                    log.warning(
                        "could not record %d clicks yet (%s); they wait for the next flush",
                        len(self._queue),
                        type(exc).__name__,
                    )
                    break
                written += sum(row["hits"] for row in rows)
        return written

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            with self._sessions.begin() as session:
                self._write(session, rows)
        except IntegrityError:  # a delivery deleted meanwhile (its issue was): keep the others
            for row in rows:
                try:
                    with self._sessions.begin() as session:
                        self._write(session, [row])
                except IntegrityError:
                    log.info("click for a delivery that no longer exists was not recorded")

    def _write(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Add the rows that repeat a row already written (same key, within the window of its first
        request) to it, in one UPDATE; insert the others in one INSERT."""
        added: dict[int, int] = {}
        new: list[dict[str, Any]] = []
        written = self._recent(session, rows)
        for row in rows:
            earlier = [
                (at, cid) for at, cid in written.get(_key(row), ()) if timedelta(0) <= row["at"] - at < self._repeat
            ]
            if earlier:
                cid = max(earlier)[1]
                added[cid] = added.get(cid, 0) + row["hits"]
            else:
                new.append(row)
        if added:  # one statement run per row (executemany): a CASE over thousands of ids is quadratic
            session.execute(_ADD_HITS, [{"cid": cid, "more": n} for cid, n in added.items()])
        if new:
            session.execute(insert(Click), new)

    def _recent(self, session: Session, rows: list[dict[str, Any]]) -> dict[_Key, list[tuple[datetime, int]]]:
        """The rows already written that these could repeat: those deliveries' requests in the window."""
        since = min(row["at"] for row in rows) - self._repeat
        until = max(row["at"] for row in rows)
        deliveries = sorted({row["delivery_id"] for row in rows})
        found: dict[_Key, list[tuple[datetime, int]]] = {}
        q = select(
            Click.id,
            Click.issue_id,
            Click.delivery_id,
            Click.edition_id,
            Click.link,
            Click.kind,
            Click.method,
            Click.agent,
            Click.at,
        ).where(Click.delivery_id.in_(deliveries), Click.at > since, Click.at <= until)
        for r in session.execute(q):
            key = (r.issue_id, r.delivery_id, r.edition_id, r.link, r.kind, r.method, r.agent)
            found.setdefault(key, []).append((as_utc(r.at), int(r.id)))
        return found


def unlink_clicks(session: Session, delivery_ids: Iterable[int]) -> int:
    """Make the clicks and pixel opens of these deliveries nobody's: no delivery, no agent, and a random
    negative `reader` per delivery (its requests still count once, as before). Returns rows changed."""
    changed = 0
    for delivery_id in set(delivery_ids):
        # The edition stays (pixel opens are recorded without one: it came from the delivery).
        edition = select(Delivery.edition_id).where(Delivery.id == delivery_id).scalar_subquery()
        result = session.execute(
            update(Click)
            .where(Click.delivery_id == delivery_id)
            .values(
                delivery_id=None,
                agent=None,
                reader=-(secrets.randbits(62) + 1),
                edition_id=func.coalesce(Click.edition_id, edition),
            )
            .execution_options(synchronize_session=False)
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed


def unlink_older_than(session: Session, days: int, now: datetime | None = None) -> int:
    """`[tracking] retention_days`: clicks older than that stop naming a delivery (the counts stay)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    old = session.scalars(select(Click.delivery_id).where(Click.at < cutoff, Click.delivery_id.is_not(None)).distinct())
    return unlink_clicks(session, [int(d) for d in old if d is not None])
