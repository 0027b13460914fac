"""`digest subscribers import` without --confirmed mails every new row a confirmation: it asks first
when that is more than a handful, refuses without a terminal unless --yes, and --dry-run counts."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.cli.subscribers_cmd import HANDFUL
from digest.storage.models import Subscriber
from subscribers.api import add_subscriber
from subscribers.lifecycle import suppress, unsubscribe
from tests.conftest import ROOT
from tests.support_subscribers import counts, outbox_messages, runtime_with

MANY = HANDFUL + 5


@pytest.fixture
def srt(tmp_path, db_url):
    rt = runtime_with(tmp_path / "p", db_url)
    yield rt
    rt.close()


def _env(rt) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "DIGEST_DATABASE_URL": rt.config.database_url,
        "DIGEST_SECRET_KEY": "test-secret-key-0123456789",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DIGEST_DEBUG", None)
    return env


def _cmd(rt, *args: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [sys.executable, "-m", "digest", "--config", str(rt.config.path), "subscribers", "import", *args]


def _run(rt, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(
        _cmd(rt, *args), capture_output=True, text=True, env=_env(rt), timeout=120, stdin=subprocess.DEVNULL
    )


def _csv(tmp_path: Path, rows: int, extra: str = "") -> Path:
    path = tmp_path / "people.csv"
    path.write_text("email,name\n" + "".join(f"new{i}@example.com,New {i}\n" for i in range(rows)) + extra)
    return path


def _people(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.sessions() as s:
        return len(s.scalars(select(Subscriber.id)).all())


def test_without_a_terminal_a_large_import_is_refused_until_yes(srt, tmp_path) -> None:
    path = _csv(tmp_path, MANY)
    before = counts(srt)
    refused = _run(srt, str(path))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"{MANY} new addresses" in refused.stderr and "--yes" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert counts(srt) == before and outbox_messages(srt) == []
    done = _run(srt, str(path), "--yes")
    assert done.returncode == 0, done.stderr
    assert f"{MANY} added (pending)" in done.stdout and f"confirmations: {MANY} sent" in done.stdout
    assert len(outbox_messages(srt)) == MANY


def test_a_handful_goes_without_asking(srt, tmp_path) -> None:
    done = _run(srt, str(_csv(tmp_path, HANDFUL)))
    assert done.returncode == 0, done.stderr
    assert len(outbox_messages(srt)) == HANDFUL


def test_confirmed_import_sends_nothing_so_needs_no_yes(srt, tmp_path) -> None:
    done = _run(srt, str(_csv(tmp_path, MANY)), "--confirmed", "--consent", "signed up at the meetup")
    assert done.returncode == 0, done.stderr
    assert outbox_messages(srt) == [] and _people(srt) == MANY


@pytest.mark.parametrize("answer, imported", [(b"n\n", False), (b"y\n", True)])
def test_in_a_terminal_it_asks_and_no_changes_nothing(srt, tmp_path, answer, imported) -> None:
    path = _csv(tmp_path, MANY)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            _cmd(srt, str(path)), stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(srt), text=True
        )
        os.write(master, answer)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    assert f"Send {MANY} confirmation emails? [y/N]" in stdout, stdout + stderr
    if imported:
        assert proc.returncode == 0, stderr
        assert len(outbox_messages(srt)) == MANY
    else:
        assert proc.returncode == 1 and "nothing changed" in stdout
        assert _people(srt) == 0 and outbox_messages(srt) == []


def test_dry_run_counts_new_already_there_suppressed_invalid_and_changes_nothing(srt, tmp_path) -> None:
    with srt.sessions.begin() as s:
        add_subscriber(s, "new0@example.com", confirmed=True)  # already there
        add_subscriber(s, "new1@example.com", confirmed=False)  # already there (pending)
        gone = add_subscriber(s, "new2@example.com", confirmed=True).subscriber
        unsubscribe(s, gone, issue_id=None, method="page")  # left earlier
    with srt.sessions.begin() as s:
        suppress(s, "new3@example.com", "complaint")
    path = _csv(tmp_path, MANY, extra="not-an-address,Bad\nnew4@example.com,Twice\n")
    before = counts(srt)
    dry = _run(srt, str(path), "--dry-run")
    assert dry.returncode == 1, dry.stderr  # an invalid line: like the real import
    assert f"{path}:{MANY + 2}: " in dry.stdout  # the invalid line, by number
    line = dry.stdout.strip().splitlines()[-1]
    assert line.startswith(f"dry run: {MANY - 4} new (pending, each gets a confirmation email), 2 already there"), line
    assert "1 suppressed, 1 left earlier, 1 invalid, 1 duplicates; nothing changed" in line
    assert counts(srt) == before and outbox_messages(srt) == []


def test_confirmations_show_progress_in_a_terminal(srt, tmp_path) -> None:
    path = _csv(tmp_path, MANY)
    env = {**_env(srt), "TTY_COMPATIBLE": "1", "COLUMNS": "100"}
    done = subprocess.run(
        _cmd(srt, str(path), "--yes"), capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr
    assert "sending confirmations" in done.stderr and f"{MANY}/{MANY}" in done.stderr, done.stderr
