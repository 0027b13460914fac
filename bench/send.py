"""Sending benchmark: rate reached against a rate-limited provider, and enqueueing a million readers.

1. `digest send` mails a 5-item issue to 100,000 subscribers through the fake Resend
   (its own process) limited to 10 requests/s, on PostgreSQL. Prints the rate reached
   as a share of the limit (from the fake's arrival times), the sender's CPU time per
   email and its peak memory (from the kernel's accounting of the child process).
2. Enqueues (freezes) an issue for 1,000,000 subscribers on PostgreSQL in a child
   process: time of the enqueue, of the whole freeze, and peak memory.

Needs PostgreSQL on 127.0.0.1:5432 (DIGEST_TEST_PG_URL as for the tests). About 3 minutes:
    .venv/bin/python bench/send.py [--send-readers N] [--rate R] [--enqueue-readers M]
"""

from __future__ import annotations

import argparse
import json
import os
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


def project(root: Path, api_url: str, rate: float) -> Path:
    cfg = write_project(root)
    cfg.write_text(apply_overrides(cfg.read_text(), {"transport": {"kind": "resend"},
                                                     "resend": {"requests_per_second": rate}}))
    return cfg


def seed(cfg: Path, db_url: str, readers: int) -> None:
    """Five fresh comparisons (a full issue) and `readers` active subscribers, inserted by the database."""
    rt = make_runtime(cfg, db_url)
    items = [item for src in expand([str(SAMPLES)]) for item in src.items or []]
    variants = []
    for n in range(5):
        item = items[n % len(items)]
        a, b = split_title(item.title) or ("A", "B")
        variants.append(item.model_copy(update={"title": f"{a} {n + 1} vs {b}"}))
    with rt.sessions.begin() as s:
        upsert(s, variants, default_url=rt.settings.site.site_url + "/compare", published=utcnow() - timedelta(hours=6))
        s.execute(text(
            "INSERT INTO subscribers (email, name, status, created_at, confirmed_at) "
            "SELECT 'reader' || g || '@example.com', 'Reader ' || g, 'active', now(), now() "
            "FROM generate_series(1, :n) AS g"), {"n": readers})
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


def send_bench(readers: int, rate: float) -> dict[str, float]:
    db_url = create_database()
    tmp = Path(tempfile.mkdtemp(prefix="bench-send-"))
    fake = FakeResendProcess(rate_limit=rate, api_key=API_KEY, boost=True)
    try:
        cfg = project(tmp / "project", fake.url, rate)
        t = time.perf_counter()
        seed(cfg, db_url, readers)
        print(f"seeded {readers:,} subscribers in {time.perf_counter() - t:.1f} s", flush=True)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "RESEND_"))},
               "PYTHONPATH": str(ROOT), "DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET,
               "RESEND_API_KEY": API_KEY, "RESEND_API_URL": fake.url}
        week = current_week(make_runtime(cfg, db_url).settings.schedule).key
        proc = subprocess.Popen([sys.executable, "-m", "digest", "--config", str(cfg), "send", "--week", week],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
        started = time.perf_counter()
        peak_kb = watch_peak(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        output = proc.stdout.read() if proc.stdout else ""
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"digest send failed:\n{output}")
        print(output.strip(), flush=True)
        dump = fake.get("/_fake/dump")
    finally:
        fake.stop()
        drop_database(db_url)
    log = sorted(dump["log"], key=lambda e: e["at"])
    accepted = [e for e in log if e["outcome"].startswith("accepted")]
    emails = len(dump["records"])
    span = accepted[-1]["at"] - accepted[0]["at"]
    # n requests spread over `span` seconds: (n - 1) intervals, the rate the limiter let through.
    req_rate = (len(accepted) - 1) / span
    cpu = usage.ru_utime + usage.ru_stime
    return {"readers": readers, "emails_accepted": emails, "requests": len(log), "rate_limited_429": sum(
        1 for e in log if e["status"] == 429), "limit_rps": rate, "achieved_rps": req_rate,
        "share_of_limit": req_rate / rate, "emails_per_s": req_rate * emails / len(accepted),
        "send_wall_s": wall, "cpu_s": cpu, "cpu_ms_per_email": cpu / emails * 1000,
        "peak_rss_mb": peak_kb / 1024}


def enqueue_child(db_url: str, cfg: str) -> None:
    """In the child: freeze this week's issue (render + enqueue) and report timings as JSON."""
    from digest.cycle import prepare
    from digest.delivery import enqueue

    rt = make_runtime(Path(cfg), db_url)
    timing: dict[str, float] = {}
    original = enqueue.enqueue_issue

    def timed(session, issue_id, batch_size):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        count = original(session, issue_id, batch_size)
        session.flush()
        timing["enqueue_s"] = time.perf_counter() - t
        return count

    import digest.cycle as cycle

    cycle.enqueue_issue = timed  # type: ignore[assignment]
    t = time.perf_counter()
    prepared = prepare(rt, current_week(rt.settings.schedule), manual=True)
    timing["freeze_s"] = time.perf_counter() - t
    timing["recipients"] = prepared.recipients
    status = Path("/proc/self/status").read_text()
    timing["peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps(timing))


def enqueue_bench(readers: int) -> dict[str, float]:
    db_url = create_database()
    tmp = Path(tempfile.mkdtemp(prefix="bench-enqueue-"))
    try:
        cfg = project(tmp / "project", "http://127.0.0.1:9", 2.0)
        t = time.perf_counter()
        seed(cfg, db_url, readers)
        print(f"seeded {readers:,} subscribers in {time.perf_counter() - t:.1f} s", flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, __file__, "--child-enqueue", db_url, str(cfg)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, text=True)
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"enqueue child failed:\n{output}")
        timing = json.loads(output.strip().splitlines()[-1])
    finally:
        drop_database(db_url)
    return timing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--send-readers", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=10.0, help="the fake provider's limit, requests/s")
    ap.add_argument("--enqueue-readers", type=int, default=1_000_000)
    ap.add_argument("--skip-send", action="store_true")
    ap.add_argument("--skip-enqueue", action="store_true")
    ap.add_argument("--child-enqueue", nargs=2, metavar=("DB_URL", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_enqueue:
        enqueue_child(*args.child_enqueue)
        return
    print(f"machine: {os.cpu_count()} cores; PostgreSQL at {PG_ADMIN_URL.rsplit('@', 1)[-1]}", flush=True)
    if not args.skip_send:
        r = send_bench(args.send_readers, args.rate)
        print(f"send {r['readers']:,} readers at a {r['limit_rps']:g} req/s limit: {r['achieved_rps']:.2f} req/s = "
              f"{r['share_of_limit'] * 100:.1f}% of the limit ({r['emails_per_s']:.0f} emails/s), "
              f"{r['emails_accepted']:,} accepted in {r['requests']} requests ({r['rate_limited_429']} answered 429); "
              f"sender CPU {r['cpu_s']:.1f} s = {r['cpu_ms_per_email']:.3f} ms/email, peak memory "
              f"{r['peak_rss_mb']:.0f} MB, wall {r['send_wall_s']:.0f} s", flush=True)
    if not args.skip_enqueue:
        e = enqueue_bench(args.enqueue_readers)
        print(f"enqueue {int(e['recipients']):,} readers on PostgreSQL: {e['enqueue_s']:.1f} s "
              f"(whole freeze incl. render {e['freeze_s']:.1f} s), peak memory {e['peak_rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
