"""Import and erasure benchmark: `digest subscribers import` of N confirmed readers, and `forget` among 1M deliveries.

1. Writes a CSV of N readers (`email,name`; addresses spread over 2,000 domains, a tenth of
   them international, as a real list is) and imports it with `digest subscribers import FILE
   --confirmed --consent ... --yes` as a child process (the CLI's own code path: start-up,
   reading, validating, storing, the report), on a fresh PostgreSQL database and on SQLite.
   Prints rows/s, wall time and the child's peak memory, and checks every reader is active.
2. On the PostgreSQL database: an issue with a delivery to every imported reader (and
   clicks for the people to be erased), then times `forget` of 20 of them (subscriber row,
   consent history, events, deliveries, clicks), and, for comparison, the query the old
   `forget` ran (deliveries by address: no index).

Needs PostgreSQL on 127.0.0.1:5432 (DIGEST_TEST_PG_URL as for the tests). About 5 minutes at 1M:
    .venv/bin/python bench/import.py [--rows N] [--sqlite-rows M] [--forget-deliveries D] [--only pg,sqlite,forget]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from bench.send import PG_ADMIN_URL, create_database, drop_database, watch_peak  # noqa: E402
from digest.storage.models import Subscriber, SubscriberStatus  # noqa: E402
from subscribers.erasure import forget  # noqa: E402
from tests.conftest import make_runtime, write_project  # noqa: E402

SECRET = "bench-secret-key-0123456789abcdef"
DOMAINS = [f"mail{d}.example" for d in range(1800)] + [f"bücher{d}.example" for d in range(200)]


def write_csv(path: Path, rows: int) -> None:
    """`rows` distinct readers with names, in the file's order; the same file for every database."""
    rnd = random.Random(23)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("email,name\n")
        for i in range(rows):
            fh.write(f"Reader.{i}@{rnd.choice(DOMAINS)},Reader {i}\n")


def run_import(cfg: Path, db_url: str, csv_path: Path) -> tuple[str, float, int]:
    """The CLI's import as a child: its output, wall time and peak memory (kB)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")},
        "PYTHONPATH": str(ROOT),
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": SECRET,
    }
    cmd = [
        sys.executable,
        "-m",
        "digest",
        "--config",
        str(cfg),
        "subscribers",
        "import",
        str(csv_path),
        "--confirmed",
        "--consent",
        "signed up on the bench",
        "--yes",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    started = time.perf_counter()
    peak_kb = watch_peak(proc.pid)
    _, status, _ = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    output = proc.stdout.read() if proc.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"digest subscribers import failed:\n{output}")
    return output.strip(), wall, peak_kb


def import_bench(label: str, root: Path, db_url: str, csv_path: Path, rows: int) -> None:
    cfg = write_project(root)
    make_runtime(cfg, db_url).close()  # the schema first: the import's time is the import's
    output, wall, peak_kb = run_import(cfg, db_url, csv_path)
    rt = make_runtime(cfg, db_url)
    with rt.sessions() as s:
        active = s.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.status == SubscriberStatus.ACTIVE)
        )
    rt.close()
    assert active == rows, (active, output)
    print(
        f"import {rows:,} confirmed readers on {label}: {wall:.1f} s, {rows / wall:,.0f} rows/s, "
        f"peak memory {peak_kb / 1024:.0f} MB ({output.splitlines()[-1]})",
        flush=True,
    )


def seed_deliveries(rt, deliveries: int) -> list[str]:  # type: ignore[no-untyped-def]
    """One sent issue with a delivery to each of the first `deliveries` readers; clicks for 20 of them."""
    with rt.sessions.begin() as s:
        issue = s.scalar(
            text(
                "INSERT INTO issues (week, status, pins, excludes, created_at) "
                "VALUES ('2026-W49', 'sent', '[]', '[]', now()) RETURNING id"
            )
        )
        s.execute(
            text(
                "INSERT INTO deliveries (issue_id, subscriber_id, email, batch_no, status, sent_at) "
                "SELECT :issue, id, email, (id / 100)::int, 'sent', now() FROM subscribers "
                "ORDER BY id LIMIT :n"
            ),
            {"issue": issue, "n": deliveries},
        )
        people = list(
            s.scalars(
                text("SELECT email FROM deliveries WHERE issue_id = :issue ORDER BY random() LIMIT 20"),
                {"issue": issue},
            )
        )
        s.execute(
            text(
                "INSERT INTO clicks (issue_id, delivery_id, reader, kind, link, method, at, hits) "
                "SELECT issue_id, id, id, 'click', 0, 'GET', now(), 1 FROM deliveries "
                "WHERE email = ANY(:people)"
            ),
            {"people": people},
        )
    with rt.engine.connect() as c:
        c.execute(text("COMMIT"))
        c.execute(text("ANALYZE"))
    return people


def forget_bench(root: Path, db_url: str, deliveries: int) -> None:
    rt = make_runtime(write_project(root), db_url)
    people = seed_deliveries(rt, deliveries)
    with rt.sessions() as s:
        total = s.scalar(text("SELECT count(*) FROM deliveries")) or 0
        started = time.perf_counter()
        s.execute(text("SELECT id FROM deliveries WHERE email = :a"), {"a": people[0]}).all()
        old_query = time.perf_counter() - started
    times = []
    for address in people:
        started = time.perf_counter()
        result = forget(rt, address)
        times.append(time.perf_counter() - started)
        assert result.found and result.deliveries_cleared == 1, result
    rt.close()
    print(
        f"forget among {total:,} deliveries on PostgreSQL: median {statistics.median(times) * 1000:.1f} ms, "
        f"max {max(times) * 1000:.1f} ms over {len(times)} people; the old forget's deliveries-by-address "
        f"query alone: {old_query * 1000:.0f} ms",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="readers imported on PostgreSQL")
    ap.add_argument("--sqlite-rows", type=int, default=1_000_000, help="readers imported on SQLite")
    ap.add_argument("--forget-deliveries", type=int, default=1_000_000, help="deliveries forget searches")
    ap.add_argument("--only", default="pg,sqlite,forget")
    args = ap.parse_args()
    only = set(args.only.split(","))
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
        f"PostgreSQL at {PG_ADMIN_URL.rsplit('@', 1)[-1]}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="digest-import-bench-") as tmp:
        work = Path(tmp)
        if only & {"pg", "forget"}:
            pg_rows = max(args.rows, args.forget_deliveries) if "forget" in only else args.rows
            write_csv(work / "readers.csv", pg_rows)
            db_url = create_database()
            try:
                import_bench("PostgreSQL", work / "pg", db_url, work / "readers.csv", pg_rows)
                if "forget" in only:
                    forget_bench(work / "pg", db_url, args.forget_deliveries)
            finally:
                drop_database(db_url)
        if "sqlite" in only:
            write_csv(work / "sqlite.csv", args.sqlite_rows)
            import_bench(
                "SQLite",
                work / "lite",
                f"sqlite:///{work / 'lite' / 'digest.db'}",
                work / "sqlite.csv",
                args.sqlite_rows,
            )


if __name__ == "__main__":
    main()
