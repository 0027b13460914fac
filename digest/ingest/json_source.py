"""Parse JSON comparison sources: one object or a list of objects (schemas/comparison.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from digest import plaintext
from digest.errors import IngestError
from digest.ingest.page_text import clean_text
from digest.ingest.schema import MULTILINE_FIELDS, ComparisonData


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _item_line(text: str, index: int) -> int:
    """Best-effort line of the index-th top-level object in a JSON list, for error messages."""
    depth, count, line = 0, -1, 1
    in_str = esc = False
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            if depth == 1 and ch == "{":
                count += 1
                if count == index:
                    return line
            depth += 1
        elif ch in "]}":
            depth -= 1
    return 1


def _bad_string(value: Any, loc: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str] | None:
    """The first string (or field name) in a raw JSON item holding a character text may not carry."""
    if isinstance(value, str):
        bad = plaintext.problem(value, multiline=bool(loc) and loc[-1] in MULTILINE_FIELDS)
        return (loc, bad) if bad else None
    if isinstance(value, dict):
        for key, child in value.items():
            bad = plaintext.problem(str(key))
            if bad:
                return loc, f"a field name: {bad}"
            found = _bad_string(child, (*loc, key))
            if found:
                return found
    if isinstance(value, list):
        for i, child in enumerate(value):
            found = _bad_string(child, (*loc, i))
            if found:
                return found
    return None


def _parse_item(item: Any, path: str, line: int, prefix: str) -> ComparisonData:
    if not isinstance(item, dict):
        raise IngestError(f"{path}:{line}: {prefix}expected a comparison object")
    found = _bad_string(item)
    if found:
        loc, msg = found
        raise IngestError(f"{path}:{line}: {prefix}{_where(loc) or 'object'}: {msg}")
    try:
        return ComparisonData.model_validate(item)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        where = _where(err["loc"]) or "object"
        raise IngestError(f"{path}:{line}: {prefix}{where}: {msg}") from None


def _items(items: Any, path: str) -> tuple[list[Any], bool]:
    if isinstance(items, dict):
        return [items], True
    if isinstance(items, list):
        return items, False
    raise IngestError(f"{path}:1: expected a comparison object or a list of them")


def parse_json_items(items: Any, path: str, source_text: str = "") -> list[ComparisonData]:
    """All of them or an IngestError naming the first bad item and field (an ingest file goes in whole)."""
    rows, single = _items(items, path)
    out = [
        _parse_item(item, path, 1 if single else _item_line(source_text, i), "" if single else f"item {i}: ")
        for i, item in enumerate(rows)
    ]
    slugs = [c.slug for c in out]
    dupes = {s for s in slugs if slugs.count(s) > 1}
    if dupes:
        raise IngestError(f"{path}:1: expected each comparison once, found {sorted(dupes)[0]!r} twice")
    return out


def parse_json_items_skipping(items: Any, path: str, source_text: str = "") -> tuple[list[ComparisonData], list[str]]:
    """For feeds: the good items, and one message per bad item skipped (a feed never stops the issue)."""
    rows, single = _items(items, path)
    out: list[ComparisonData] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(rows):
        line = 1 if single else _item_line(source_text, i)
        prefix = "" if single else f"item {i}: "
        try:
            parsed = _parse_item(item, path, line, prefix)
        except IngestError as exc:
            skipped.append(f"{exc}; item skipped")
            continue
        if parsed.slug in seen:
            skipped.append(f"{path}:{line}: {prefix}{parsed.slug!r} appears twice; the second is skipped")
            continue
        seen.add(parsed.slug)
        out.append(parsed)
    return out, skipped


def load_json_text(raw: str, path: str = "<json>") -> tuple[Any, str]:
    """The decoded JSON and the cleaned text it came from (for item line numbers)."""
    text = clean_text(raw)
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path}:{exc.lineno}: expected valid JSON ({exc.msg})") from None
    except RecursionError:
        raise IngestError(f"{path}:1: expected JSON nested less deeply") from None


def parse_json_text(raw: str, path: str = "<json>") -> list[ComparisonData]:
    data, text = load_json_text(raw, path)
    return parse_json_items(data, path, text)
