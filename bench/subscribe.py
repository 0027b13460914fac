"""Sign-up throughput and latency with real uvicorn, on SQLite and PostgreSQL.

    .venv/bin/python bench/subscribe.py [--db sqlite|postgresql|both] [--seconds 10]
                                        [--rate 500] [--connections 16] [--workers 2]
    .venv/bin/python bench/subscribe.py --new-vs-known [--rounds 400] [--workers 1]

For each database it starts `uvicorn --factory digest.web.asgi:make_app` on a fresh
database (rate limits raised in its own config.toml; everything else as shipped), warms
up for 2 s, then:

  1. open loop: sign-ups arrive at a fixed `--rate` per second (spread over the
     connections) for `--seconds`; latency counts from each request's scheduled start,
     so a stall counts for everything queued behind it: what a visitor sees at that load;
  2. closed loop: `--connections` keep-alive clients post sign-ups back to back for
     `--seconds`: the most the server takes;

and finally waits until the confirmation queue in the database is empty (the server's
drainers render and write every confirmation to the outbox). Each sign-up is a JSON POST
with a new address, answered after its transaction commits; the confirmation is only
queued. The load generator is a small asyncio HTTP/1.1 client in this process (its own
garbage collector off, so its pauses do not count as server latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("DIGEST_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000 if xs else float("nan")

    def line(self, label: str) -> str:
        bad = {k: v for k, v in self.statuses.items() if k != 200}
        return (
            f"{label:28} {self.count:7d} sign-ups in {self.seconds:5.1f} s = {self.count / self.seconds:7.0f}/s   "
            f"p50 {self.pct(50):6.1f} ms   p99 {self.pct(99):6.1f} ms   max {max(self.latencies) * 1000:6.1f} ms"
            + (f"   non-200: {bad}" if bad else "")
        )


class Conn:
    """One keep-alive HTTP/1.1 connection that posts JSON sign-ups."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def signup(self, address: str) -> int:
        assert self.reader and self.writer
        body = json.dumps({"email": address, "source": "bench"}).encode()
        head = (
            f"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nUser-Agent: bench/1\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        if self.writer:
            self.writer.close()


async def open_all(conns: list[Conn]) -> None:
    """Connect one at a time: uvicorn workers share one listening socket, and a burst of
    connects is taken whole by whichever worker wakes first, leaving the others idle.
    Spacing them lets every worker take its share, as many independent visitors would."""
    for c in conns:
        await c.open()
        await asyncio.sleep(0.01)


async def closed_loop(port: int, connections: int, seconds: float, prefix: str) -> Run:
    run = Run()
    conns = [Conn(port) for _ in range(connections)]
    await open_all(conns)
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker(conn: Conn) -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            status = await conn.signup(f"{prefix}{next(counter)}@bench.example.com")
            run.latencies.append(time.perf_counter() - t0)
            run.statuses[status] = run.statuses.get(status, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    run.seconds = time.perf_counter() - t0
    for c in conns:
        c.close()
    return run


async def open_loop(port: int, connections: int, rate: float, seconds: float, prefix: str) -> Run:
    """Requests start on a fixed schedule; latency is measured from the scheduled start (no coordinated omission)."""
    run = Run()
    conns = [Conn(port) for _ in range(connections)]
    await open_all(conns)
    free: asyncio.Queue[Conn] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []

    async def one(i: int, due: float) -> None:
        conn = await free.get()
        try:
            status = await conn.signup(f"{prefix}{i}@bench.example.com")
        finally:
            free.put_nowait(conn)
        run.latencies.append(time.perf_counter() - due)
        run.statuses[status] = run.statuses.get(status, 0) + 1

    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    run.seconds = time.perf_counter() - start
    for c in conns:
        c.close()
    return run


async def new_vs_known(port: int, rounds: int, gap: float) -> dict[str, list[float]]:
    """Does a sign-up for a new address cost the server more than one for a known address?

    A new address queues a confirmation; a known one (signed up moments ago) changes nothing.
    If the confirmation were rendered in the request process, the answer, or the request
    right after it, would be slower, and anyone could tell who is on the list by timing.
    Each round: one sign-up (new or known, in random order), then at once a probe (a known
    address), then a pause of `gap` s. One keep-alive connection, requests one at a time."""
    import random

    rng = random.Random(7)
    conn = Conn(port)
    await conn.open()
    known = [f"known{i}@bench.example.com" for i in range(50)]
    for address in known:  # now pending, confirmation sent: a repeat changes nothing for 10 minutes
        await conn.signup(address)
    await asyncio.sleep(3.0)  # let the drainer send those confirmations
    out: dict[str, list[float]] = {"new": [], "known": [], "probe after new": [], "probe after known": []}
    for i in range(rounds):
        kind = rng.choice(("new", "known"))
        address = f"new{i}-{uuid.uuid4().hex[:6]}@bench.example.com" if kind == "new" else rng.choice(known)
        t0 = time.perf_counter()
        await conn.signup(address)
        t1 = time.perf_counter()
        await conn.signup(rng.choice(known))
        t2 = time.perf_counter()
        out[kind].append(t1 - t0)
        out[f"probe after {kind}"].append(t2 - t1)
        await asyncio.sleep(gap)
    conn.close()
    return out


def report_new_vs_known(result: dict[str, list[float]]) -> None:
    import statistics

    for label, xs in result.items():
        xs = sorted(xs)
        print(
            f"  {label:18} n={len(xs):4d}  median {statistics.median(xs) * 1000:6.2f} ms   "
            f"p90 {xs[int(0.9 * len(xs))] * 1000:6.2f} ms",
            flush=True,
        )


def make_db(kind: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'var' / 'digest.db'}", lambda: None
    from sqlalchemy import create_engine, text

    name = f"digest_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", drop


def write_config(tmp: Path, port: int) -> Path:
    text = (ROOT / "config.toml").read_text()
    text = text.replace('dir = "templates/email"', f'dir = "{ROOT / "templates" / "email"}"')
    text = text.replace('public_url = "http://127.0.0.1:8000"', f'public_url = "http://127.0.0.1:{port}"')
    text = text.replace("per_ip_per_minute = 10 ", "per_ip_per_minute = 100000000 ")
    text = text.replace("per_ip_per_hour = 30 ", "per_ip_per_hour = 100000000 ")
    text = text.replace("per_address_per_hour = 5 ", "per_address_per_hour = 1000 ")
    # Every bench address is @bench.example.com: the confirmation caps would soon mail nothing.
    text = text.replace("confirmations_per_domain_per_hour = 100 ", "confirmations_per_domain_per_hour = 100000000 ")
    text = text.replace("confirmations_per_hour = 500 ", "confirmations_per_hour = 100000000 ")
    assert text.count("100000000") == 4 and "= 1000 " in text, "config.toml layout changed: update bench/subscribe.py"
    path = tmp / "config.toml"
    path.write_text(text)
    return path


def queue_depth(db_url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from digest.storage.db import make_engine
    from digest.storage.models import MailStatus, OutgoingMail

    engine = make_engine(db_url)
    with engine.connect() as c:
        queued = c.scalar(
            select(func.count()).select_from(OutgoingMail).where(OutgoingMail.status == MailStatus.QUEUED)
        )
        total = c.scalar(select(func.count()).select_from(OutgoingMail))
    engine.dispose()
    return int(queued or 0), int(total or 0)


def bench(kind: str, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-subscribe-{kind}-"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    cfg = write_config(tmp, port)
    db_url, drop = make_db(kind, tmp)
    env = {
        **os.environ,
        "DIGEST_CONFIG": str(cfg),
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": "bench-secret-key-0123456789",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    from digest.config import load_config
    from digest.runtime import open_runtime

    open_runtime(load_config(cfg, env=env)).close()  # migrate once, before the workers start
    # --host/--port rather than --fd: uvicorn treats an inherited fd as a Unix socket and then
    # leaves Nagle's algorithm on, which adds 40 ms delayed-ACK stalls to every response.
    sock.close()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        os.environ.get("BENCH_FACTORY", "digest.web.asgi:make_app"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--workers",
        str(args.workers),
    ]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"GET /subscribe/thanks HTTP/1.0\r\n\r\n")
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("uvicorn did not start")
            time.sleep(0.2)
        print(f"\n== {kind}: uvicorn, {args.workers} worker(s), {os.cpu_count()} cores ==", flush=True)
        if args.new_vs_known:
            report_new_vs_known(asyncio.run(new_vs_known(port, args.rounds, args.gap)))
            return
        asyncio.run(closed_loop(port, args.connections, 2.0, "warm"))  # warm-up (not reported)
        queued, _ = queue_depth(db_url)
        opened = asyncio.run(open_loop(port, args.connections, args.rate, args.seconds, "o"))
        print(opened.line(f"open loop at {args.rate:.0f}/s"), flush=True)
        closed = asyncio.run(closed_loop(port, args.connections, args.seconds, "c"))
        print(closed.line(f"closed loop, {args.connections} conns"), flush=True)
        t0 = time.perf_counter()
        queued, total = queue_depth(db_url)
        print(f"confirmation queue when the load stopped: {queued} of {total} still to send", flush=True)
        while queued:
            time.sleep(0.5)
            queued, _ = queue_depth(db_url)
            if time.perf_counter() - t0 > args.drain_timeout:
                print(f"drain: gave up waiting after {args.drain_timeout:.0f} s")
                break
        print(f"queue empty {time.perf_counter() - t0:.1f} s after the load stopped", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        drop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    import gc
    import signal

    gc.disable()  # the load generator's own GC pauses would count as server latency

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (stop uvicorn, drop the DB)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=500.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers (one per core)")
    ap.add_argument("--drain-timeout", type=float, default=600.0, help="seconds to wait for the queue to empty")
    ap.add_argument(
        "--new-vs-known",
        action="store_true",
        help="compare the latency of sign-ups for new and known addresses (and of the request after)",
    )
    ap.add_argument("--rounds", type=int, default=400, help="--new-vs-known: sign-ups to time")
    ap.add_argument("--gap", type=float, default=0.05, help="--new-vs-known: pause between rounds (s)")
    args = ap.parse_args()
    for kind in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        bench(kind, args)


if __name__ == "__main__":
    main()
