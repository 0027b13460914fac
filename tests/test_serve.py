"""`digest serve` as real processes: stop mid-send and resume, two processes on one database.

These start real subprocesses running uvicorn on free ports and wait for real
schedule slots, so they take tens of seconds each.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from digest.config import WEEKDAYS
from digest.runtime import Runtime
from digest.storage.models import Batch, BatchStatus, Delivery, DeliveryStatus, Issue, IssueStatus
from tests.conftest import ROOT, apply_overrides, make_runtime, write_project
from tests.support_delivery import SHARED_SENDING
from tests.support_serve import ServeProcess, free_port, seed, serving, wait_for

pytestmark = pytest.mark.slow

ZONE = "Europe/London"
SECRET = "test-secret-key-0123456789"


def _project(root: Path, db_url: str, slot: datetime, **resend: int) -> tuple[Path, dict[str, str]]:
    cfg = write_project(root)
    overrides = {"schedule": {"day": WEEKDAYS[slot.weekday()], "time": f"{slot:%H:%M}", "timezone": ZONE}}
    shared = {k: v for k, v in resend.items() if k in SHARED_SENDING}
    if shared:
        overrides["transport"] = shared
    if len(shared) < len(resend):
        overrides["transport.resend"] = {k: v for k, v in resend.items() if k not in SHARED_SENDING}
    cfg.write_text(apply_overrides(cfg.read_text(), overrides))
    return cfg, {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET, "DIGEST_TRANSPORT": "outbox"}


def _issue(rt: Runtime) -> Issue | None:
    with rt.sessions() as s:
        return s.scalar(select(Issue).order_by(Issue.week.desc()).limit(1))


def _recipients(folder: Path) -> Counter[str]:
    """How many .eml files each address got."""
    got: Counter[str] = Counter()
    for f in folder.glob("*.eml"):
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        got[str(msg["To"]).strip().lower()] += 1
    return got


def test_sigterm_mid_send_exits_0_and_the_restart_mails_everyone_once(tmp_path: Path, db_url: str) -> None:
    people = 40
    now = datetime.now(ZoneInfo(ZONE))
    slot = (now - timedelta(minutes=1)).replace(second=0, microsecond=0)  # just past: due at start
    cfg, env = _project(tmp_path / "project", db_url, slot, batch_size=1, concurrency=1)
    rt = make_runtime(cfg, db_url)
    seed(rt, published=now - timedelta(days=1), people=people)
    outbox = rt.outbox_dir
    logs = tmp_path / "logs"
    logs.mkdir()

    first = ServeProcess(cfg, free_port(), {**env, "DIGEST_TEST_SEND_DELAY": "0.15"}, logs, slow=True)
    with serving(first):
        first.wait_ready()
        wait_for(lambda: len(list(outbox.glob("*/*.eml"))) >= 8, 60, what="the send to start")
        assert first.terminate() == 0, first.output()
    written = len(list(outbox.glob("*/*.eml")))
    issue = _issue(rt)
    assert issue is not None and issue.status == IssueStatus.SENDING, first.output()
    assert 8 <= written < people, f"the send was not interrupted ({written} of {people} written)"
    assert "stopping after the batch in flight" in first.output()
    assert "digest serve: stopped" in first.output()
    with rt.sessions() as s:  # nothing half-done: every batch is either sent or untouched
        states = Counter(s.scalars(select(Batch.status).where(Batch.issue_id == issue.id)))
        assert set(states) <= {BatchStatus.SENT, "pending"}, states
        assert states[BatchStatus.SENT] == written

    second = ServeProcess(cfg, free_port(), env, logs)
    with serving(second):
        second.wait_ready()
        wait_for(lambda: (i := _issue(rt)) is not None and i.status == IssueStatus.SENT, 90, what="the resumed send")
        health = second.healthy()
        assert health is not None and health["last_issue"]["status"] == IssueStatus.SENT
        assert health["last_issue"]["deliveries"] == {DeliveryStatus.SENT: people}
        assert second.terminate() == 0, second.output()
    assert "resuming the interrupted send" in second.output()

    got = _recipients(outbox / issue.week)
    assert got == Counter({f"reader{i:03d}@example.com": 1 for i in range(people)})
    assert not list(outbox.glob("*/*.tmp*"))
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 1
        assert (
            s.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.SENT)) == people
        )
        # No batch was sent twice: the one in flight at SIGTERM finished, the rest were sent once.
        assert set(s.scalars(select(Batch.attempts).where(Batch.issue_id == issue.id))) == {1}
    rt.close()


def test_two_serve_processes_on_one_postgresql_send_one_issue(tmp_path: Path, pg_url: str) -> None:
    people = 30
    now = datetime.now(ZoneInfo(ZONE))
    slot = (now + timedelta(seconds=80)).replace(second=0, microsecond=0)  # 20-80 s ahead
    cfg, env = _project(tmp_path / "project", pg_url, slot, batch_size=5)
    rt = make_runtime(cfg, pg_url)
    seed(rt, published=now - timedelta(days=1), people=people)
    logs = tmp_path / "logs"
    logs.mkdir()

    a = ServeProcess(cfg, free_port(), env, logs)
    b = ServeProcess(cfg, free_port(), env, logs)
    with serving(a, b):
        for p in (a, b):
            health = p.wait_ready()
            assert health["scheduler"]["running"] is True
            assert datetime.fromisoformat(health["scheduler"]["next_run_time"]) == slot
        assert _issue(rt) is None  # nothing before the slot
        wait_for(
            lambda: (i := _issue(rt)) is not None and i.status == IssueStatus.SENT,
            (slot - datetime.now(ZoneInfo(ZONE))).total_seconds() + 90,
            interval=0.5,
            what="the weekly issue",
        )
        # Both keep serving the web app, and both see the one issue.
        for p in (a, b):
            health = p.healthy()
            assert health is not None and health["status"] == "ok", health
            assert health["last_issue"]["deliveries"] == {DeliveryStatus.SENT: people}
            page = httpx.get(p.url + "/archive", timeout=5)
            assert page.status_code == 200 and f'href="/archive/{health["last_issue"]["week"]}"' in page.text
        assert a.terminate() == 0, a.output()
        assert b.terminate() == 0, b.output()

    issue = _issue(rt)
    assert issue is not None
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Issue)) == 1
        per_subscriber = Counter(s.scalars(select(Delivery.subscriber_id).where(Delivery.issue_id == issue.id)))
        assert len(per_subscriber) == people and set(per_subscriber.values()) == {1}
        assert set(s.scalars(select(Delivery.status))) == {DeliveryStatus.SENT}
    got = _recipients(rt.outbox_dir / issue.week)
    assert got == Counter({f"reader{i:03d}@example.com": 1 for i in range(people)})
    senders = [p for p in (a, b) if f"sending issue {issue.week}" in p.output()]
    assert len(senders) == 1, "exactly one process sent the issue"
    rt.close()


def test_serve_refuses_a_busy_port_with_one_line(tmp_path: Path, sqlite_url: str) -> None:
    cfg = write_project(tmp_path / "project")
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {"DIGEST_DATABASE_URL": sqlite_url, "DIGEST_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"}
        res = subprocess.run(
            [sys.executable, "-m", "digest", "--config", str(cfg), "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 2
    assert f"--port: cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(cfg), "serve", "--host", "no such host!"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "--host: 'no such host!'" in res.stderr and "Traceback" not in res.stderr


def test_sqlite_online_backup_while_serving_restores(tmp_path: Path, sqlite_url: str) -> None:
    """The README's procedure: `sqlite3 db ".backup copy"` while `digest serve` sends, then restore."""
    import shutil

    if shutil.which("sqlite3") is None:
        from tests.conftest import require_or_skip

        require_or_skip("no sqlite3 command (apt-get install sqlite3)", "the sqlite3 CLI")
    people = 30
    now = datetime.now(ZoneInfo(ZONE))
    slot = (now - timedelta(minutes=1)).replace(second=0, microsecond=0)
    cfg, env = _project(tmp_path / "project", sqlite_url, slot, batch_size=1, concurrency=1)
    rt = make_runtime(cfg, sqlite_url)
    seed(rt, published=now - timedelta(days=1), people=people)
    db_file = Path(sqlite_url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup" / "digest.db"
    backup.parent.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    proc = ServeProcess(cfg, free_port(), {**env, "DIGEST_TEST_SEND_DELAY": "0.1"}, logs, slow=True)
    with serving(proc):
        proc.wait_ready()
        wait_for(lambda: len(list(rt.outbox_dir.glob("*/*.eml"))) >= 5, 60, what="the send to start")
        res = subprocess.run(
            ["sqlite3", str(db_file), f".backup '{backup}'"], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
        assert proc.terminate() == 0, proc.output()
    check = subprocess.run(["sqlite3", str(backup), "PRAGMA integrity_check"], capture_output=True, text=True)
    assert check.stdout.strip() == "ok"
    rt.close()

    # Restore: the backup replaces the database (and its WAL), the service starts and finishes the send.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, db_file)
    rt = make_runtime(cfg, sqlite_url)
    issue = _issue(rt)
    assert issue is not None and issue.status == IssueStatus.SENDING  # the snapshot caught it mid-send
    again = ServeProcess(cfg, free_port(), env, logs)
    with serving(again):
        again.wait_ready()
        wait_for(lambda: (i := _issue(rt)) is not None and i.status == IssueStatus.SENT, 90, what="the resumed send")
        assert again.terminate() == 0, again.output()
    # The outbox already held the files sent after the snapshot: nobody got a second copy.
    assert _recipients(rt.outbox_dir / issue.week) == Counter({f"reader{i:03d}@example.com": 1 for i in range(people)})
    rt.close()
