"""Expand ingest arguments (files, folders, http(s) URLs) into parsed comparison lists."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from digest.errors import IngestError
from digest.ingest.json_source import load_json_text, parse_json_items, parse_json_items_skipping, parse_json_text
from digest.ingest.page_text import parse_page_text
from digest.ingest.schema import ComparisonData

SUFFIXES = (".txt", ".json")
MAX_BYTES = 5 * 1024 * 1024


@dataclass
class Source:
    name: str  # path or URL, as shown in messages
    items: list[ComparisonData] | None = None
    error: str | None = None
    skipped: list[str] = field(default_factory=list)  # bad items left out of a feed (skip_bad_items)


def _read_file(path: Path) -> list[ComparisonData]:
    if path.stat().st_size > MAX_BYTES:
        raise IngestError(f"{path}:1: expected a file under {MAX_BYTES // 1024 // 1024} MB")
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}:1: expected UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix.lower() == ".json":
        return parse_json_text(raw, str(path))
    return [parse_page_text(raw, str(path))]


def _read_url(url: str, timeout: float = 20.0, *, skip_bad_items: bool = False) -> Source:
    try:
        resp = httpx.get(url, timeout=timeout, follow_redirects=True, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise IngestError(f"{url}: cannot fetch ({exc.__class__.__name__}: {exc})") from None
    if resp.status_code != 200:
        raise IngestError(f"{url}: expected HTTP 200, got {resp.status_code}")
    if len(resp.content) > MAX_BYTES:
        raise IngestError(f"{url}: expected a response under {MAX_BYTES // 1024 // 1024} MB")
    data, text = load_json_text(resp.text, url)
    if not isinstance(data, list):
        raise IngestError(f"{url}:1: expected a JSON list of comparisons")
    if skip_bad_items:
        items, skipped = parse_json_items_skipping(data, url, text)
        return Source(url, items=items, skipped=skipped)
    return Source(url, items=parse_json_items(data, url, text))


def expand(args: list[str], *, skip_bad_items: bool = False) -> Iterator[Source]:
    """One Source per file or URL; a bad one carries its error and the rest still go in.

    `skip_bad_items` (configured feeds): a URL's bad items are left out and listed in `skipped`
    instead of failing the whole source, so one bad item never keeps the others out of the issue.
    """
    for arg in args:
        if arg.startswith(("http://", "https://")):
            try:
                yield _read_url(arg, skip_bad_items=skip_bad_items)
            except IngestError as exc:
                yield Source(arg, error=str(exc))
            continue
        path = Path(arg)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not files:
                yield Source(arg, error=f"{arg}: no .txt or .json files in this folder")
        elif path.is_file():
            files = [path]
        else:
            yield Source(arg, error=f"{arg}: no such file, folder or http(s) URL")
            continue
        for f in files:
            try:
                yield Source(str(f), items=_read_file(f))
            except IngestError as exc:
                yield Source(str(f), error=str(exc))
            except OSError as exc:
                yield Source(str(f), error=f"{f}: cannot be read ({exc.strerror})")


__all__ = ["Source", "expand", "parse_json_items"]
