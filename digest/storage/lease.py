"""Named leases in the `locks` table: one holder at a time, across processes and machines.

`digest serve` may run twice against one database by mistake; the weekly job takes
the `weekly-send` lease so only one process works on an issue at a time. A lease
expires unless renewed (a crashed holder blocks the others for one TTL at most), and
a holder on this host whose process is gone is taken over at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from digest.storage.db import Database
from digest.storage.models import Lock
from digest.weeks import as_utc, utcnow

log = logging.getLogger("digest.storage.lease")


def default_holder() -> str:
    """`host:pid`, so a holder that died on this host can be recognised."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(holder: str) -> bool:
    """True only when the holder is a process on this host that no longer exists."""
    base = holder.split("/", 1)[0]
    host, _, pid = base.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Lease:
    rt: Database
    name: str
    holder: str = field(default_factory=default_holder)
    ttl: timedelta = timedelta(minutes=5)
    clock: Callable[[], datetime] = utcnow

    def acquire(self) -> bool:
        """Take the lease if it is free, expired, ours already, or held by a dead local process."""
        now = self.clock()
        with self.rt.sessions.begin() as session:
            q = select(Lock).where(Lock.name == self.name)
            if self.rt.on_postgres:
                q = q.with_for_update()
            row = session.scalar(q)
            if row is None:
                try:
                    with session.begin_nested():
                        session.add(Lock(name=self.name, holder=self.holder, expires_at=now + self.ttl))
                except IntegrityError:
                    return False  # someone inserted it between our read and our write
                return True
            if row.holder == self.holder or as_utc(row.expires_at) <= now or holder_is_dead(row.holder):
                if row.holder != self.holder:
                    log.info("lease %s: taking over from %s", self.name, row.holder)
                row.holder, row.expires_at = self.holder, now + self.ttl
                return True
            return False

    def renew(self) -> bool:
        """Extend our lease; False when it is no longer ours (it expired and was taken)."""
        with self.rt.sessions.begin() as session:
            q = select(Lock).where(Lock.name == self.name)
            if self.rt.on_postgres:
                q = q.with_for_update()
            row = session.scalar(q)
            if row is None or row.holder != self.holder:
                return False
            row.expires_at = self.clock() + self.ttl
            return True

    def release(self) -> None:
        with self.rt.sessions.begin() as session:
            session.execute(delete(Lock).where(Lock.name == self.name, Lock.holder == self.holder))

    def current_holder(self) -> str | None:
        """Who holds the lease now (None when free or expired)."""
        with self.rt.sessions() as session:
            row = session.scalar(select(Lock).where(Lock.name == self.name))
        if row is None or as_utc(row.expires_at) <= self.clock():
            return None
        return row.holder

    @contextlib.contextmanager
    def held(self, heartbeat_seconds: float | None = None) -> Iterator[bool]:
        """Yield whether we got the lease; while held, a thread renews it every `heartbeat_seconds`."""
        if not self.acquire():
            yield False
            return
        done = threading.Event()
        beat = heartbeat_seconds or self.ttl.total_seconds() / 3

        def _renew() -> None:
            while not done.wait(beat):
                try:
                    if not self.renew():
                        log.error("lease %s: lost to another process", self.name)
                        return
                except Exception as exc:  # noqa: BLE001 - a failed renewal is retried at the next beat
                    log.warning("lease %s: renewal failed: %s", self.name, exc)

        thread = threading.Thread(target=_renew, name=f"lease-{self.name}", daemon=True)
        thread.start()
        try:
            yield True
        finally:
            done.set()
            thread.join(timeout=5)
            try:
                self.release()
            except Exception as exc:  # noqa: BLE001 - it expires by itself
                log.warning("lease %s: release failed (it expires in %s): %s", self.name, self.ttl, exc)
