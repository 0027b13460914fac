"""`digest preview`: the operator's local web UI for the next issue (127.0.0.1 unless --host says otherwise)."""

from __future__ import annotations

import typer

from digest.cli import app
from digest.cli.context import out, runtime
from digest.errors import UserError


@app.command()
def preview(
    week: str = typer.Option(None, "--week", help="ISO week key, e.g. 2026-W47 (default: this week)."),
    port: int = typer.Option(8025, "--port", help="Port to listen on (0 picks a free one)."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Interface to listen on. Anything but loopback needs the access token printed at start on every request.",
    ),
) -> None:
    """Preview the next issue: selection, desktop/mobile/dark render, checks, test sends, history, outbox."""
    from digest.preview.server import PreviewServer, is_loopback
    from digest.weeks import Week

    if not 0 <= port <= 65535:
        raise UserError(f"--port: {port} is not a port number (0-65535)")
    wk = Week.parse(week) if week else None
    rt = runtime()
    server = PreviewServer(rt, host=host, port=port, week=wk)
    out.print(
        f"preview of {wk.key if wk else 'this week'}'s issue at {server.open_url}  (Ctrl-C stops it)", markup=False
    )
    out.print(f"watching {rt.config.templates_dir} and {rt.config.path} for changes", markup=False)
    if not is_loopback(host):
        out.print(
            f"warning: listening on {host}: anyone with the URL above (its token) can see every reader's "
            "links and send tests to preview.test_recipients; keep it private",
            markup=False,
        )
    server.run()
