"""Run the confirmation/welcome drainer in its own process, beside each web process.

Rendering a confirmation (Jinja, MJML), MIME-encoding it and the ORM work around it take a
few milliseconds of CPU. In a thread of the web process they held the interpreter while the
next requests waited, so a sign-up for a *new* address (which queues a mail) made the
following answers measurably slower than one for a known address: anyone could tell who is
on the list by timing. In a child process that work never touches the request path; the
web process only signals it (`wake`, `note_request`: a shared event and a shared clock).

The child is spawned (a fresh interpreter, nothing inherited from uvicorn's event loop),
opens its own database connections from the same config, and stops when asked, when its
parent stops, or when its parent disappears. Its housekeeping (the web's: pruning old
rate-limit buckets) is given by the caller, a module-level function the child can import.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from sqlalchemy.orm import Session

from digest.config import Config
from digest.runtime import Runtime

# The operator's name for this mail in the logs since it lived in subscribers/: kept for their filters.
log = logging.getLogger("subscribers.mail")

Housekeeping = Callable[[Session], object]  # run now and then in its own transaction

_CTX = multiprocessing.get_context("spawn")
BUSY_FOR = 0.25
MAX_DEFER = 1.0  # while sign-ups keep coming, still send a full batch at least this often


class DrainerProcess:
    """Same controls as drainer.Drainer (start, wake, note_request, stop); the work runs in a child.

    `housekeeping` must be picklable (a module-level function): the spawned child imports it."""

    def __init__(self, rt: Runtime, *, poll: float = 1.0, housekeeping: Housekeeping | None = None) -> None:
        self.config = rt.config
        self.poll = poll
        self.housekeeping = housekeeping
        self._wake = _CTX.Event()
        self._stop = _CTX.Event()
        self._busy_until: Synchronized[float] = _CTX.Value("d", 0.0, lock=False)
        self._proc: Any = None

    def start(self) -> None:
        if self._proc is None:
            self._proc = _CTX.Process(
                target=_child,
                name="mail-drainer",
                daemon=True,
                args=(self.config, self._wake, self._stop, self._busy_until, os.getpid(), self.poll, self.housekeeping),
            )
            self._proc.start()

    def wake(self) -> None:
        if self._proc is not None and not self._proc.is_alive() and not self._stop.is_set():
            log.error("the mail drainer process exited (code %s); starting a new one", self._proc.exitcode)
            self._proc = None
            self.start()
        self._wake.set()

    def note_request(self) -> None:
        """A sign-up is being served here: the child sends in small, spaced batches for a moment."""
        self._busy_until.value = time.monotonic() + BUSY_FOR  # CLOCK_MONOTONIC is one clock for all processes

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._proc is not None:
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
            self._proc = None


def _defer_while_busy(busy_until: Any, stop: Any) -> bool:
    """Wait (before each batch) until no sign-up came in for BUSY_FOR s, or MAX_DEFER s passed.

    Then the batch runs while the request path is quiet: on SQLite the drainer's writes and
    the sign-ups' would otherwise meet at the write lock, where the loser sleeps in SQLite's
    busy handler. Returns whether sign-ups are still coming: then the Drainer sends one mail
    and pauses (its busy share), so traffic that never pauses still gets its confirmations."""
    deadline = time.monotonic() + MAX_DEFER
    while not stop.is_set():
        now = time.monotonic()
        if now >= busy_until.value or now >= deadline:
            break
        stop.wait(min(busy_until.value, deadline) - now)
    return bool(time.monotonic() < busy_until.value)


def _child(
    config: Config, wake: Any, stop: Any, busy_until: Any, parent: int, poll: float, chores: Housekeeping | None
) -> None:
    from digest.delivery.drainer import Drainer
    from digest.runtime import open_runtime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the whole group: the parent stops us
    signal.signal(signal.SIGTERM, lambda *_: (stop.set(), wake.set()))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    rt = open_runtime(config, migrate=False)

    def housekeeping() -> None:
        if chores is not None:
            with rt.sessions.begin() as session:
                chores(session)

    def orphaned() -> None:  # the parent was killed (SIGKILL, OOM): do not outlive it
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()
                wake.set()

    threading.Thread(target=orphaned, daemon=True).start()
    drainer = Drainer(rt, poll=poll, housekeeping=housekeeping)
    drainer._wake, drainer._stop = wake, stop  # cross-process events with the same API
    # In the child process, `busy` asks the parent's shared clock instead (one instance's hook).
    drainer.busy = lambda: _defer_while_busy(busy_until, stop)  # type: ignore[method-assign]
    try:
        drainer._run()
    finally:
        rt.close()
