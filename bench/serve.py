"""Figures for `digest serve`: start-up, archive/feed/health latency with a year of issues, slot-to-send delay, stop.

    .venv/bin/python bench/serve.py            # about 2 minutes (it waits for a real schedule slot)
    .venv/bin/python bench/serve.py --clicks [--db sqlite|postgresql|both] [--seconds 10] [--rate 2000]

SQLite in a temporary folder, outbox transport, a real `digest serve` subprocess on a free port.

`--clicks` measures the tracked-link redirect (`GET /c/<token>`) on real uvicorn (one worker,
as `digest serve` runs it): an issue is sent to 200 readers, their tokens are followed in
random order by keep-alive clients in this process (an asyncio HTTP/1.1 client, its garbage
collector off): an open loop at `--rate` requests/s (latency from each request's scheduled
start, so a stall counts for everything behind it) and a closed loop (the most it takes).
Then the server is stopped with SIGTERM and every click must be in the database.
"""

from __future__ import annotations

import asyncio
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
from digest.cycle.send import send_week  # noqa: E402
from digest.weeks import Week  # noqa: E402
from subscribers.api import add_subscriber  # noqa: E402
from tests.conftest import apply_overrides, make_runtime, write_project  # noqa: E402
from tests.support_serve import PLAIN, ServeProcess, free_port, seed, wait_for  # noqa: E402

ZONE = "Europe/London"
SECRET = "bench-secret-key-0123456789"


def _item(n: int) -> dict:  # type: ignore[type-arg]
    a, b = f"Tool {n}A", f"Tool {n}B"
    return {
        **PLAIN,
        "title": f"{a} vs {b}",
        "tools": [{**PLAIN["tools"][0], "name": a}, {**PLAIN["tools"][1], "name": b}],
    }


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
            upsert(
                s,
                parse_json_items([_item(2 * n), _item(2 * n + 1)], "bench.json"),
                default_url="https://verdicts.example.com/compare",
                published=slot - timedelta(days=1),
            )
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


class _Conn:
    """One keep-alive HTTP/1.1 connection that follows tracked links."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, path: str) -> int:
        assert self.reader and self.writer
        self.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUser-Agent: Mozilla/5.0 "
            f"(X11; Linux x86_64) Firefox/128.0\r\n\r\n".encode()
        )
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer:
            self.writer.close()


async def _click_load(
    port: int, paths: list[str], connections: int, seconds: float, rate: float | None
) -> tuple[list[float], dict[int, int], float]:
    """Closed loop (rate None) or open loop at `rate`/s; returns latencies (s), statuses, duration."""
    conns = [_Conn(port) for _ in range(connections)]
    for c in conns:
        await c.open()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))

    def record(status: int, since: float) -> None:
        latencies.append(time.perf_counter() - since)
        statuses[status] = statuses.get(status, 0) + 1

    start = time.perf_counter()
    if rate is None:
        stop = start + seconds

        async def worker(conn: _Conn) -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                record(await conn.get(paths[next(counter) % len(paths)]), t0)

        await asyncio.gather(*(worker(c) for c in conns))
    else:
        free: asyncio.Queue[_Conn] = asyncio.Queue()
        for c in conns:
            free.put_nowait(c)
        tasks = []

        async def one(i: int, due: float) -> None:
            conn = await free.get()
            try:
                status = await conn.get(paths[i % len(paths)])
            finally:
                free.put_nowait(conn)
            record(status, due)

        for i in range(int(rate * seconds)):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    duration = time.perf_counter() - start
    for c in conns:
        c.close()
    return latencies, statuses, duration


def _line(label: str, latencies: list[float], statuses: dict[int, int], duration: float) -> str:
    xs = sorted(latencies)

    def pct(p: float) -> float:
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

    other = {k: v for k, v in statuses.items() if k != 302}
    return (
        f"| {label} | {len(xs) / duration:,.0f}/s | {pct(50):.1f} ms | {pct(99):.1f} ms | {xs[-1] * 1000:.1f} ms |"
        + (f" non-302: {other}" if other else "")
    )


def clicks_bench(kind: str, seconds: float, rate: float, connections: int) -> None:
    import gc
    import os
    import random
    import socket
    import subprocess

    from sqlalchemy import func, select, update

    from bench.subscribe import make_db, write_config
    from digest.links import ClickTokens, Tokens
    from digest.storage.models import Click, Delivery, Edition, Issue, Subscriber
    from tests.support_editions import seed_categories

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-clicks-{kind}-"))
    port = free_port()
    cfg = write_config(tmp, port)
    (tmp / "samples").symlink_to(ROOT / "samples")
    db_url, drop = make_db(kind, tmp)
    env = {
        **os.environ,
        "DIGEST_CONFIG": str(cfg),
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_TRANSPORT": "outbox",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    rt = make_runtime(cfg, db_url)
    proc = None
    try:
        now = datetime.now(UTC)
        seed(rt, published=now - timedelta(hours=12), people=200)
        seed_categories(rt, now - timedelta(hours=12))  # comparisons in three categories (the samples have one)
        with rt.sessions.begin() as s:  # half the readers chose one topic: two editions, each with its own links
            ids = list(s.scalars(select(Subscriber.id).order_by(Subscriber.id)))
            s.execute(update(Subscriber).where(Subscriber.id.in_(ids[::2])).values(topics="open-models"))
        result = send_week(rt, Week.of(now.date()), manual=True, now=now)
        assert result.summary is not None and result.summary.sent == 200
        tokens = ClickTokens(Tokens(SECRET))
        with rt.sessions() as s:
            issue = s.scalar(select(Issue).order_by(Issue.id.desc()).limit(1))
            assert issue is not None and issue.main_edition is not None and issue.main_edition.links
            counts = {
                e: len(links or [])
                for e, links in s.execute(select(Edition.id, Edition.links).where(Edition.issue_id == issue.id))
            }
            assert len(counts) == 2 and all(counts.values()), counts
            # Each reader's tokens name their delivery's edition, as in the emails sent.
            paths = [
                f"/c/{t}"
                for d, e in s.execute(select(Delivery.id, Delivery.edition_id).where(Delivery.issue_id == issue.id))
                for t in tokens.for_message(issue.id, d, counts[e], edition_id=e)
            ]
        random.Random(1).shuffle(paths)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "digest.web.asgi:make_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            cwd=tmp,
        )
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"GET /healthz/live HTTP/1.0\r\n\r\n")
                    if sock.recv(12).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("uvicorn did not start")
            time.sleep(0.2)
        gc.disable()
        load = os.getloadavg()
        print(
            f"\n== {kind}: GET /c/<token> on uvicorn (1 worker), {len(paths)} different links, "
            f"{connections} keep-alive connections; load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} =="
        )
        warm = asyncio.run(_click_load(port, paths, connections, 2.0, None))  # warm-up (not reported)
        print("| load | requests/s | p50 | p99 | max |")
        print("| --- | --- | --- | --- | --- |")
        opened = asyncio.run(_click_load(port, paths, connections, seconds, rate))
        print(_line(f"open loop at {rate:,.0f}/s, {seconds:.0f} s", *opened), flush=True)
        closed = asyncio.run(_click_load(port, paths, connections, seconds, None))
        print(_line(f"closed loop, {connections} connections", *closed), flush=True)
        answered = sum(run[1].get(302, 0) for run in (warm, opened, closed))
        gc.enable()
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        proc.terminate()  # SIGTERM: uvicorn shuts down and the recorder writes what is queued
        proc.wait(timeout=60)
        with rt.sessions() as s:
            recorded = int(s.scalar(select(func.sum(Click.hits))) or 0)  # requests (repeats share a row)
        print(
            f"clicks in the database after SIGTERM: {recorded:,} of {answered:,} redirects answered"
            + (" (none lost)" if recorded == answered else " (LOST SOME)")
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        rt.close()
        drop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", action="store_true", help="measure the tracked-link redirect instead")
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    if args.clicks:
        for kind in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
            clicks_bench(kind, args.seconds, args.rate, args.connections)
        return
    schedule_bench()


def schedule_bench() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        now = datetime.now(ZoneInfo(ZONE))
        slot = (now + timedelta(seconds=80)).replace(second=0, microsecond=0)
        cfg = write_project(root / "project")
        cfg.write_text(
            apply_overrides(
                cfg.read_text(),
                {"schedule": {"day": WEEKDAYS[slot.weekday()], "time": f"{slot:%H:%M}", "timezone": ZONE}},
            )
        )
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
