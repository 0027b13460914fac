"""Property tests for what comes in: any Unicode string in any field of a comparison (JSON or page
text) and any visitor-typed name either gets a clear refusal naming where it is, or is stored, renders
into an email that compiles, and serializes into a message a mail server accepts.

Runs on SQLite and PostgreSQL (the stored JSON must round-trip on both). FUZZ_EXAMPLES=2000 searches
harder (`--hypothesis-show-statistics` shows how many were refused and how many rendered).
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from digest import plaintext
from digest.cycle.editions import compile_main
from digest.delivery.messages import IssueMessages, Recipient
from digest.errors import IngestError
from digest.ingest.json_source import parse_json_text
from digest.ingest.page_text import parse_page_text
from digest.ingest.schema import ComparisonData
from digest.ingest.store import upsert
from digest.links import Tokens
from digest.mail import domain_of, to_mime
from digest.runtime import Runtime
from digest.selection.scoring import Pick
from digest.storage.models import Comparison, Issue
from subscribers.addresses import AddressError, clean_name
from tests.conftest import SAMPLES, fresh_pg_url, make_runtime, write_project
from tests.support_serve import PLAIN

# Every code point, lone surrogates included (JSON can carry them as \ud800 escapes).
ANY_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON_FIELDS = [
    ("title",),
    ("intro",),
    ("url",),
    ("tools", 0, "category"),
    ("tools", 0, "name"),
    ("tools", 1, "tagline"),
    ("tools", 1, "price"),
    ("tools", 0, "description"),
    ("quotes", 0, "text"),
    ("quotes", 1, "text"),
]
PAGE = (SAMPLES / "cursor-background-agents-vs-smollm3.txt").read_text(encoding="utf-8")
PAGE_LINES = PAGE.split("\n")
REFUSAL = re.compile(r"^(?P<path>fuzz\.(json|txt)):(?P<line>\d+): \S.*", re.S)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_rt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        import shutil

        db = root / "digest.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), db)
        url = f"sqlite:///{db}"
    else:
        url = fresh_pg_url(request.getfixturevalue("pg_template"))
    rt = make_runtime(write_project(root / "project"), url)
    yield rt
    rt.close()


def assert_clear_refusal(exc: IngestError) -> None:
    event("refused")
    message = str(exc)
    assert REFUSAL.match(message), message
    assert plaintext.find(message) is None, message  # the message itself is safe to print
    assert "Traceback" not in message


def renders_and_serializes(rt: Runtime, items: list[ComparisonData]) -> None:
    """Store (upsert), read back, compile the issue, build one reader's copy and its MIME bytes."""
    event("rendered")
    with rt.sessions.begin() as s:
        upsert(
            s, items, default_url="https://verdicts.example.com/compare", published=datetime(2026, 11, 17, tzinfo=UTC)
        )
    with rt.sessions() as s:
        rows = [s.scalar(select(Comparison).where(Comparison.slug == i.slug)) for i in items]
        issue = Issue(id=1, week="2026-W47", number=3, status="sending", pins=[], excludes=[])
        picks = [Pick(row, 1.0, {}) for row in rows]
        main, compiled = compile_main(rt.config, issue, picks)
        s.expunge_all()
    assert compiled.html.lstrip().lower().startswith("<!doctype html")
    mail = IssueMessages(rt.settings, Tokens(rt.secret_key), issue, main, installation="test-install").build(
        Recipient(delivery_id=1, subscriber_id=1, email="reader@example.com", name=None)
    )
    raw = to_mime(mail, domain_of(rt.settings.sender.from_email)).as_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert plaintext.find(str(msg["Subject"])) is None
    assert plaintext.find(msg.get_body(("html",)).get_content(), multiline=True) is None


def _set(item: dict[str, Any], path: tuple[Any, ...], value: str) -> None:
    target: Any = item
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


@FUZZ
@given(field=st.sampled_from(JSON_FIELDS), value=ANY_TEXT, keep=st.booleans())
def test_any_text_in_any_json_field_is_refused_clearly_or_renders(fuzz_rt, field, value, keep) -> None:
    item = json.loads(json.dumps(PLAIN))
    item["title"] = "Fuzz Alpha vs Fuzz Beta"
    # Either the field is the random text, or the random text is spliced into a valid value.
    _set(item, field, value if not keep else _splice(item, field, value))
    text = json.dumps([item], indent=2)  # ASCII-escaped: lone surrogates travel as \ud800
    try:
        parsed = parse_json_text(text, "fuzz.json")
    except IngestError as exc:
        assert_clear_refusal(exc)
        assert "item 0: " in str(exc)  # names the item (and then the field)
        return
    renders_and_serializes(fuzz_rt, parsed)


def _splice(item: dict[str, Any], path: tuple[Any, ...], value: str) -> str:
    if path == ("title",):
        return f"{value} vs Fuzz Beta"
    if path == ("url",):
        return f"https://example.com/{value}"
    target: Any = item
    for key in path:
        target = target[key]
    return f"{target} {value}"


@FUZZ
@given(line=st.sampled_from([1, 2, 3, 4, 5, 10, 12, 13, 14, 22, 24, 25]), value=ANY_TEXT, splice=st.booleans())
@example(line=3, value="", splice=False)  # found by this test: a 100+ character "category" was a traceback
def test_any_text_on_any_line_of_a_page_is_refused_clearly_or_renders(fuzz_rt, line, value, splice) -> None:
    lines = list(PAGE_LINES)
    # Unique titles keep examples apart in the database; the value goes in whole or inside the line.
    lines[1] = f"Fuzz Page {abs(hash((line, value, splice)))} vs SmolLM3"
    lines[line] = (lines[line][:8] + value + lines[line][8:]) if splice else value
    raw = "\n".join(lines)
    try:
        parsed = parse_page_text(raw, "fuzz.txt")
    except IngestError as exc:
        assert_clear_refusal(exc)
        return
    renders_and_serializes(fuzz_rt, [parsed])


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_any_name_is_refused_with_a_reason_or_cleaned_to_plain_text(value) -> None:
    try:
        name = clean_name(value)
    except AddressError as exc:
        assert str(exc).startswith("name: ") and plaintext.find(str(exc)) is None, str(exc)
        return
    assert name is None or (plaintext.find(name) is None and name == name.strip() and len(name) <= 100)
