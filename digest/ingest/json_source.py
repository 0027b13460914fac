"""Parse JSON comparison sources: one object or a list of objects (schemas/comparison.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from digest.errors import IngestError
from digest.ingest.page_text import clean_text
from digest.ingest.schema import ComparisonData


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


def parse_json_items(items: Any, path: str, source_text: str = "") -> list[ComparisonData]:
    if isinstance(items, dict):
        items, single = [items], True
    elif isinstance(items, list):
        single = False
    else:
        raise IngestError(f"{path}:1: expected a comparison object or a list of them")
    out: list[ComparisonData] = []
    for index, item in enumerate(items):
        line = 1 if single else _item_line(source_text, index)
        prefix = "" if single else f"item {index}: "
        if not isinstance(item, dict):
            raise IngestError(f"{path}:{line}: {prefix}expected a comparison object")
        try:
            out.append(ComparisonData.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            msg = err["msg"].removeprefix("Value error, ")
            where = _where(err["loc"]) or "object"
            raise IngestError(f"{path}:{line}: {prefix}{where}: {msg}") from None
    slugs = [c.slug for c in out]
    dupes = {s for s in slugs if slugs.count(s) > 1}
    if dupes:
        raise IngestError(f"{path}:1: expected each comparison once, found {sorted(dupes)[0]!r} twice")
    return out


def parse_json_text(raw: str, path: str = "<json>") -> list[ComparisonData]:
    text = clean_text(raw)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path}:{exc.lineno}: expected valid JSON ({exc.msg})") from None
    return parse_json_items(data, path, text)
