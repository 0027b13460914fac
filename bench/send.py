"""Sending benchmark: rate reached against a rate-limited provider, and enqueueing a million readers.

1. `digest send` mails a 5-item issue to 100,000 subscribers through the fake Resend
   (its own process) with its strict limiter at 10 requests/s (at most 10 arrivals in
   any one-second window), on PostgreSQL. Prints the rate reached as a share of the
   limit (from the fake's arrival times), the sender's CPU time per email and its peak
   memory (from the kernel's accounting of the child process).
2. Busy CPU: the same against the same limiter while two processes spin on both cores.
3. Faults: the fake answers 30 % of requests with a 500; accepted emails per second as a
   share of what the limit allows at that fault rate (limit x 70 % x 100 emails).
4. SMTP: `digest send` into an aiosmtpd server (its own process), then a bare smtplib
   loop pushing the same message bytes into the same server; messages/s of each, from
   the server's own arrival times.
5. Enqueues (freezes) an issue for 1,000,000 subscribers on PostgreSQL in a child
   process, the readers spread over 30 editions (29 topic sets of six categories, and all
   topics): time of the enqueue, of the whole freeze (selecting and compiling every
   edition too), and peak memory.

Needs PostgreSQL on 127.0.0.1:5432 (DIGEST_TEST_PG_URL as for the tests). About 7 minutes:
    .venv/bin/python bench/send.py [--send-readers N] [--rate R] [--enqueue-readers M]
        [--only quiet,busy,faults,smtp,enqueue]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from digest.ingest.schema import split_title  # noqa: E402
from digest.ingest.sources import expand  # noqa: E402
from digest.ingest.store import upsert  # noqa: E402
from digest.weeks import current_week, utcnow  # noqa: E402
from tests.conftest import PG_ADMIN_URL, SAMPLES, apply_overrides, make_runtime, write_project  # noqa: E402
from tests.fake_resend import FakeResendProcess  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
API_KEY = "re_bench_key"


def create_database() -> str:
    name = f"digest_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def project(root: Path, api_url: str, rate: float, smtp_port: int | None = None, connections: int = 4) -> Path:
    cfg = write_project(root)
    if smtp_port is not None:
        overrides = {
            "transport": {"kind": "smtp"},
            "transport.smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "connections": connections},
        }
    else:
        # max_attempts 12: at a 30 % fault rate 6 attempts fail a batch now and then (0.3^6), which would
        # end the run early and measure nothing more.
        overrides = {
            "transport": {"kind": "resend", "max_attempts": 12},
            "transport.resend": {"requests_per_second": rate},
        }
    cfg.write_text(apply_overrides(cfg.read_text(), overrides))
    return cfg


CATEGORIES = ["Developer Tools", "Open Models", "Autonomous Agents", "Image Generation", "Voice", "Search"]


def topic_sets(count: int) -> list[str]:
    """`count` distinct stored choices: "" (all topics), then single topics, pairs, triples of the categories."""
    from itertools import combinations

    from digest.ingest.schema import slugify

    keys = [slugify(c) for c in CATEGORIES]
    sets = [""] + ["+".join(sorted(c)) for n in (1, 2, 3) for c in combinations(keys, n)]
    return sets[:count]


def seed(cfg: Path, db_url: str, readers: int, editions: int = 1) -> None:
    """Fresh comparisons (a full issue; with editions, three per category) and `readers` active
    subscribers inserted by the database, spread evenly over `editions` topic choices."""
    rt = make_runtime(cfg, db_url)
    items = [item for src in expand([str(SAMPLES)]) for item in src.items or []]
    variants = []
    for n in range(5 if editions == 1 else 3 * len(CATEGORIES)):
        item = items[n % len(items)]
        a, b = split_title(item.title) or ("A", "B")
        category = CATEGORIES[n % len(CATEGORIES)]
        tools = [t.model_copy(update={"category": category}) for t in item.tools] if editions > 1 else item.tools
        variants.append(item.model_copy(update={"title": f"{a} {n + 1} vs {b}", "tools": tools}))
    with rt.sessions.begin() as s:
        upsert(s, variants, default_url=rt.settings.site.site_url + "/compare", published=utcnow() - timedelta(hours=6))
        s.execute(
            text(
                "INSERT INTO subscribers (email, name, status, created_at, confirmed_at, topics) "
                "SELECT 'reader' || g || '@example.com', 'Reader ' || g, 'active', now(), now(), "
                "(CAST(:sets AS text[]))[1 + g % :k] FROM generate_series(1, :n) AS g"
            ),
            {"n": readers, "sets": topic_sets(editions), "k": editions},
        )
        s.execute(text("ANALYZE subscribers"))
    rt.close()


def watch_peak(pid: int) -> int:
    """The child's peak resident memory (VmHWM, kB), read until it exits.

    Not ru_maxrss: on Linux that starts from the parent's size at fork, so it would
    report this benchmark's own memory, not the sender's.
    """
    peak = 0
    path = Path(f"/proc/{pid}/status")
    while True:
        try:
            fields = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
        except (FileNotFoundError, ProcessLookupError):
            return peak
        if fields.get("State", "").strip().startswith("Z"):  # exited, not yet reaped
            return peak
        peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]))
        time.sleep(0.1)


def spinners(count: int) -> list[subprocess.Popen[bytes]]:
    """Processes that keep a core busy each (at normal priority, like any other work on the box)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def run_send(cfg: Path, db_url: str, extra_env: dict[str, str]) -> tuple[str, float, float, int]:
    """`digest send` of this week's issue as a child: its output, wall time, CPU time and peak memory (kB)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "RESEND_"))},
        "PYTHONPATH": str(ROOT),
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": SECRET,
        **extra_env,
    }
    week = current_week(make_runtime(cfg, db_url).settings.schedule).key
    proc = subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(cfg), "send", "--week", week],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
    )
    started = time.perf_counter()
    peak_kb = watch_peak(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    output = proc.stdout.read() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"digest send failed:\n{output}")
    return output.strip(), wall, usage.ru_utime + usage.ru_stime, peak_kb


def send_bench(readers: int, rate: float, *, busy: int = 0, error_rate: float = 0.0) -> dict[str, float]:
    db_url = create_database()
    tmp = Path(tempfile.mkdtemp(prefix="bench-send-"))
    fake = FakeResendProcess(rate_limit=rate, api_key=API_KEY, boost=True)
    spinning: list[subprocess.Popen[bytes]] = []
    try:
        cfg = project(tmp / "project", fake.url, rate)
        t = time.perf_counter()
        seed(cfg, db_url, readers)
        print(f"seeded {readers:,} subscribers in {time.perf_counter() - t:.1f} s", flush=True)
        if error_rate:
            fake.post("/_fake/faults", {"error_rate": error_rate, "seed": 11})
        spinning = spinners(busy)
        output, wall, cpu, peak_kb = run_send(cfg, db_url, {"RESEND_API_KEY": API_KEY, "RESEND_API_URL": fake.url})
        print(output, flush=True)
        dump = fake.get("/_fake/dump")
    finally:
        for proc in spinning:
            proc.kill()
            proc.wait()
        fake.stop()
        drop_database(db_url)
    log = sorted(dump["log"], key=lambda e: e["at"])
    accepted = [e for e in log if e["outcome"].startswith("accepted")]
    admitted = [e for e in log if e["outcome"] != "rate_limited"]  # arrivals the limiter let in (incl. 500s)
    emails = len(dump["records"])
    # n requests spread over `span` seconds: (n - 1) intervals, the rate the limiter let through.
    admitted_rps = (len(admitted) - 1) / (admitted[-1]["at"] - admitted[0]["at"])
    accepted_span = accepted[-1]["at"] - accepted[0]["at"]
    emails_per_s = emails / accepted_span * (len(accepted) - 1) / len(accepted)
    allowed_emails_per_s = rate * (1 - error_rate) * 100
    return {
        "readers": readers,
        "emails_accepted": emails,
        "requests": len(log),
        "rate_limited_429": sum(1 for e in log if e["outcome"] == "rate_limited"),
        "injected_500": sum(1 for e in log if e["outcome"] == "injected_500"),
        "limit_rps": rate,
        "achieved_rps": admitted_rps,
        "share_of_limit": admitted_rps / rate,
        "emails_per_s": emails_per_s,
        "share_of_allowed_emails": emails_per_s / allowed_emails_per_s,
        "send_wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_email": cpu / emails * 1000,
        "peak_rss_mb": peak_kb / 1024,
    }


SMTP_SERVER = """
import json, signal, socket, sys, time
from aiosmtpd.controller import Controller

class Box:
    times, first = [], None
    async def handle_DATA(self, server, session, envelope):
        Box.times.append(time.time())
        if Box.first is None:
            Box.first = envelope.content
            with open(out + ".eml", "wb") as f:
                f.write(Box.first)
        return "250 2.0.0 queued"

out = sys.argv[1]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
ctl = Controller(Box(), hostname="127.0.0.1", port=port)
ctl.start()
print(port, flush=True)

def done(*_):
    ctl.stop()
    with open(out, "w") as f:
        json.dump({"times": Box.times}, f)
    sys.exit(0)

signal.signal(signal.SIGTERM, done)
signal.pause()
"""


def rate_of(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


def smtp_bench(readers: int, connections: int) -> dict[str, float]:
    """`digest send` into an aiosmtpd server, then a bare smtplib loop into the same server."""
    import smtplib

    db_url = create_database()
    tmp = Path(tempfile.mkdtemp(prefix="bench-smtp-"))
    out = tmp / "server.json"
    server = subprocess.Popen([sys.executable, "-c", SMTP_SERVER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline()) if server.stdout else 0
        cfg = project(tmp / "project", "", 1.0, smtp_port=port, connections=connections)
        seed(cfg, db_url, readers)
        output, wall, cpu, _ = run_send(cfg, db_url, {})
        print(output, flush=True)
        time.sleep(1.0)
        # The bare loop: one connection, the message the sender produced, as fast as the server takes it.
        message = Path(str(out) + ".eml").read_bytes()
        with smtplib.SMTP("127.0.0.1", port) as conn:
            for i in range(readers):
                conn.sendmail("verdicts@example.com", [f"bare{i}@example.com"], message)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        drop_database(db_url)
    times = json.loads(out.read_text())["times"]
    digest_times, bare_times = times[:readers], times[readers:]
    digest_rate, bare_rate = rate_of(digest_times), rate_of(bare_times)
    return {
        "readers": readers,
        "connections": connections,
        "digest_msgs": len(digest_times),
        "digest_rate": digest_rate,
        "bare_rate": bare_rate,
        "share": digest_rate / bare_rate,
        "message_kb": len(message) / 1024,
        "cpu_ms_per_msg": cpu / readers * 1000,
        "wall_s": wall,
    }


def enqueue_child(db_url: str, cfg: str) -> None:
    """In the child: freeze this week's issue (render + enqueue) and report timings as JSON."""
    import digest.cycle.freeze as freeze
    from digest.cycle.freeze import prepare

    rt = make_runtime(Path(cfg), db_url)
    timing: dict[str, float] = {"enqueue_s": 0.0}
    original = freeze.enqueue_editions

    def timed(session, *args, **kwargs):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        result = original(session, *args, **kwargs)
        session.flush()
        timing["enqueue_s"] += time.perf_counter() - t
        return result

    freeze.enqueue_editions = timed  # type: ignore[assignment]
    t = time.perf_counter()
    prepared = prepare(rt, current_week(rt.settings.schedule), manual=True)
    timing["freeze_s"] = time.perf_counter() - t
    timing["recipients"] = prepared.recipients
    timing["editions"] = len(prepared.plan.editions) if prepared.plan else 0
    status = Path("/proc/self/status").read_text()
    timing["peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps(timing))


def enqueue_bench(readers: int, editions: int = 30) -> dict[str, float]:
    db_url = create_database()
    tmp = Path(tempfile.mkdtemp(prefix="bench-enqueue-"))
    try:
        cfg = project(tmp / "project", "http://127.0.0.1:9", 2.0)
        t = time.perf_counter()
        seed(cfg, db_url, readers, editions)
        print(f"seeded {readers:,} subscribers over {editions} choices in {time.perf_counter() - t:.1f} s", flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child-enqueue", db_url, str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"enqueue child failed:\n{output}")
        timing = json.loads(output.strip().splitlines()[-1])
    finally:
        drop_database(db_url)
    return timing


def print_send(what: str, r: dict[str, float]) -> None:
    print(
        f"{what}: {r['readers']:,} readers at a {r['limit_rps']:g} req/s limit: {r['achieved_rps']:.2f} req/s "
        f"admitted = {r['share_of_limit'] * 100:.1f}% of the limit; {r['emails_per_s']:.0f} emails/s accepted = "
        f"{r['share_of_allowed_emails'] * 100:.1f}% of what the limit allows at this fault rate; "
        f"{r['emails_accepted']:,} accepted in {r['requests']} requests ({r['rate_limited_429']} answered 429, "
        f"{r['injected_500']} injected 500); sender CPU {r['cpu_s']:.1f} s = {r['cpu_ms_per_email']:.3f} ms/email, "
        f"peak memory {r['peak_rss_mb']:.0f} MB, wall {r['send_wall_s']:.0f} s",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--send-readers", type=int, default=100_000)
    ap.add_argument("--busy-readers", type=int, default=30_000)
    ap.add_argument("--fault-readers", type=int, default=30_000)
    ap.add_argument("--smtp-readers", type=int, default=5_000)
    ap.add_argument("--smtp-connections", type=int, default=4)
    ap.add_argument("--rate", type=float, default=10.0, help="the fake provider's limit, requests/s")
    ap.add_argument("--enqueue-readers", type=int, default=1_000_000)
    ap.add_argument("--editions", type=int, default=30, help="Topic choices the enqueued readers are spread over.")
    ap.add_argument("--only", default="quiet,busy,faults,smtp,enqueue")
    ap.add_argument("--child-enqueue", nargs=2, metavar=("DB_URL", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_enqueue:
        enqueue_child(*args.child_enqueue)
        return
    only = set(args.only.split(","))
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores; load average {load[0]:.1f} {load[1]:.1f}; PostgreSQL at "
        f"{PG_ADMIN_URL.rsplit('@', 1)[-1]}",
        flush=True,
    )
    if "quiet" in only:
        print_send("quiet", send_bench(args.send_readers, args.rate))
    if "busy" in only:
        print_send("both cores busy (2 spinning processes)", send_bench(args.busy_readers, args.rate, busy=2))
    if "faults" in only:
        print_send("30% transient faults (500)", send_bench(args.fault_readers, args.rate, error_rate=0.3))
    if "smtp" in only:
        r = smtp_bench(args.smtp_readers, args.smtp_connections)
        print(
            f"smtp: {r['digest_msgs']:,} messages of {r['message_kb']:.0f} KB into aiosmtpd: digest send "
            f"({r['connections']} connections) {r['digest_rate']:.0f} msgs/s, bare smtplib loop (one connection, "
            f"prebuilt bytes) {r['bare_rate']:.0f} msgs/s: {r['share'] * 100:.0f}%; sender CPU "
            f"{r['cpu_ms_per_msg']:.2f} ms/message, wall {r['wall_s']:.0f} s",
            flush=True,
        )
    if "enqueue" in only:
        e = enqueue_bench(args.enqueue_readers, args.editions)
        print(
            f"enqueue {int(e['recipients']):,} readers in {int(e['editions'])} editions on PostgreSQL: "
            f"{e['enqueue_s']:.1f} s (whole freeze incl. selecting and compiling every edition "
            f"{e['freeze_s']:.1f} s), peak memory {e['peak_rss_mb']:.0f} MB",
            flush=True,
        )


if __name__ == "__main__":
    main()
