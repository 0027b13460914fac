"""Read the local outbox (`<outbox>/<folder>/<key>-<to>.eml`) so the preview can list and open what was sent.

Only names the outbox transport itself writes are accepted, and every path is checked to
stay inside the outbox folder: a crafted URL cannot read other files.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from digest.errors import UserError

_SAFE = re.compile(r"^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,200}$")
HEADER_BYTES = 32 * 1024


@dataclass
class Folder:
    name: str
    count: int
    latest: datetime | None


@dataclass
class Entry:
    folder: str
    name: str
    to: str
    subject: str
    date: str
    size: int
    modified: datetime


@dataclass
class Opened:
    entry: Entry
    headers: list[tuple[str, str]]
    html: str | None
    text: str | None
    raw: bytes
    attachments: list[str] = field(default_factory=list)


def _mtime(p: Path) -> datetime:
    return datetime.fromtimestamp(p.stat().st_mtime, UTC)


def list_folders(root: Path) -> list[Folder]:
    """Folders newest first (week folders, `test`, `transactional`)."""
    if not root.is_dir():
        return []
    out = []
    for d in root.iterdir():
        if d.is_dir() and _SAFE.match(d.name):
            files = list(d.glob("*.eml"))
            latest = max((_mtime(f) for f in files), default=None)
            out.append(Folder(d.name, len(files), latest))
    return sorted(out, key=lambda f: (f.latest or datetime.min.replace(tzinfo=UTC), f.name), reverse=True)


def _path(root: Path, folder: str, name: str | None = None) -> Path:
    if not _SAFE.match(folder) or (name is not None and (not _SAFE.match(name) or not name.endswith(".eml"))):
        raise UserError("outbox: no such message")
    base = root.resolve()
    p = (base / folder / name) if name is not None else (base / folder)
    if base not in p.resolve().parents:
        raise UserError("outbox: no such message")
    return p


def _entry(folder: str, p: Path, head: bytes) -> Entry:
    msg = email.message_from_bytes(head, policy=email.policy.default)
    return Entry(
        folder,
        p.name,
        str(msg.get("To", "")),
        str(msg.get("Subject", "")),
        str(msg.get("Date", "")),
        p.stat().st_size,
        _mtime(p),
    )


def list_messages(root: Path, folder: str, limit: int = 200) -> tuple[list[Entry], int]:
    """The newest `limit` messages of a folder (headers only) and how many it holds."""
    d = _path(root, folder)
    if not d.is_dir():
        raise UserError(f"outbox: no folder {folder!r}")
    files = sorted(d.glob("*.eml"), key=lambda f: (f.stat().st_mtime_ns, f.name), reverse=True)
    entries = []
    for f in files[:limit]:
        with open(f, "rb") as fh:
            head = fh.read(HEADER_BYTES).split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        entries.append(_entry(folder, f, head + b"\n\n"))
    return entries, len(files)


def open_message(root: Path, folder: str, name: str) -> Opened:
    p = _path(root, folder, name)
    if not p.is_file():
        raise UserError("outbox: no such message")
    raw = p.read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    html_part = msg.get_body(preferencelist=("html",))
    text_part = msg.get_body(preferencelist=("plain",))
    attachments = [a.get_filename() or a.get_content_type() for a in msg.iter_attachments()]
    return Opened(
        _entry(folder, p, raw),
        [(k, str(v)) for k, v in msg.items()],
        html_part.get_content() if html_part is not None else None,
        text_part.get_content() if text_part is not None else None,
        raw,
        attachments,
    )
