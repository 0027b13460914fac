"""`digest doctor`: one line per check (PASS, WARN, FAIL) with what to do; exit 1 when any check fails."""

from __future__ import annotations

import typer

from digest.cli import app
from digest.cli.context import out, state
from digest.config import load_config
from digest.doctor import Context, Status, run
from digest.doctor.resolver import DEFAULT_TIMEOUT, Dns, parse_nameserver
from digest.errors import UserError

LABEL = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL"}


@app.command("doctor")
def doctor_cmd(
    nameserver: str = typer.Option(
        None,
        "--nameserver",
        metavar="HOST[:PORT]",
        help="Ask this DNS server (default: $DIGEST_DNS_SERVER, else the system's).",
    ),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT, "--timeout", metavar="SECONDS", help="How long to wait for each DNS server and web address."
    ),
) -> None:
    """Check DNS (SPF, DKIM, DMARC), the public URL, secrets, mailboxes and the database before sending."""
    if not 0 < timeout <= 120:
        raise UserError(f"--timeout: {timeout:g} is not between 0 and 120 seconds")
    config = load_config(state.config_path)
    given, where = (
        (nameserver, "--nameserver") if nameserver else (config.env.get("DIGEST_DNS_SERVER", ""), "DIGEST_DNS_SERVER")
    )
    server = parse_nameserver(given, where) if given.strip() else None
    ctx = Context(config=config, dns=Dns(server, timeout), http_timeout=timeout)
    out.print(
        f"digest doctor: {config.path} (transport {ctx.transport}, sending domain {ctx.domain}, DNS: {ctx.dns.server})",
        markup=False,
        highlight=False,
    )
    results = run(ctx)
    width = max(len(r.name) for r in results)
    for result in results:
        out.print(f"{LABEL[result.status]}  {result.name:<{width}}  {result.detail}", markup=False, highlight=False)
        if result.fix and result.status is not Status.PASS:
            out.print(f"      {'':<{width}}  fix: {result.fix}", markup=False, highlight=False)
    counts = {status: sum(1 for r in results if r.status is status) for status in Status}
    out.print(
        f"{counts[Status.PASS]} pass, {counts[Status.WARN]} warn, {counts[Status.FAIL]} fail",
        markup=False,
        highlight=False,
    )
    if counts[Status.FAIL]:
        raise typer.Exit(1)
