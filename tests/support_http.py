"""Helpers for tests that talk raw HTTP to a real `digest serve` (or uvicorn) process."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import write_project
from tests.support_serve import ServeProcess, free_port, serving

SECRET = "test-secret-key-0123456789"


@contextmanager
def served(
    tmp_path: Path, db_url: str, config: Callable[[str], str] | None = None, **env: str
) -> Iterator[ServeProcess]:
    """`digest serve` with the outbox transport on a free port, ready to take requests.

    `config` rewrites the config.toml text (e.g. tests.conftest.apply_overrides)."""
    cfg = write_project(tmp_path / "project")
    if config is not None:
        cfg.write_text(config(cfg.read_text()))
    full = {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET, "DIGEST_TRANSPORT": "outbox", **env}
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    proc = ServeProcess(cfg, free_port(), full, logs)
    with serving(proc):
        proc.wait_ready()
        yield proc


def peak_rss_kib(pid: int) -> int:
    """The process's resident-set high-water mark (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def stream_chunked(
    port: int, path: str, total: int, chunk: int = 64 * 1024, content_type: str = "application/x-www-form-urlencoded"
) -> tuple[bytes, int]:
    """POST `total` bytes as a chunked body; returns (the raw response, bytes the server took)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )
    piece = f"{chunk:x}\r\n".encode() + b"a" * chunk + b"\r\n"
    sent = [0]

    def pump() -> None:
        try:
            while sent[0] < total:
                sock.sendall(piece)
                sent[0] += chunk
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: exactly what a bounded server does

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    sock.settimeout(120)
    response = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            response += data
            if b"\r\n\r\n" in response and _complete(response):
                break
    except ConnectionResetError:
        pass
    sender.join(120)
    sock.close()
    return response, sent[0]


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


class UvicornWorkers:
    """`uvicorn --factory digest.web.asgi:make_app --workers N`, as the README runs the web app alone."""

    def __init__(self, config: Path, db_url: str, workers: int, logs: Path, **env: str) -> None:
        import os
        import subprocess
        import sys

        from tests.conftest import ROOT

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logs / f"uvicorn-{self.port}.log"
        full = {
            **os.environ,
            "DIGEST_CONFIG": str(config),
            "DIGEST_DATABASE_URL": db_url,
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_TRANSPORT": "outbox",
            **env,
        }
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "digest.web.asgi:make_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        import httpx

        from tests.support_serve import wait_for

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited:\n{self.log_path.read_text(errors='replace')}")
            try:
                return httpx.get(self.url + "/healthz/live", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, what="uvicorn workers")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
