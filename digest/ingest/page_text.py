"""Parse a comparison page as the site publishes it in text form.

Layout: optional kicker, `A vs B`, an intro, then per tool: category, name,
tagline, `N%`, `Panel ship`, community (`—` = no votes), `Community`, price,
`Entry`, description; then `Reviewer scorecard` and the quotes (A, B per
reviewer); then the site footer. Errors name the line and what was expected.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from digest import plaintext
from digest.errors import IngestError
from digest.ingest.schema import ComparisonData, Quote, Tool, split_title

KICKER = "ai tool comparison"
_PCT = re.compile(r"^(\d{1,3})\s?%$")
_NO_VOTES = {"—", "–", "-", "--", "n/a", "none", ""}
_OPEN_QUOTES = "“\"„«‘'"
_CLOSE_QUOTES = "”\"“»’'"


_M = TypeVar("_M", bound=BaseModel)


@dataclass
class _Line:
    no: int  # 1-based line number in the file
    text: str


def clean_text(raw: str) -> str:
    """BOM, CRLF/CR, non-breaking and zero-width spaces: what copy-paste leaves behind."""
    raw = raw.lstrip("\ufeff")
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    raw = raw.replace("\u00a0", " ").replace("\u200b", "").replace("\u2028", "\n")
    return unicodedata.normalize("NFC", raw)


class _Cursor:
    def __init__(self, path: str, lines: list[_Line], last_line: int):
        self.path = path
        self.lines = lines
        self.i = 0
        self.last_line = last_line

    def fail(self, expected: str, line: _Line | None = None) -> IngestError:
        if line is None:
            line = self.lines[self.i] if self.i < len(self.lines) else None
        if line is None:
            return IngestError(f"{self.path}:{self.last_line}: expected {expected}, but the page ends here")
        snippet = line.text if len(line.text) <= 40 else line.text[:37] + "..."
        return IngestError(f"{self.path}:{line.no}: expected {expected}, found {snippet!r}")

    def peek(self, offset: int = 0) -> _Line | None:
        j = self.i + offset
        return self.lines[j] if j < len(self.lines) else None

    def take(self, expected: str) -> _Line:
        line = self.peek()
        if line is None:
            raise self.fail(expected)
        self.i += 1
        return line

    def expect_label(self, label: str, after: str) -> None:
        line = self.peek()
        if line is None or line.text.casefold() != label.casefold():
            raise self.fail(f"'{label}' after {after}")
        self.i += 1


def _build(model: type[_M], path: str, lines: dict[str, int], default_line: int, **values: Any) -> _M:
    """The model, or `path:line: field: what is wrong` naming the line the bad value came from."""
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "page"
        msg = err["msg"].removeprefix("Value error, ")
        raise IngestError(f"{path}:{lines.get(field, default_line)}: {field}: {msg}") from None


def _find_next_pct(cur: _Cursor, start: int) -> int | None:
    """The next line that is only a percentage: a tool's panel-ship value."""
    for j in range(start, len(cur.lines)):
        if _PCT.match(cur.lines[j].text):
            return j
    return None


def _parse_community(cur: _Cursor) -> int | None:
    line = cur.take("the community value after 'Panel ship'")
    value = line.text.strip()
    if value.casefold() in _NO_VOTES:
        return None
    m = _PCT.match(value)
    if not m or int(m.group(1)) > 100:
        raise cur.fail("a community percentage like '72%' or '—' after 'Panel ship'", line)
    return int(m.group(1))


def _parse_tool(cur: _Cursor, which: str, desc_end: str) -> Tool:
    pct_index = _find_next_pct(cur, cur.i)
    if pct_index is None:
        raise cur.fail(f"tool {which}'s panel-ship percentage (like '75%') followed by 'Panel ship'")
    head = cur.lines[cur.i : pct_index]
    if len(head) < 3:
        raise cur.fail(f"tool {which}'s category, name and tagline before the percentage")
    category, name, tagline = head[-3], head[-2], head[-1]
    extra = head[:-3]
    if extra:
        raise cur.fail(f"tool {which}'s category (3 lines before its percentage)", extra[0])
    cur.i = pct_index
    pct_line = cur.take("the panel-ship percentage")
    matched = _PCT.match(pct_line.text)
    assert matched is not None  # pct_index was found by this pattern
    pct = int(matched.group(1))
    if pct > 100:
        raise cur.fail("a panel-ship percentage from 0% to 100%", pct_line)
    cur.expect_label("Panel ship", "the percentage")
    community = _parse_community(cur)
    cur.expect_label("Community", "the community value")
    price_line = cur.take("the entry price after 'Community'")
    cur.expect_label("Entry", "the price")
    # Description: everything up to the next tool block or the scorecard.
    if desc_end == "tool":
        nxt = _find_next_pct(cur, cur.i)
        end = (nxt - 3) if nxt is not None else None
        if end is None or end <= cur.i:
            raise cur.fail("tool A's description, then tool B's category, name, tagline and percentage")
    else:
        end = next(
            (j for j in range(cur.i, len(cur.lines)) if cur.lines[j].text.casefold() == "reviewer scorecard"), None
        )
        if end is None:
            raise cur.fail("tool B's description followed by 'Reviewer scorecard'")
        if end <= cur.i:
            raise cur.fail("tool B's description before 'Reviewer scorecard'")
    description = "\n".join(line.text for line in cur.lines[cur.i : end])
    where = {
        "category": head[-3].no,
        "name": head[-2].no,
        "tagline": head[-1].no,
        "panel_ship": pct_line.no,
        "price": price_line.no,
        "description": cur.lines[cur.i].no if cur.i < end else price_line.no,
    }
    cur.i = end
    return _build(
        Tool,
        cur.path,
        where,
        pct_line.no,
        category=category.text,
        name=name.text,
        tagline=tagline.text,
        panel_ship=pct,
        community=community,
        price=price_line.text,
        description=description,
    )


def _strip_quote(text: str) -> str:
    if text and text[0] in _OPEN_QUOTES:
        text = text[1:]
    if text and text[-1] in _CLOSE_QUOTES:
        text = text[:-1]
    return text.strip()


def _parse_quotes(cur: _Cursor) -> list[tuple[int, str]]:
    """Each quote with the line it starts on."""
    quotes: list[tuple[int, str]] = []
    while True:
        line = cur.peek()
        if line is None or not line.text or line.text[0] not in _OPEN_QUOTES:
            break
        cur.i += 1
        parts = [line.text]
        # A quote that wraps over several lines ends at the line closing it.
        while parts[-1][-1] not in _CLOSE_QUOTES or (len(parts) == 1 and len(parts[0]) == 1):
            nxt = cur.peek()
            if nxt is None:
                raise cur.fail(f"the closing quote mark of the quote that starts on line {line.no}")
            parts.append(nxt.text)
            cur.i += 1
        quotes.append((line.no, _strip_quote(" ".join(parts))))
    return quotes


def parse_page_text(raw: str, path: str = "<page>") -> ComparisonData:
    """Parse one page; raises IngestError(`path:line: expected ...`)."""
    text = clean_text(raw).replace("\u2029", "\n")
    all_lines = text.split("\n")
    for no, raw_line in enumerate(all_lines, start=1):
        bad = plaintext.problem(raw_line, multiline=True)  # tabs are fine: whitespace is collapsed below
        if bad:
            raise IngestError(f"{path}:{no}: {bad}")
    lines = [_Line(i + 1, re.sub(r"\s+", " ", t).strip()) for i, t in enumerate(all_lines)]
    lines = [line for line in lines if line.text]
    cur = _Cursor(path, lines, last_line=max(1, len(all_lines)))
    if not lines:
        raise IngestError(f"{path}:1: expected a comparison page, but the file is empty")
    first = cur.peek()
    if first is not None and first.text.casefold() == KICKER:
        cur.i += 1
    title_line = cur.take("the title 'A vs B'")
    names = split_title(title_line.text)
    if not names:
        raise cur.fail("the title 'A vs B'", title_line)
    # Intro: the lines between the title and tool A's category.
    first_pct = _find_next_pct(cur, cur.i)
    intro, intro_line = "", title_line.no
    if first_pct is not None and first_pct - 3 > cur.i:
        intro_line = cur.lines[cur.i].no
        intro = " ".join(line.text for line in cur.lines[cur.i : first_pct - 3])
        cur.i = first_pct - 3
    tool_a = _parse_tool(cur, "A", desc_end="tool")
    tool_b = _parse_tool(cur, "B", desc_end="scorecard")
    cur.expect_label("Reviewer scorecard", "tool B's description")
    quotes = _parse_quotes(cur)
    if not quotes:
        raise cur.fail("reviewer quotes (starting with a quote mark) after 'Reviewer scorecard'")
    if len(quotes) % 2:
        raise cur.fail(f"an even number of reviewer quotes (A, B per reviewer), found {len(quotes)}")
    if cur.peek() is None:
        raise cur.fail("the site footer after the reviewer quotes (is the page truncated?)")
    built = [
        _build(Quote, cur.path, {}, no, tool="a" if i % 2 == 0 else "b", reviewer=i // 2 + 1, text=q)
        for i, (no, q) in enumerate(quotes)
    ]
    return _build(
        ComparisonData,
        cur.path,
        {"title": title_line.no, "intro": intro_line},
        title_line.no,
        title=title_line.text,
        intro=intro,
        tools=[tool_a, tool_b],
        quotes=built,
    )
