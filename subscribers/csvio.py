"""CSV import and export of subscribers.

Import reads `email[,name]` (a header row naming an `email` column is recognised, and `,`
`;` or tab as separator), reports every bad line with its number and reason, skips
duplicates, and adds the good lines in one transaction: as pending with a confirmation
queued, or active when the operator holds consent (`--confirmed --consent "..."`, recorded
on each person). Suppressed addresses and people who left are never brought back. The rows are
written set-based (subscribers.bulk_add): a million readers in about a minute, not an hour.

Export writes status and consent fields, preference changes and the person's own recorded clicks
and opens (JSON cells); text cells that a spreadsheet would run as a
formula are prefixed with `'` (and import strips that prefix again).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy import select

from digest.errors import UserError
from digest.reports.insights import people_clicks
from digest.runtime import Runtime
from digest.storage.models import Subscriber
from digest.weeks import as_utc, utcnow
from subscribers import preferences
from subscribers.addresses import AddressError, BulkNormalizer, clean_name
from subscribers.bulk_add import CHUNK, Candidate, Outcome, Progress, add_many

EMAIL_HEADERS = {"email", "e-mail", "email address", "e-mail address", "mail", "email_address"}
NAME_HEADERS = {"name", "first name", "first_name", "firstname", "full name", "full_name"}
EXPORT_COLUMNS = [
    "email",
    "name",
    "status",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "unsubscribe_reason",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
    "consent_source",
    "topics",
    "frequency",
    "paused_until",
    "preference_changes",
    "clicks",
]
_JSON_COLUMNS = ("preference_changes", "clicks")
MAX_CONSENT = 150
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


@dataclass
class ImportReport:
    added: int = 0
    activated: int = 0
    unchanged: int = 0
    left: int = 0  # unsubscribed, bounced or complained earlier: not re-added
    suppressed: int = 0
    confirmations: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, first line)


def _undefuse(value: str) -> str:
    return value[1:] if value.startswith("'") and _FORMULA.match(value[1:]) else value


def _defuse(value: str) -> str:
    return "'" + value if _FORMULA.match(value) else value


def read_rows(path: Path, progress: Progress | None = None) -> tuple[list[Candidate], ImportReport]:
    """Parse and validate every line; nothing touches the database yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: byte {exc.start} is not UTF-8; save the file as CSV UTF-8") from None
    del data  # a million lines: the decoded text is enough to hold
    report = ImportReport()
    rows: list[Candidate] = []
    seen: dict[str, int] = {}
    normalize_email = BulkNormalizer()
    lines = text.count("\n") + 1
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimiter = max(",;\t", key=first.count) if any(c in first for c in ",;\t") else ","
    # Lines as io.StringIO(text, newline="") gives them, without its copy of the text (4 bytes a character).
    reader = csv.reader((m.group(0) for m in _LINE.finditer(text)), delimiter=delimiter)
    email_col, name_col, header_seen = 0, 1, False
    while True:
        line = reader.line_num + 1  # where this record starts (a quoted field may span lines)
        if progress is not None and line % CHUNK == 0:
            progress("reading", line, lines)
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.bad.append((line, f"cannot be parsed as CSV ({exc}); the rest of the file was not read"))
            break
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if not header_seen:
            header_seen = True
            lowered = [c.lower() for c in cells]
            if any(c in EMAIL_HEADERS for c in lowered):
                email_col = next(i for i, c in enumerate(lowered) if c in EMAIL_HEADERS)
                name_col = next((i for i, c in enumerate(lowered) if c in NAME_HEADERS), -1)
                continue
        raw_email = _undefuse(cells[email_col]) if email_col < len(cells) else ""
        raw_name = _undefuse(cells[name_col]) if 0 <= name_col < len(cells) else ""
        try:
            address = normalize_email(raw_email)
            name = clean_name(raw_name)
        except AddressError as exc:
            report.bad.append((line, str(exc)))
            continue
        if address in seen:
            report.duplicates.append((line, seen[address]))
            continue
        seen[address] = line
        rows.append(Candidate(line, address, name))
    return rows, report


class _DryRun(Exception):
    """Raised inside the import's transaction to roll it back after counting."""


def import_csv(
    rt: Runtime,
    path: Path,
    *,
    confirmed: bool = False,
    consent: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Add the file's good lines in one transaction; the caller drains the confirmation queue.

    With `dry_run` the same reading and matching runs in a transaction that is rolled back: the
    counts are exactly what a real import would do now, and nothing is stored or queued.
    `progress(phase, done, total)` hears how far reading and storing got.
    """
    try:
        return _import(rt, path, confirmed=confirmed, consent=consent, dry_run=dry_run, progress=progress)
    except _DryRun as done:
        report: ImportReport = done.args[0]
        return report


def _import(
    rt: Runtime, path: Path, *, confirmed: bool, consent: str | None, dry_run: bool, progress: Progress | None
) -> ImportReport:
    if confirmed and not (consent or "").strip():
        raise UserError('--confirmed needs --consent "how these people agreed to get the newsletter"')
    consent_text = " ".join((consent or "").split())
    if len(consent_text) > MAX_CONSENT:
        raise UserError(f"--consent: longer than {MAX_CONSENT} characters")
    rows, report = read_rows(path, progress)
    source = f"import:{path.name}" + (f": {consent_text}" if confirmed else "")
    with rt.sessions.begin() as session:
        outcome = add_many(
            session, rows, confirmed=confirmed, source=source[:200], now=utcnow(), dry_run=dry_run, progress=progress
        )
        _count(report, outcome)
        if dry_run:
            raise _DryRun(report)
    return report


def _count(report: ImportReport, outcome: Outcome) -> None:
    report.added, report.activated, report.unchanged = outcome.added, outcome.activated, outcome.unchanged
    report.left, report.suppressed, report.confirmations = outcome.left, outcome.suppressed, outcome.confirmations


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return as_utc(value).isoformat(timespec="seconds")
    return _defuse(str(value))


def _export_rows(rt: Runtime, page: int = 1000) -> Iterator[list[str]]:
    last = 0
    while True:
        with rt.sessions() as session:
            subs = session.scalars(
                select(Subscriber).where(Subscriber.id > last).order_by(Subscriber.id).limit(page)
            ).all()
            ids = [sub.id for sub in subs]
            changes = preferences.histories(session, ids) if subs else {}
            clicks = people_clicks(session, rt.settings.tracking, ids) if subs else {}
        if not subs:
            return
        for sub in subs:
            row = {col: getattr(sub, col) for col in EXPORT_COLUMNS if col not in _JSON_COLUMNS}
            row["preference_changes"] = json.dumps(changes[sub.id], ensure_ascii=False) if sub.id in changes else ""
            row["clicks"] = json.dumps(clicks[sub.id], ensure_ascii=False) if sub.id in clicks else ""
            yield [_cell(row[col]) for col in EXPORT_COLUMNS]
        last = subs[-1].id


def export_csv(rt: Runtime, target: Path | None, stream: IO[str] | None = None) -> int:
    """Write every subscriber to `target` (atomically) or to `stream`; returns the count."""
    if target is None:
        assert stream is not None
        return _write(rt, stream)
    if target.is_dir():
        raise UserError(f"{target}: is a folder; give a file name such as subscribers.csv")
    if not target.parent.is_dir():
        raise UserError(f"{target.parent}: folder not found")
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            count = _write(rt, fh)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{target}: cannot be written ({exc.strerror})") from None
    return count


def _write(rt: Runtime, fh: IO[str]) -> int:
    writer = csv.writer(fh)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in _export_rows(rt):
        writer.writerow(row)
        count += 1
    return count
