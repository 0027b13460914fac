"""`digest subscribers ...`: the operator's view of the list."""

from __future__ import annotations

import typer

from digest.cli import app
from digest.cli.context import out, runtime
from subscribers.api import add_subscriber

subscribers_app = typer.Typer(help="Subscribers: add, list, import, export, forget.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")


@subscribers_app.command("add")
def subscribers_add(
    email: str = typer.Argument(..., help="Email address."),
    name: str = typer.Option(None, "--name", help="Display name."),
    confirmed: bool = typer.Option(False, "--confirmed", help="Skip double opt-in (you hold consent)."),
) -> None:
    """Add one subscriber (pending unless --confirmed)."""
    rt = runtime()
    with rt.sessions.begin() as session:
        result = add_subscriber(session, email, name=name, confirmed=confirmed, source="cli")
    if result.action == "suppressed":
        out.print(f"{result.subscriber.email}: on the suppression list (bounced, complained or erased); not added",
                  markup=False)
        raise typer.Exit(1)
    out.print(f"{result.action}: {result.subscriber.email} ({result.subscriber.status})", markup=False)
