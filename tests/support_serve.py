"""Helpers for the serve, schedule and archive tests.

Run as a module it is `digest` with a slow outbox transport (DIGEST_TEST_SEND_DELAY
seconds per batch), so a test can stop `digest serve` in the middle of a send. The
delay exists only here, never in the product.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from digest.cycle.send import send_week
from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.runtime import Runtime
from digest.storage.models import Delivery, Issue
from digest.weeks import Week, utcnow
from subscribers.api import add_subscriber
from tests.conftest import apply_overrides, make_runtime, write_project

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "comparisons"


def seed(rt: Runtime, published: datetime, people: int = 3, extra: list[dict[str, Any]] | None = None) -> None:
    """The sample comparisons (plus `extra` JSON items) published at `published`, and confirmed readers."""
    with rt.sessions.begin() as s:
        for src in expand([str(SAMPLES)]):
            upsert(s, src.items or [], default_url="https://verdicts.example.com/compare", published=published)
        if extra:
            from digest.ingest.json_source import parse_json_items

            upsert(
                s,
                parse_json_items(extra, "extra.json"),
                default_url="https://verdicts.example.com/compare",
                published=published,
            )
        for i in range(people):
            add_subscriber(s, f"reader{i:03d}@example.com", name=f"Reader {i}", confirmed=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, Any] | None]:
    import httpx

    try:
        resp = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return 0, None
    try:
        return resp.status_code, resp.json()
    except ValueError:
        return resp.status_code, None


class ServeProcess:
    """`digest serve` as a real subprocess, its output in files (a full pipe would block it)."""

    def __init__(self, config: Path, port: int, env: dict[str, str], logs: Path, *, slow: bool = False):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.out_path = logs / f"serve-{port}.out"
        self.err_path = logs / f"serve-{port}.err"
        module = "tests.support_serve" if slow else "digest"
        cmd = [sys.executable, "-m", module, "--config", str(config), "serve", "--port", str(port)]
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        full_env.pop("DIGEST_DEBUG", None)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=err)

    def healthy(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"digest serve exited with {self.proc.returncode}:\n{self.output()}")
        status, body = get_json(self.url + "/healthz")
        return body if status in (200, 503) and body else None

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        return wait_for(self.healthy, timeout, what=f"digest serve on port {self.port}")

    def terminate(self, timeout: float = 60) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"digest serve did not stop within {timeout}s:\n{self.output()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")


@contextmanager
def serving(*procs: ServeProcess) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.kill()


# -- an archive with two sent issues (one with hostile markup), a draft and a skipped week -----

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)  # Wednesday of 2026-W47
EVIL_A = "<script>alert(1)</script> & Co"
EVIL_B = '"Quoted" <b>Tool</b>'
EVIL = {
    "title": f"{EVIL_A} vs {EVIL_B}",
    "intro": "Intro <img src=x onerror=alert(2)>",
    "community_votes": 50,
    "tools": [
        {
            "category": "Dev <i>Tools</i>",
            "name": EVIL_A,
            "tagline": "tag <u>x</u>",
            "panel_ship": 100,
            "community": 90,
            "price": "Free",
            "description": "desc <svg onload=alert(3)>",
        },
        {
            "category": "Dev",
            "name": EVIL_B,
            "tagline": "t",
            "panel_ship": 100,
            "community": 80,
            "price": "$5",
            "description": "d",
        },
    ],
    "quotes": [
        {"tool": "a", "reviewer": 1, "text": "Great <script>alert(4)</script> tool."},
        {"tool": "b", "reviewer": 1, "text": "Meh."},
    ],
}


PLAIN = {
    "title": "Alpha Notes vs Beta Notes",
    "intro": "Two note takers.",
    "community_votes": 10,
    "tools": [
        {
            "category": "Notes",
            "name": "Alpha Notes",
            "tagline": "a",
            "panel_ship": 70,
            "community": 50,
            "price": "Free",
            "description": "a",
        },
        {
            "category": "Notes",
            "name": "Beta Notes",
            "tagline": "b",
            "panel_ship": 60,
            "community": 40,
            "price": "Free",
            "description": "b",
        },
    ],
    "quotes": [{"tool": "a", "reviewer": 1, "text": "Fine."}, {"tool": "b", "reviewer": 1, "text": "Also fine."}],
}


def send_issue(rt: Runtime, week: str, now: datetime) -> None:
    result = send_week(rt, Week.parse(week), manual=True, now=now)
    assert result.summary is not None and result.summary.sent > 0


@dataclass
class ServedProject:
    """A project whose `public_url` is a free port on 127.0.0.1, for `digest serve` on that port."""

    cfg: Path
    port: int
    env: dict[str, str]
    rt: Runtime

    @contextmanager
    def serve(self, logs: Path) -> Iterator[ServeProcess]:
        """`digest serve` running and healthy; the caller stops it (`terminate`) to read what it wrote."""
        logs.mkdir(exist_ok=True)
        server = ServeProcess(self.cfg, self.port, self.env, logs)
        with serving(server):
            server.wait_ready()
            yield server


def served_project(root: Path, db_url: str, secret: str, **overrides: dict[str, Any]) -> ServedProject:
    """A project under `root` on `db_url` (outbox transport), with `overrides` tables applied to config.toml."""
    port = free_port()
    cfg = write_project(root / "project")
    cfg.write_text(apply_overrides(cfg.read_text(), {"site": {"public_url": f"http://127.0.0.1:{port}"}, **overrides}))
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": secret, "DIGEST_TRANSPORT": "outbox"}
    return ServedProject(cfg, port, env, make_runtime(cfg, db_url, DIGEST_SECRET_KEY=secret))


@dataclass
class SentIssue:
    now: datetime
    week: str
    issue_id: int
    deliveries: dict[str, int]  # address -> delivery id
    links: list[dict[str, Any]]  # the frozen links


def send_this_week(rt: Runtime, people: int = 3) -> SentIssue:
    """Comparisons published yesterday, `people` readers (reader000@example.com, ...), this week's issue sent."""
    now = utcnow()
    seed(rt, now - timedelta(days=1), people=people)
    week = Week.of(now).key
    send_issue(rt, week, now)
    with rt.sessions() as s:
        issue = s.scalars(select(Issue).where(Issue.week == week)).one()
        deliveries = {
            address: int(did)
            for did, address in s.execute(select(Delivery.id, Delivery.email).where(Delivery.issue_id == issue.id))
        }
        main = issue.main_edition
        return SentIssue(now, week, issue.id, deliveries, list((main.links if main is not None else None) or []))


def mail_to(outbox: Path, address: str) -> Path:
    """The outbox file of the mail sent to `address` (one is expected)."""
    for f in outbox.rglob("*.eml"):
        msg = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        if str(msg["To"]).strip().lower() == address:
            return f
    raise AssertionError(f"no mail to {address} in {outbox}")


def html_of(path: Path) -> str:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def stats_cli(cfg: Path, env: dict[str, str], week: str, *extra: str) -> str:
    """`digest stats --week <week> ...` as an operator runs it; its standard output."""
    proc = subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(cfg), "stats", "--week", week, *extra],
        cwd=ROOT,
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def make_archive(rt: Runtime) -> Runtime:
    """Sent issues 2026-W46 and 2026-W47 (W47 holds hostile markup), a draft W48 and a skipped W45."""
    from digest.storage.models import MAIN_EDITION_KEY, Edition, Frequency, Issue, IssueStatus

    seed(rt, NOW - timedelta(days=8), people=3)
    send_issue(rt, "2026-W46", NOW - timedelta(days=7))
    seed(rt, NOW - timedelta(days=1), people=3, extra=[EVIL, PLAIN])
    send_issue(rt, "2026-W47", NOW)
    with rt.sessions.begin() as s:
        draft = Issue(week="2026-W48", status=IssueStatus.DRAFT, pins=[], excludes=[])
        s.add(draft)
        s.flush()  # content a draft never has, to show the archive would not list it if it had
        s.add(
            Edition(
                issue_id=draft.id,
                key=MAIN_EDITION_KEY,
                label="All topics, weekly",
                frequency=Frequency.WEEKLY,
                topics=[],
                subject="DRAFT-SUBJECT",
            )
        )
        s.add(Issue(week="2026-W45", status=IssueStatus.SKIPPED, pins=[], excludes=[], skip_reason="too few"))
    return rt


def _slow_main() -> None:
    delay = float(os.environ.get("DIGEST_TEST_SEND_DELAY", "0") or 0)
    if delay > 0:
        from digest.providers.outbox import transport as outbox

        original = outbox.OutboxTransport.send_batch

        def slow_send_batch(self, emails, idempotency_key, folder):  # type: ignore[no-untyped-def]
            time.sleep(delay)
            return original(self, emails, idempotency_key, folder)

        outbox.OutboxTransport.send_batch = slow_send_batch  # type: ignore[method-assign]
    from digest.cli import main

    sys.argv[0] = "digest"
    main()


def minutes_from_now(delta: timedelta, zone: str) -> tuple[str, str, datetime]:
    """(weekday, HH:MM, the slot as an aware datetime) for a slot on the minute around now + delta."""
    from zoneinfo import ZoneInfo

    from digest.config import WEEKDAYS

    local = (datetime.now(ZoneInfo(zone)) + delta).replace(second=0, microsecond=0)
    return WEEKDAYS[local.weekday()], f"{local:%H:%M}", local


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


if __name__ == "__main__":
    _slow_main()
