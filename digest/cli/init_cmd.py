"""`digest init [DIR]`: a folder an operator owns, with the commented config and templates to edit.

An installed wheel carries the default config and templates as package data; init copies
them out so they can be edited and kept under the operator's own version control. It never
overwrites a file without `--force`, and on refusal it writes nothing at all.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import typer

from digest import defaults
from digest.cli import app
from digest.cli.context import out
from digest.errors import UserError


@dataclass(frozen=True)
class Planned:
    """One file init writes: where from, where to (relative to DIR, for messages)."""

    source: Path
    target: Path
    shown: str


def plan(folder: Path) -> list[Planned]:
    files = [Planned(defaults.CONFIG, folder / "config.toml", "config.toml")]
    for kind in defaults.EDITABLE_TEMPLATES:
        root = defaults.TEMPLATES / kind
        for source in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            rel = source.relative_to(root)
            files.append(Planned(source, folder / "templates" / kind / rel, f"templates/{kind}/{rel}"))
    return files


def _in_the_way(folder: Path) -> list[str]:
    """What already exists where init would write: the config, or a templates folder (edited copies)."""
    names = ["config.toml", *(f"templates/{kind}" for kind in defaults.EDITABLE_TEMPLATES)]
    return [name for name in names if (folder / name).exists()]


def init_folder(folder: Path, force: bool) -> list[Planned]:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder")
    existing = _in_the_way(folder) if folder.is_dir() else []
    if existing and not force:
        listed = ", ".join(existing)
        raise UserError(
            f"{folder}: {listed} already exist{'s' if len(existing) == 1 else ''}; nothing was "
            "written (--force overwrites the config and the packaged template files)"
        )
    files = plan(folder)
    try:
        for item in files:
            item.target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.source, item.target)
    except OSError as exc:
        raise UserError(f"{exc.filename or folder}: cannot write: {exc.strerror or exc}") from None
    return files


@app.command("init")
def init_cmd(
    folder: Path = typer.Argument(
        Path("."), help="The folder to set up (created if missing; default: here).", metavar="DIR"
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite config.toml and the template files."),
) -> None:
    """Write a commented config.toml and the email and page templates to edit into DIR."""
    folder = folder.expanduser().absolute()
    files = init_folder(folder, force)
    counts = {
        kind: sum(1 for f in files if f.shown.startswith(f"templates/{kind}/")) for kind in defaults.EDITABLE_TEMPLATES
    }
    parts = ["config.toml", *(f"templates/{kind}/ ({n} files)" for kind, n in counts.items())]
    out.print(f"wrote {', '.join(parts[:-1])} and {parts[-1]} in {folder}", markup=False, highlight=False)
    out.print("next:", markup=False)
    if folder != Path(os.getcwd()).absolute():
        out.print(f"  cd {folder}", markup=False, highlight=False)
    for line in (
        "  digest demo     # the weekly cycle on sample comparisons into var/outbox/: no account needed",
        "  digest doctor   # once config.toml has your site and sender: DNS, URLs and secrets checked",
        "  digest serve    # the sign-up pages, webhooks and the weekly schedule",
    ):
        out.print(line, markup=False, highlight=False)
