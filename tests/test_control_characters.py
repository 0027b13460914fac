"""Control characters never reach a template, a header or a feed.

C0/C1 controls (tab and newline only where text may span lines), lone surrogates and Unicode
noncharacters are refused where they come in, with `path:line` for ingest files and the item and
field for JSON; a bad item in a configured feed is skipped and the week's issue still goes out; what
was stored before this rule existed still renders, and the archive feed stays well-formed XML.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select

from digest.cycle.send import send_week
from digest.errors import IngestError
from digest.ingest.json_source import parse_json_text
from digest.ingest.page_text import parse_page_text
from digest.storage.models import Comparison
from digest.weeks import Week
from subscribers.addresses import AddressError, clean_name
from tests.conftest import SAMPLES, apply_overrides, make_runtime, write_project
from tests.support_delivery import add_readers, seed_comparisons
from tests.support_serve import PLAIN
from tests.support_subscribers import client, counts

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
WEEK = Week.parse("2026-W47")
PAGE = (SAMPLES / "cursor-background-agents-vs-smollm3.txt").read_text(encoding="utf-8")
BAD = {
    "\x01": "U+0001",
    "\x1b": "U+001B",
    "\x7f": "U+007F",
    "\x85": "U+0085",
    "\x9b": "U+009B",
    "\ufffe": "U+FFFE",
    "\ufdd0": "U+FDD0",
    "\U0010ffff": "U+10FFFF",
}


@pytest.mark.parametrize("char,code", BAD.items())
def test_page_text_with_a_forbidden_character_is_refused_at_its_line(char, code) -> None:
    lines = PAGE.split("\n")
    lines[4] = lines[4][:6] + char + lines[4][6:]  # tool A's name, line 5
    with pytest.raises(IngestError) as info:
        parse_page_text("\n".join(lines), "pages/cursor.txt")
    message = str(info.value)
    assert message.startswith("pages/cursor.txt:5:") and code in message, message
    assert char not in message


def test_page_text_keeps_tabs_and_copy_paste_separators() -> None:
    lines = PAGE.split("\n")
    lines[4] = lines[4].replace(" ", "\t", 1)
    lines[12] = lines[12] + "\u2029" + "Second paragraph."
    data = parse_page_text("\n".join(lines), "p.txt")
    assert data.tools[0].name == "Cursor Background Agents"


def _json(items: list[dict]) -> str:  # type: ignore[type-arg]
    return json.dumps(items, indent=2)


@pytest.mark.parametrize("char,code", BAD.items())
def test_json_field_with_a_forbidden_character_names_the_item_and_field(char, code) -> None:
    bad = json.loads(json.dumps(PLAIN))
    bad["title"] = "Gamma Notes vs Delta Notes"
    bad["tools"][1]["description"] = f"Good{char}bad"
    with pytest.raises(IngestError) as info:
        parse_json_text(_json([PLAIN, bad]), "feed.json")
    message = str(info.value)
    assert message.startswith("feed.json:") and "item 1" in message and "tools[1].description" in message, message
    assert code in message and char not in message


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("title", "Alpha Notes vs\nBeta Notes", "U+000A"),
        ("title", "Alpha Notes vs\tBeta Notes", "U+0009"),
        ("title", "Alpha Notes vs\u2028Beta Notes", "U+2028"),
        ("title", "Alpha Notes vs \ud800 Beta Notes", "U+D800"),  # a lone surrogate from a JSON escape
        ("intro", "One\x00two", "U+0000"),
    ],
)
def test_single_line_fields_refuse_line_breaks_and_every_field_refuses_controls(field, value, code) -> None:
    item = {**PLAIN, field: value}
    with pytest.raises(IngestError) as info:
        parse_json_text(json.dumps(item), "one.json")
    assert field in str(info.value) and code in str(info.value), str(info.value)


def test_multi_line_fields_keep_newlines_and_tabs() -> None:
    item = json.loads(json.dumps(PLAIN))
    item["intro"] = "Two note takers.\nBoth free."
    item["tools"][0]["description"] = "Line one.\n\n\tIndented line two."
    item["quotes"][0]["text"] = "Fine.\nReally."
    [data] = parse_json_text(json.dumps(item), "ok.json")
    assert "\t" in data.tools[0].description and "\n" in data.intro


def test_a_name_with_a_control_character_is_refused_at_sign_up(rt) -> None:
    before = counts(rt)
    for name in ("Eve\x1b[31m", "Eve\x01", "Eve\u0085", "Eve\ufffe"):
        r = client(rt).post("/subscribe", json={"email": "eve@example.com", "name": name})
        assert r.status_code == 400 and r.json()["field"] == "name", (name, r.text)
    assert counts(rt) == before


def _serve(body: bytes) -> tuple[str, http.server.ThreadingHTTPServer]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/feed.json", server


def _named(title: str, a: str, b: str) -> dict:  # type: ignore[type-arg]
    item = json.loads(json.dumps(PLAIN))
    item["title"] = title
    item["tools"][0]["name"], item["tools"][1]["name"] = a, b
    item["published_at"] = (NOW - timedelta(days=1)).isoformat()
    return item


def test_a_bad_item_in_a_configured_feed_is_skipped_and_the_issue_goes_out(tmp_path, db_url, caplog) -> None:
    from digest.schedule.feeds import refresh_feeds

    bad = _named("Bad Notes vs Worse Notes", "Bad\u0001Notes", "Worse Notes")
    items = [
        _named("Alpha Notes vs Beta Notes", "Alpha Notes", "Beta Notes"),
        bad,
        _named("Gamma Notes vs Delta Notes", "Gamma Notes", "Delta Notes"),
    ]
    url, server = _serve(json.dumps(items).encode())
    try:
        cfg = write_project(tmp_path / "p")
        cfg.write_text(apply_overrides(cfg.read_text(), {"schedule": {"feeds": [url]}}))
        rt = make_runtime(cfg, db_url)
        with caplog.at_level(logging.WARNING):
            refresh_feeds(rt)
    finally:
        server.shutdown()
    with rt.sessions() as s:
        slugs = set(s.scalars(select(Comparison.slug)))
    assert slugs == {"alpha-notes-vs-beta-notes", "gamma-notes-vs-delta-notes"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "item 1" in logged and "U+0001" in logged and "skipped" in logged, logged
    add_readers(rt, 2)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 2
    rt.close()


def _store_raw(rt, title: str, mutate) -> None:  # type: ignore[no-untyped-def]
    """A comparison stored before ingest refused controls (written straight into the table)."""
    with rt.sessions.begin() as s:
        row = s.scalar(select(Comparison).where(Comparison.title == title))
        data = json.loads(json.dumps(row.data))
        mutate(data)
        row.data = data


def test_a_stored_comparison_with_controls_still_renders_and_the_feed_stays_xml(tmp_path, sqlite_url) -> None:
    from fastapi.testclient import TestClient

    from digest.web.app import create_app

    rt = make_runtime(write_project(tmp_path / "p"), sqlite_url)
    seed_comparisons(rt, published=NOW - timedelta(days=1))
    with rt.sessions() as s:
        title = s.scalars(select(Comparison.title)).first()

    def poison(data: dict) -> None:  # type: ignore[type-arg]
        data["title"] = data["title"].replace(" vs ", "\x01 vs ")
        data["tools"][0]["name"] += "\x01\x1b[31m\ufffe"
        data["tools"][0]["description"] += " \x0b\x85end"

    _store_raw(rt, title, poison)
    add_readers(rt, 2)
    result = send_week(rt, WEEK, manual=True, now=NOW)
    assert result.summary is not None and result.summary.sent == 2
    for path in (rt.config.outbox_dir / WEEK.key).glob("*.eml"):
        raw = path.read_bytes().decode("utf-8", "replace")
        assert "\x01" not in raw and "\x1b" not in raw
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert "\x01" not in str(msg["Subject"]) and "\x01" not in msg.get_body(("plain",)).get_content()
    feed = TestClient(create_app(rt)).get("/archive.xml")
    assert feed.status_code == 200
    ET.fromstring(feed.content)  # well-formed XML
    rt.close()


def test_clean_name_refuses_text_that_is_not_unicode() -> None:
    # A non-UTF-8 byte in a CLI argument arrives as a surrogate escape (`digest subscribers add --name`).
    with pytest.raises(AddressError, match="name:"):
        clean_name("Ann \udcff")
