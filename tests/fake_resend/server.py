"""Run the fake on a free port of 127.0.0.1: in a thread of the test process, or as a subprocess."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

from tests.fake_resend.app import create_app
from tests.fake_resend.state import FakeResend

ROOT = Path(__file__).resolve().parents[2]


def _bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


class _QuietServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


class FakeResendServer:
    """`with FakeResendServer(FakeResend(...)) as server:` then point RESEND_API_URL at `server.url`.

    `outage()` closes the port (connections are refused, open ones are cut) and `restore()`
    listens again on the same port with the same state: accepted emails and idempotency keys
    survive the outage, as they do at the real provider.
    """

    def __init__(self, fake: FakeResend | None = None):
        self.fake = fake or FakeResend()
        self._sock = _bound_socket()
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._make_server()

    def _make_server(self) -> None:
        config = uvicorn.Config(
            create_app(self.fake),
            log_level="critical",
            access_log=False,
            timeout_keep_alive=30,
            limit_concurrency=1000,
            timeout_graceful_shutdown=1,
        )
        self._server = _QuietServer(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="fake-resend", daemon=True
        )

    def outage(self) -> None:
        """From now on the port refuses connections (until `restore`)."""
        self.stop()

    def restore(self) -> None:
        """Listen again on the same port, with the keys and records kept through the outage."""
        self._sock = _bound_socket(self.port)
        self._make_server()
        self.start()

    def start(self) -> FakeResendServer:
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake Resend server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    def __enter__(self) -> FakeResendServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeResendProcess:
    """The fake in its own process (benchmarks: its CPU is not the sender's). Read it over /_fake/*."""

    def __init__(self, *, rate_limit: float | None = None, api_key: str = "re_test_key", boost: bool = False):
        """`boost` raises the fake's CPU priority when allowed, so its arrival times stay exact on a busy machine."""
        args = [sys.executable, "-m", "tests.fake_resend", "--api-key", api_key]
        if rate_limit:
            args += ["--rate-limit", str(rate_limit)]
        if boost:
            args += ["--boost"]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"the fake Resend process did not start: {line!r}")
        self.url = line.split()[1]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=60) as resp:
            return json.loads(resp.read())

    def post(self, path: str, data: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(data).encode(), method="POST", headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def copies_by_recipient(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.get("/_fake/dump")["records"]:
            counts[record["to"]] = counts.get(record["to"], 0) + 1
        return counts

    def arrivals(self) -> list[float]:
        return sorted(entry["at"] for entry in self.get("/_fake/dump")["log"])

    def summary(self) -> dict[str, Any]:
        return self.get("/_fake/summary")

    def __enter__(self) -> FakeResendProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
