"""The signing key is created once, atomically, and an empty or short key is refused.

Four processes starting together on a fresh install used to race: some failed with
FileExistsError and some read a still-empty var/secret.key and signed tokens with "".
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time

import pytest

from digest.config import MIN_SECRET_KEY, load_config
from digest.errors import ConfigError
from tests.conftest import write_project

WORKERS = 4
ROUNDS = 25


def _read_key(config_path: str, barrier, queue) -> None:  # type: ignore[no-untyped-def]
    config = load_config(config_path, env={})
    barrier.wait()
    try:
        queue.put(("ok", config.secret_key))
    except BaseException as exc:  # noqa: BLE001 - report whatever happened to the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def test_four_processes_racing_on_a_fresh_install_all_get_the_same_key(tmp_path) -> None:
    ctx = multiprocessing.get_context("fork")
    failures: list[str] = []
    for n in range(ROUNDS):
        cfg = write_project(tmp_path / f"r{n}")
        barrier, queue = ctx.Barrier(WORKERS), ctx.Queue()
        procs = [ctx.Process(target=_read_key, args=(str(cfg), barrier, queue)) for _ in range(WORKERS)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        keys = {value for status, value in results if status == "ok"}
        errors = [value for status, value in results if status != "ok"]
        on_disk = (cfg.parent / "var" / "secret.key").read_text().strip()
        if errors or len(keys) != 1 or len(on_disk) < MIN_SECRET_KEY or keys != {on_disk}:
            failures.append(f"round {n}: keys={sorted(k[:6] for k in keys)} errors={errors} disk={on_disk[:6]!r}")
        leftovers = [p.name for p in (cfg.parent / "var").iterdir() if p.name != "secret.key"]
        assert not leftovers, leftovers
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("content", ["", "\n", "short"])
def test_an_empty_or_short_key_file_is_refused_with_one_clear_line(tmp_path, content) -> None:
    cfg = write_project(tmp_path / "p")
    key = cfg.parent / "var" / "secret.key"
    key.parent.mkdir()
    key.write_text(content)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg, env={}).secret_key
    message = str(exc.value)
    assert "\n" not in message and "secret.key" in message and str(MIN_SECRET_KEY) in message
    assert key.read_text() == content  # never silently replaced: tokens already sent depend on it


@pytest.mark.parametrize("value", ["x", "tooshort-key"])
def test_a_short_digest_secret_key_is_refused(tmp_path, value) -> None:
    cfg = write_project(tmp_path / "p")
    with pytest.raises(ConfigError, match=f"DIGEST_SECRET_KEY.*{MIN_SECRET_KEY}"):
        load_config(cfg, env={"DIGEST_SECRET_KEY": value}).secret_key


def test_the_key_file_is_private(tmp_path) -> None:
    cfg = write_project(tmp_path / "p")
    key = load_config(cfg, env={}).secret_key
    path = cfg.parent / "var" / "secret.key"
    assert path.read_text().strip() == key and oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_drainer_logs_and_keeps_going_when_the_key_is_bad_then_recovers(tmp_path, sqlite_url, caplog) -> None:
    from digest.delivery.drainer import Drainer
    from digest.runtime import open_runtime
    from tests.support_subscribers import client, outbox_messages

    cfg = write_project(tmp_path / "p")
    key = cfg.parent / "var" / "secret.key"
    key.parent.mkdir(exist_ok=True)
    key.write_text("")  # a broken install: an empty key file
    rt = open_runtime(load_config(cfg, env={"DIGEST_DATABASE_URL": sqlite_url}))
    client(rt).post("/subscribe", json={"email": "k@example.com"})
    drainer = Drainer(rt, poll=0.05)
    caplog.set_level(logging.ERROR, logger="subscribers.mail")
    try:
        drainer.start()
        deadline = time.monotonic() + 10
        while not any("secret.key" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("secret.key" in r.getMessage() for r in caplog.records), caplog.text
        assert drainer._thread is not None and drainer._thread.is_alive()
        assert outbox_messages(rt, to="k@example.com") == []  # nothing signed with an empty key
        key.write_text(os.urandom(24).hex())  # the operator fixes it
        deadline = time.monotonic() + 40
        while not outbox_messages(rt, to="k@example.com") and time.monotonic() < deadline:
            drainer.wake()
            time.sleep(0.1)
        assert outbox_messages(rt, to="k@example.com"), "the drainer did not recover"
    finally:
        drainer.stop()
        rt.close()


@pytest.mark.parametrize("path", ["/c/AAAAAAAAAAAAAAAAAAAAAA", "/o/AAAAAAAAAAAAAAAAAAAAAA"])
def test_links_and_the_open_pixel_answer_503_while_the_key_file_is_broken(tmp_path, sqlite_url, path) -> None:
    """A broken key file is the operator's to fix; until then readers get a clear 'try again', never a 500."""
    from digest.runtime import open_runtime
    from tests.support_subscribers import client

    cfg = write_project(tmp_path / "p")
    key = cfg.parent / "var" / "secret.key"
    key.parent.mkdir(exist_ok=True)
    key.write_text("")
    rt = open_runtime(load_config(cfg, env={"DIGEST_DATABASE_URL": sqlite_url}))
    try:
        r = client(rt).get(path, follow_redirects=False)
        assert r.status_code == 503 and r.headers["Retry-After"] == "30", (r.status_code, r.text[:200])
        assert "try again" in r.text and "Traceback" not in r.text
    finally:
        rt.close()
