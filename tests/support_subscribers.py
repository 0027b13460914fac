"""Helpers for the subscriber tests: an app client, table snapshots, outbox reading, webhook signing."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import warnings
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from digest.runtime import Runtime
from digest.storage.models import Event, OutgoingMail, RateLimitHit, Subscriber, Suppression, WebhookReceipt
from tests.conftest import apply_overrides, make_runtime, write_project

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"subscriber-tests-webhook-secret!").decode()
TABLES = {
    "subscribers": Subscriber,
    "outgoing_mail": OutgoingMail,
    "events": Event,
    "suppressions": Suppression,
    "webhook_receipts": WebhookReceipt,
    "rate_limit_hits": RateLimitHit,
}


def runtime_with(root: Path, db_url: str, overrides: dict[str, dict[str, object]] | None = None, **env: str) -> Runtime:
    """A runtime whose config.toml has `overrides` applied (e.g. tighter rate limits)."""
    cfg = write_project(root)
    if overrides:
        cfg.write_text(apply_overrides(cfg.read_text(), overrides))
    return make_runtime(cfg, db_url, RESEND_WEBHOOK_SECRET=WEBHOOK_SECRET, **env)


def client(rt: Runtime) -> TestClient:
    """The full app without its lifespan (no background drainer): tests drain explicitly."""
    from digest.web.app import create_app

    return TestClient(create_app(rt), raise_server_exceptions=False)


def counts(rt: Runtime) -> dict[str, int]:
    with rt.sessions() as s:
        return {name: s.scalar(select(func.count()).select_from(model)) or 0 for name, model in TABLES.items()}


def subscriber(rt: Runtime, address: str) -> Subscriber | None:
    with rt.sessions() as s:
        return s.scalar(select(Subscriber).where(Subscriber.email == address))


def outbox_messages(rt: Runtime, folder: str = "transactional", to: str | None = None) -> list[EmailMessage]:
    d = rt.outbox_dir / folder
    files = sorted(d.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns) if d.is_dir() else []
    msgs = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]
    return [m for m in msgs if to is None or m["To"] == to]


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def link_in(msg: EmailMessage, path: str) -> str:
    m = re.search(rf"https?://[^\s\"'<>]+{re.escape(path)}[^\s\"'<>]+", text_of(msg))
    assert m, f"no {path} link in:\n{text_of(msg)}"
    return m.group(0)


def unsubscribe_url(msg: EmailMessage) -> str:
    m = re.search(r"<(https?://[^>]+)>", str(msg["List-Unsubscribe"]))
    assert m
    return m.group(1)


def signed_webhook(
    payload: dict[str, Any], msg_id: str, *, secret: str = WEBHOOK_SECRET, when: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    from svix.webhooks import Webhook

    body = json.dumps(payload)
    when = when or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, when, body)
    headers = {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }
    return body.encode(), headers


def path_of(url: str) -> str:
    """The path+query of an absolute link (the test client talks to the app directly)."""
    return re.sub(r"^https?://[^/]+", "", url)


def seed_comparisons(rt: Runtime, published: datetime, tag: str = "") -> None:
    """The sample comparisons, published at `published`; a tag makes new ones (for a later week)."""
    from digest.ingest.sources import expand
    from digest.ingest.store import upsert
    from tests.conftest import SAMPLES

    items = [item for src in expand([str(SAMPLES)]) for item in src.items]
    if tag:
        items = [item.model_copy(update={"title": f"{item.title} {tag}"}) for item in items]
    with rt.sessions.begin() as s:
        upsert(s, items, default_url="https://verdicts.example.com/compare", published=published)


def send_issue(rt: Runtime, week_key: str, now: datetime) -> int:
    """Send that week's issue (comparisons must exist); returns the issue id."""
    from digest.cycle.send import send_week
    from digest.weeks import Week

    result = send_week(rt, Week.parse(week_key), manual=True, now=now)
    assert result.prepared.issue_id is not None and result.prepared.skip_reason is None, result.prepared
    return result.prepared.issue_id


def issue_copy(rt: Runtime, week_key: str, to: str) -> EmailMessage | None:
    found = outbox_messages(rt, week_key, to=to)
    return found[0] if found else None


class LiveServer:
    """`uvicorn --factory digest.web.asgi:make_app` in a subprocess on a socket bound here (no port race)."""

    def __init__(self, sock, config_path: Path, db_url: str, **env: str):
        import os
        import subprocess
        import sys

        from tests.conftest import ROOT

        self.sock = sock
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,
            "DIGEST_CONFIG": str(config_path),
            "DIGEST_DATABASE_URL": db_url,
            "DIGEST_SECRET_KEY": "test-secret-key-0123456789",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "digest.web.asgi:make_app",
                "--fd",
                str(sock.fileno()),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            pass_fds=[sock.fileno()],
            env=environ,
            cwd=str(config_path.parent),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.proc.stdout.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/subscribe", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not start")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=15)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.sock.close()
        return (out or b"").decode(errors="replace")


def bound_socket():
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll until `predicate()` is truthy; returns its value (or the last falsy one)."""
    import time

    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
