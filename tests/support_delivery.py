"""Helpers for the delivery tests: seeded issues, Resend-pointed projects, CLI runs, exactly-once checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.runtime import Runtime
from digest.storage.models import Delivery, Subscriber, SubscriberStatus
from digest.weeks import Week, current_week, utcnow
from tests.conftest import ROOT, SAMPLES, apply_overrides, make_runtime, write_project

API_KEY = "re_test_key"
SECRET = "test-secret-key-0123456789"


def seed_comparisons(rt: Runtime, published: datetime | None = None) -> None:
    with rt.sessions.begin() as s:
        for src in expand([str(SAMPLES)]):
            upsert(s, src.items, default_url="https://verdicts.example.com/compare", published=published)


def add_readers(
    rt: Runtime, count: int, *, start: int = 0, status: str = SubscriberStatus.ACTIVE, prefix: str = "reader"
) -> list[str]:
    """Insert `count` subscribers in bulk; returns their addresses."""
    now = utcnow()
    emails = [f"{prefix}{i:06d}@example.com" for i in range(start, start + count)]
    with rt.sessions.begin() as s:
        for chunk in range(0, count, 5000):
            s.execute(
                insert(Subscriber),
                [
                    {
                        "email": e,
                        "name": f"Reader {i}",
                        "status": status,
                        "created_at": now,
                        "confirmed_at": now if status == SubscriberStatus.ACTIVE else None,
                    }
                    for i, e in enumerate(emails[chunk : chunk + 5000], start + chunk)
                ],
            )
    return emails


def active_emails(rt: Runtime) -> set[str]:
    with rt.sessions() as s:
        return set(s.scalars(select(Subscriber.email).where(Subscriber.status == SubscriberStatus.ACTIVE)))


SHARED_SENDING = ("batch_size", "max_attempts", "pause_after_failures", "resume_after_seconds", "resume_max_seconds")


def resend_project(root: Path, url: str, **resend: object) -> Path:
    """A project whose transport is Resend at `url`; `resend` overrides [transport] (the settings
    every transport shares) and [transport.resend] settings."""
    cfg = write_project(root)
    shared = {k: v for k, v in resend.items() if k in SHARED_SENDING}
    own = {k: v for k, v in resend.items() if k not in SHARED_SENDING}
    text = apply_overrides(
        cfg.read_text(),
        {
            "transport": {"kind": "resend", **shared},
            "transport.resend": {"requests_per_second": 50.0, "timeout_seconds": 5.0, **own},
        },
    )
    cfg.write_text(text)
    return cfg


def resend_env(url: str, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "DIGEST_DATABASE_URL": db_url,
        "DIGEST_SECRET_KEY": SECRET,
        "RESEND_API_KEY": API_KEY,
        "RESEND_API_URL": url,
        **extra,
    }


def resend_runtime(cfg: Path, url: str, db_url: str, **extra: str) -> Runtime:
    env = resend_env(url, db_url, **extra)
    env.pop("DIGEST_DATABASE_URL")
    env.pop("DIGEST_SECRET_KEY")
    return make_runtime(cfg, db_url, **env)


def this_week(rt: Runtime) -> Week:
    return current_week(rt.settings.schedule)


def seed_for_cli(rt: Runtime, readers: int) -> list[str]:
    """Comparisons fresh enough for this week's issue, plus `readers` active subscribers."""
    seed_comparisons(rt, published=utcnow() - timedelta(days=1))
    return add_readers(rt, readers)


def digest_cli(cfg: Path, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "digest", "--config", str(cfg), *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=timeout,
        env=cli_env(env),
    )


def digest_popen(cfg: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "--config", str(cfg), *args],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(env),
    )


def cli_env(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "RESEND_"))}
    return {**base, "PYTHONPATH": str(ROOT), **env}


def assert_exactly_once(copies: dict[str, int], expected: Iterable[str]) -> None:
    """Per recipient, from the provider's own record: each expected address once, nobody else."""
    expected = set(expected)
    twice = {a: n for a, n in copies.items() if n > 1}
    missing = expected - set(copies)
    extra = set(copies) - expected
    assert not twice, f"{len(twice)} recipient(s) got more than one copy, e.g. {sorted(twice.items())[:5]}"
    assert not missing, f"{len(missing)} recipient(s) got nothing, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} address(es) mailed who should not be, e.g. {sorted(extra)[:5]}"


def delivery_counts(rt: Runtime) -> Counter[str]:
    with rt.sessions() as s:
        return Counter(dict(s.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()))
