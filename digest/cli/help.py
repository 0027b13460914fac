"""`digest --help` in the operator's words: commands in the order of the weekly work, plain metavars.

Typer lists commands in the order the modules happened to register them, and labels
values with Python types (`<list[str]>`, `<bool>`). Here the root lists them in
workflow order, flags show no value label, and every value option shows a plain name
(WEEK, SLUG, PATH) unless the option already sets one.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperGroup
from typer.models import ArgumentInfo, OptionInfo

if TYPE_CHECKING:
    # typer 0.29 vendors click as `typer._click` and overrides take its own types; they have no public alias.
    from typer._click import Command, Context

# The order an operator meets the commands in a week; anything not listed follows, as registered.
WORKFLOW = [
    "init",
    "demo",
    "doctor",
    "ingest",
    "comparisons",
    "select",
    "note",
    "preview",
    "send",
    "stats",
    "subscribers",
    "serve",
    "worker",
    "db",
    # digest subscribers ...
    "add",
    "import",
    "list",
    "count",
    "export",
    "unsubscribe-mail",
    "forget",
]

# Option name -> what the value is, where the option's own name does not say it.
METAVARS = {
    "pin": "SLUG",
    "exclude": "SLUG",
    "published": "DATE",
    "limit": "N",
    "poll": "SECONDS",
    "consent": "TEXT",
    "file": "PATH",
}


class PlainArgument(TyperArgument):
    """An argument shown as its metavar alone: `FILE`, not `{FILE} <path>`."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return name if self.required else f"[{name}]"


class WorkflowGroup(TyperGroup):
    """Lists its commands in workflow order; shows their arguments plainly."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(WORKFLOW)}
        return sorted(names, key=lambda n: (rank.get(n, len(WORKFLOW)), names.index(n)))

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        for param in command.params if command is not None else ():
            if type(param) is TyperArgument:
                param.__class__ = PlainArgument
        return command


def _is_flag(annotation: Any, info: OptionInfo) -> bool:
    return annotation in (bool, "bool") or isinstance(info.default, bool)


def _label(name: str) -> str:
    return METAVARS.get(name, name.upper().replace("_", "-"))


def _fix(callback: Any) -> None:
    for name, param in inspect.signature(callback).parameters.items():
        info = param.default
        if isinstance(info, OptionInfo) and info.metavar is None:
            info.metavar = "" if _is_flag(param.annotation, info) else _label(name)
        elif isinstance(info, ArgumentInfo) and info.metavar is None:
            info.metavar = _label(name)


def command_group(help: str) -> typer.Typer:
    """A `digest <group>` of sub-commands, with the same help style as the root."""
    return typer.Typer(help=help, no_args_is_help=True, cls=WorkflowGroup, rich_markup_mode=None)


def plain_metavars(app: typer.Typer) -> None:
    """Set the metavars of every command and sub-command of `app` (before it builds its Click group)."""
    for command in app.registered_commands:
        if command.callback is not None:
            _fix(command.callback)
    if app.registered_callback is not None and app.registered_callback.callback is not None:
        _fix(app.registered_callback.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            plain_metavars(group.typer_instance)
