"""`digest`: the operator's command line. Every command takes --config and never shows a traceback."""

from __future__ import annotations

import logging
import os
import sys

import typer

from digest.cli.context import state
from digest.cli.help import WorkflowGroup, plain_metavars
from digest.cli.output import make_console
from digest.errors import UserError

app = typer.Typer(
    help="Weekly AI Tool Verdicts: ingest comparisons, pick the week's best, send the digest.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=WorkflowGroup,
    rich_markup_mode=None,
)
err = make_console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from digest.defaults import version

        print(f"digest {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    config: str = typer.Option(
        None, "--config", "-c", help="Path to config.toml (default: ./config.toml or $DIGEST_CONFIG).", metavar="PATH"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens."),
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
    ),
) -> None:
    state.config_path = config
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _register() -> None:
    """Each command module adds its commands to `app` when imported."""
    from digest.cli import delivery_cmd, doctor_cmd, init_cmd, pipeline, preview_cmd, serve_cmd, subscribers_cmd  # noqa: F401

    plain_metavars(app)


def main() -> None:
    _register()
    try:
        app()
    except UserError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("DIGEST_DEBUG"):
            raise
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            err.print(f"error: database: {str(exc.orig).strip().splitlines()[0]}", markup=False)
        else:
            err.print(
                f"error: unexpected {type(exc).__name__}: {exc} (DIGEST_DEBUG=1 shows the traceback)", markup=False
            )
        sys.exit(1)
