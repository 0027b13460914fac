"""Run the preview app on uvicorn: in the foreground for `digest preview`, in a thread for tests and bench.

The socket is bound here, so a busy port is a clear error and port 0 picks a free one.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time

import uvicorn

from digest.errors import UserError
from digest.preview.access import new_token
from digest.preview.app import create_preview_app
from digest.preview.state import PreviewState
from digest.runtime import Runtime
from digest.weeks import Week

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it (uvicorn does not set it on a socket it is
    # handed), every small response waits ~40 ms for Nagle and the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"--port: {port} is in use; pass another --port (0 picks a free one)") from None
        raise UserError(f"--host: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: PreviewState):
        super().__init__(config)
        self.preview_state = state

    def handle_exit(self, sig: int, frame: object) -> None:
        self.preview_state.closing = True  # ends the event streams so shutdown does not wait on them
        # uvicorn types frame as FrameType | None; the signal module hands us exactly that.
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


class PreviewServer:
    """One preview server: `run()` blocks (CLI); `start()`/`stop()` run it in a thread."""

    def __init__(
        self,
        rt: Runtime,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        week: Week | None = None,
        watch: bool = True,
    ):
        loopback = is_loopback(host)
        # Off loopback, anyone who reaches the port would see every reader's links: a fresh token each start.
        self.state = PreviewState(
            rt, fixed_week=week, loopback_only=loopback, access_token=None if loopback else new_token()
        )
        self.app = create_preview_app(self.state, watch=watch)
        self.sock = bind(host, port)
        self.host = host
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, access_log=False
        )
        self.server = _Server(config, self.state)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}"

    @property
    def open_url(self) -> str:
        """The URL to open: with the access token off loopback (printed once, never logged)."""
        token = self.state.access_token
        return f"{self.url}/" + (f"?token={token}" if token else "")

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 15) -> str:
        self._thread = threading.Thread(target=self.run, name="digest-preview", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the preview server did not start")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        self.state.closing = True
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
