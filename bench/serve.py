"""Figures for `digest serve`: start-up, archive/feed/health latency with a year of issues, slot-to-send delay, stop.

    .venv/bin/python bench/serve.py            # about 2 minutes (it waits for a real schedule slot)

SQLite in a temporary folder, outbox transport, a real `digest serve` subprocess on a free port.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.config import WEEKDAYS  # noqa: E402
from digest.cycle import send_week  # noqa: E402
from digest.weeks import Week  # noqa: E402
from subscribers.api import add_subscriber  # noqa: E402
from tests.conftest import apply_overrides, make_runtime, write_project  # noqa: E402
from tests.support_serve import PLAIN, ServeProcess, free_port, seed, wait_for  # noqa: E402

ZONE = "Europe/London"
SECRET = "bench-secret-key-0123456789"


def _item(n: int) -> dict:  # type: ignore[type-arg]
    a, b = f"Tool {n}A", f"Tool {n}B"
    return {**PLAIN, "title": f"{a} vs {b}",
            "tools": [{**PLAIN["tools"][0], "name": a}, {**PLAIN["tools"][1], "name": b}]}


def _year_of_issues(rt, weeks: int) -> None:  # type: ignore[no-untyped-def]
    from digest.ingest.json_source import parse_json_items
    from digest.ingest.store import upsert

    week = Week.parse("2025-W46")
    with rt.sessions.begin() as s:
        for i in range(3):
            add_subscriber(s, f"bench{i}@example.com", confirmed=True)
    for n in range(weeks):
        slot = week.slot(rt.settings.schedule)
        with rt.sessions.begin() as s:
            upsert(s, parse_json_items([_item(2 * n), _item(2 * n + 1)], "bench.json"),
                   default_url="https://verdicts.example.com/compare", published=slot - timedelta(days=1))
        send_week(rt, week, manual=False, now=slot + timedelta(minutes=1))
        week = week.next()


def _latency(client: httpx.Client, path: str, n: int = 200) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        resp = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code in (200, 503), (path, resp.status_code)
        size = len(resp.content)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)], size


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        now = datetime.now(ZoneInfo(ZONE))
        slot = (now + timedelta(seconds=80)).replace(second=0, microsecond=0)
        cfg = write_project(root / "project")
        cfg.write_text(apply_overrides(cfg.read_text(), {"schedule": {
            "day": WEEKDAYS[slot.weekday()], "time": f"{slot:%H:%M}", "timezone": ZONE}}))
        db = f"sqlite:///{root / 'var' / 'digest.db'}"
        rt = make_runtime(cfg, db)
        t0 = time.perf_counter()
        _year_of_issues(rt, 52)
        print(f"seeded 52 sent issues in {time.perf_counter() - t0:.1f} s")
        seed(rt, published=now - timedelta(hours=12), people=200)
        env = {"DIGEST_DATABASE_URL": db, "DIGEST_SECRET_KEY": SECRET, "DIGEST_TRANSPORT": "outbox"}
        logs = root / "logs"
        logs.mkdir()

        t0 = time.perf_counter()
        proc = ServeProcess(cfg, free_port(), env, logs)
        try:
            proc.wait_ready()
            print(f"start-up (process launch to /healthz answering): {time.perf_counter() - t0:.2f} s")
            rows = []
            with httpx.Client(base_url=proc.url, timeout=10) as client:
                last_week = client.get("/healthz").json()["last_issue"]["week"]
                for path in ("/healthz", "/healthz/live", "/archive", f"/archive/{last_week}", "/archive.xml"):
                    rows.append((path, *_latency(client, path)))
            print("\n| request (52 issues, keep-alive, 200 requests) | median | p95 | body |")
            print("| --- | --- | --- | --- |")
            for path, med, p95, size in rows:
                print(f"| `GET {path}` | {med:.1f} ms | {p95:.1f} ms | {size / 1024:.1f} KB |")

            week = Week.of(slot.date())
            wait = (slot - datetime.now(ZoneInfo(ZONE))).total_seconds()
            print(f"\nwaiting for the slot {slot:%H:%M} {ZONE} ({wait:.0f} s)")

            def sent():  # type: ignore[no-untyped-def]
                from sqlalchemy import select

                from digest.storage.models import Issue

                with rt.sessions() as s:
                    issue = s.scalar(select(Issue).where(Issue.week == week.key))
                return issue if issue is not None and issue.status == "sent" else None

            issue = wait_for(sent, 200, interval=0.05, what="the weekly issue")
            slot_utc = slot.astimezone(UTC)
            enq = issue.enqueued_at.replace(tzinfo=UTC) - slot_utc
            done = issue.sent_at.replace(tzinfo=UTC) - slot_utc
            print(f"slot to issue enqueued (feeds, select, render, enqueue 200 readers): {enq.total_seconds():.2f} s")
            print(f"slot to last of 200 mails written (outbox): {done.total_seconds():.2f} s")
            t0 = time.perf_counter()
            code = proc.terminate()
            print(f"SIGTERM to exit, idle: {time.perf_counter() - t0:.2f} s (exit status {code})")
        finally:
            proc.kill()
            rt.close()


if __name__ == "__main__":
    main()
