"""`digest serve`: the public web app and the weekly scheduler in one long-running process.

SIGTERM (systemd stop) or Ctrl+C: the web server stops taking requests, the send in
progress finishes its batch in flight and stops, the process exits 0; the next start
resumes the interrupted send.
"""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType
from typing import Any

import typer

from digest.cli import app
from digest.cli.context import out, runtime
from digest.errors import UserError
from digest.schedule.service import WeeklyService
from digest.schedule.slots import slot_state

log = logging.getLogger("digest.serve")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before anything starts, so a busy port is one clear line and nothing else happens."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host: {host!r} is not an address this machine can listen on ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: small responses are not held back 40 ms by Nagle + delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"--port: cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server_class() -> Any:
    import uvicorn

    class StoppingServer(uvicorn.Server):
        """Tell the scheduler the moment a stop signal arrives, not after the web server drained."""

        def __init__(self, config: uvicorn.Config, service: WeeklyService):
            super().__init__(config)
            self.service = service

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not self.service.stop_event.is_set():
                log.info("stop requested (signal %s): stopping after the batch in flight", sig)
            self.service.stop_event.set()
            super().handle_exit(sig, frame)

    return StoppingServer


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
) -> None:
    """Run the public web app (sign-up, unsubscribe, webhooks, archive, /healthz) and the weekly schedule."""
    import uvicorn

    from digest.web.accesslog import redact_access_log
    from digest.web.app import create_app

    logging.getLogger("digest").setLevel(logging.INFO)
    logging.getLogger("subscribers").setLevel(logging.INFO)
    rt = runtime()
    rt.secret_key  # noqa: B018 - an empty or short signing key stops here with one clear line
    sock = bind_socket(host, port)
    service = WeeklyService(rt)
    web = create_app(rt)
    web.state.scheduler = service
    config = uvicorn.Config(web, log_level="info", lifespan="on", timeout_graceful_shutdown=10, server_header=False)
    redact_access_log()  # after uvicorn.Config has set up its loggers
    server = _server_class()(config, service)

    # Before uvicorn takes over the signals (and again after it stops and re-raises the one it
    # caught), a stop signal stops everything: the sender after its batch, the server at once.
    def _stop(_sig: int, _frame: FrameType | None) -> None:
        service.stop_event.set()
        server.should_exit = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

    bound_host, bound_port = sock.getsockname()[:2]
    service.start()
    try:
        nxt = service.next_run_time()
        state = slot_state(rt)
        out.print(
            f"digest serve: listening on http://{bound_host}:{bound_port} (public URL "
            f"{rt.settings.site.public_url}); database {rt.engine.url.get_backend_name()}",
            markup=False,
        )
        if nxt is not None:
            tz = rt.settings.schedule.timezone
            out.print(f"next issue: {nxt.astimezone(service.scheduler.timezone):%A %Y-%m-%d %H:%M} {tz}", markup=False)
        if state.overdue:
            out.print(f"warning: {state.message}", markup=False)
        elif state.first_issue_at is not None:
            out.print(state.message, markup=False)
        server.run(sockets=[sock])
    finally:
        service.shutdown(wait=True)  # the send in progress stops after its batch in flight
        sock.close()
    out.print("digest serve: stopped", markup=False)
