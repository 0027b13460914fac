"""Confirmation mail is rendered and sent in a process of its own, never on the request path.

Timing is not asserted here (bench/subscribe.py --new-vs-known measures it). What is
asserted: while the web process takes sign-ups and their confirmations go out, its one
drainer child writes the emails (the child's write counter in /proc/<pid>/io grows by at
least their size); and the child does not outlive a web process that is killed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.support_http import served
from tests.support_serve import wait_for

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes() if stat else b""
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmdline:
                found.append(int(entry))  # (multiprocessing's own semaphore tracker is not a worker)
    return found


def _written(pid: int) -> int:
    """Bytes the process has passed to write() so far (/proc/<pid>/io, wchar)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_web_process_takes_signups_while_a_child_renders_and_sends_the_confirmations(
    tmp_path: Path, db_url: str
) -> None:
    with served(tmp_path, db_url) as proc:
        outbox = tmp_path / "project" / "var" / "outbox"
        web = proc.proc.pid
        children = wait_for(lambda: _children(web), 30, what="the drainer process")
        assert len(children) == 1, children
        child = children[0]
        httpx.post(proc.url + "/subscribe", json={"email": "warm@example.com"})
        wait_for(lambda: len(list(outbox.rglob("*.eml"))) >= 1, 60, what="the first confirmation")
        child_before = _written(child)
        for i in range(5):
            resp = httpx.post(proc.url + "/subscribe", json={"email": f"new{i}@example.com"})
            assert resp.status_code == 200, resp.text
        wait_for(lambda: len(list(outbox.rglob("*.eml"))) >= 6, 60, what="five more confirmations")
        size = sum(f.stat().st_size for f in sorted(outbox.rglob("*.eml"))[-5:])
        assert _written(child) - child_before >= size, "the drainer process did not write the confirmations"
        os.kill(web, signal.SIGKILL)
        proc.proc.wait()
        wait_for(lambda: not _alive(child), 15, what="the drainer to stop after its web process died")
