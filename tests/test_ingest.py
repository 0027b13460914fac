"""Comparison ingest: page text and JSON, files, folders and URLs; errors name file and line."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import func, select

from digest.errors import IngestError
from digest.ingest.page_text import parse_page_text
from digest.ingest.schema import ComparisonData, json_schema, slugify
from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.storage.models import Comparison
from tests.conftest import ROOT, SAMPLES

SMOL = SAMPLES / "cursor-background-agents-vs-smollm3.txt"
MISTRAL = SAMPLES / "cursor-background-agents-vs-mistral-3-small.txt"


def test_smollm3_page_parses_every_field() -> None:
    c = parse_page_text(SMOL.read_text(), str(SMOL))
    assert c.title == "Cursor Background Agents vs SmolLM3"
    assert c.slug == "cursor-background-agents-vs-smollm3"
    assert c.intro.startswith("Which one should you ship with?")
    a, b = c.tools
    assert (a.category, a.name, a.panel_ship, a.community, a.price) == (
        "Developer Tools",
        "Cursor Background Agents",
        100,
        None,
        "Free",
    )
    assert a.tagline == "Assign async coding tasks to AI agents, get back pull requests"
    assert a.description.startswith(
        "Cursor Background Agents lets developers assign long-running coding tasks—refactors"
    )
    assert (b.category, b.name, b.panel_ship, b.community, b.price) == ("Developer Tools", "SmolLM3", 100, None, "Free")
    assert b.tagline == "3B parameter model that punches above its weight class"
    assert b.description.endswith("where larger models are impractical.")
    qa, qb = c.quotes_for("a"), c.quotes_for("b")
    assert len(qa) == 4 and len(qb) == 4
    assert [q.reviewer for q in qa] == [1, 2, 3, 4]
    assert qa[0].text.startswith("The primitive here is an isolated, stateful code execution environment")
    assert qb[0].text.startswith("The primitive here is clean: a fine-tuned 3B dense transformer")
    assert qa[3].text.startswith("The buyer is already inside Cursor Pro")
    assert qb[3].text.startswith("The buyer here is not an end user")
    assert qb[3].text.endswith("That's a bet I'd take.")  # closing curly quote stripped
    assert all(not q.text.startswith("“") for q in c.quotes)


def test_mistral_page_parses_every_field() -> None:
    c = parse_page_text(MISTRAL.read_text(), str(MISTRAL))
    assert c.slug == "cursor-background-agents-vs-mistral-3-small"
    a, b = c.tools
    assert b.name == "Mistral 3 Small" and b.panel_ship == 75 and b.community is None and b.price == "Free"
    assert b.tagline == "7B on-device model with function calling, Apache 2.0 licensed"
    assert len(c.quotes_for("a")) == 4 and len(c.quotes_for("b")) == 4
    assert c.quotes_for("b")[1].text.startswith("The category is small open-weight models")
    assert c.quotes_for("b")[3].text.startswith("The buyer here is an enterprise infrastructure team")


def test_messy_copy_paste_parses_the_same() -> None:
    raw = SMOL.read_text()
    clean = parse_page_text(raw, "clean.txt")
    messy = "\ufeff" + "\r\n".join(
        f"  {line}\t" + ("\r\n" if i % 5 == 0 else "") for i, line in enumerate(raw.split("\n"))
    )
    assert parse_page_text(messy, "messy.txt") == clean


def test_straight_quotes_community_votes_and_non_ascii() -> None:
    raw = SMOL.read_text().replace("“", '"').replace("”", '"').replace("SmolLM3", "Ünïcode Modèl 智")
    raw = raw.replace("—\nCommunity", "64%\nCommunity", 1)
    c = parse_page_text(raw, "x.txt")
    assert c.tools[1].name == "Ünïcode Modèl 智"
    assert c.tools[0].community == 64 and c.tools[1].community is None
    assert c.slug == "cursor-background-agents-vs-unicode-model-智"
    assert len(c.quotes) == 8 and not c.quotes[0].text.startswith('"')


@pytest.mark.parametrize(
    "cut, expected",
    [
        (7, "x.txt:7: expected 'Panel ship' after the percentage"),
        (8, "x.txt:8: expected the community value after 'Panel ship'"),
        (24, "x.txt:24: expected reviewer quotes"),
        (27, "x.txt:27: expected an even number of reviewer quotes"),
        (32, "x.txt:32: expected the site footer after the reviewer quotes"),
    ],
)
def test_truncated_page_is_refused_with_file_and_line(cut: int, expected: str) -> None:
    lines = SMOL.read_text().split("\n")[:cut]
    with pytest.raises(IngestError) as exc:
        parse_page_text("\n".join(lines), "x.txt")
    assert str(exc.value).startswith(expected)


def test_wrong_label_names_the_line() -> None:
    raw = SMOL.read_text().replace("Panel ship", "Panel shipped", 1)
    with pytest.raises(IngestError, match=r"^x.txt:\d+: expected 'Panel ship' after the percentage"):
        parse_page_text(raw, "x.txt")


def test_shipped_json_schema_matches_the_model() -> None:
    shipped = json.loads((ROOT / "schemas" / "comparison.schema.json").read_text())
    assert shipped == json_schema()
    sample = parse_page_text(SMOL.read_text()).model_dump(mode="json", exclude_none=True)
    jsonschema.validate(sample, shipped)


def _json_item(title: str = "Alpha vs Beta", **extra: object) -> dict:
    return {
        "title": title,
        "url": "https://verdicts.example.com/compare/x",
        "published_at": "2026-11-16T09:00:00Z",
        "community_votes": 40,
        "tools": [
            {
                "category": "LLM",
                "name": title.split(" vs ")[0],
                "tagline": "t",
                "panel_ship": 80,
                "community": 70,
                "price": "$10/mo",
                "description": "d",
            },
            {
                "category": "LLM",
                "name": title.split(" vs ")[1],
                "tagline": "t",
                "panel_ship": 40,
                "community": None,
                "price": "Free",
                "description": "d",
            },
        ],
        "quotes": [{"tool": "a", "reviewer": 1, "text": "Good."}, {"tool": "b", "reviewer": 1, "text": "Meh."}],
        **extra,
    }


def test_json_file_folder_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "in" / "good.json"
    good.parent.mkdir()
    good.write_text(json.dumps([_json_item(), _json_item("Gamma vs Delta")], indent=2))
    bad = tmp_path / "in" / "bad.json"
    items = [_json_item("Eps vs Zeta"), _json_item("Eta vs Theta")]
    items[1]["tools"][0]["panel_ship"] = 140
    bad.write_text(json.dumps(items, indent=2))
    (tmp_path / "in" / "page.txt").write_text(SMOL.read_text())
    sources = {Path(s.name).name: s for s in expand([str(tmp_path / "in")])}
    assert len(sources["good.json"].items) == 2
    assert len(sources["page.txt"].items) == 1
    assert sources["bad.json"].items is None
    assert sources["bad.json"].error.startswith(f"{bad}:")
    assert "item 1: tools[0].panel_ship" in sources["bad.json"].error
    line = int(sources["bad.json"].error.split(":")[1])
    assert bad.read_text().split("\n")[line - 1].strip() == "{"


def test_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.json"
    f.write_text('[\n  {"title": "A vs B",\n  oops\n]')
    (src,) = list(expand([str(f)]))
    assert src.error.startswith(f"{f}:3: expected valid JSON")


def test_missing_path_and_bad_url() -> None:
    (src,) = list(expand(["/nonexistent/file.txt"]))
    assert "no such file" in src.error
    (src,) = list(expand(["http://127.0.0.1:9/nothing.json"]))
    assert src.error.startswith("http://127.0.0.1:9/nothing.json: cannot fetch")


def test_url_returning_a_json_list() -> None:
    body = json.dumps([_json_item()]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/feed.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if self.path == "/feed.json" else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        (src,) = list(expand([f"{base}/feed.json"]))
        assert src.error is None and src.items[0].slug == "alpha-vs-beta"
        (missing,) = list(expand([f"{base}/missing.json"]))
        assert "expected HTTP 200, got 404" in missing.error
    finally:
        server.shutdown()


def test_upsert_is_a_noop_when_unchanged_and_reports_changes(rt) -> None:
    page = parse_page_text(SMOL.read_text())
    when = datetime(2026, 11, 16, 9, tzinfo=UTC)
    with rt.sessions.begin() as s:
        assert [r.action for r in upsert(s, [page], default_url="https://x.test/c", published=when)] == ["added"]
    with rt.sessions.begin() as s:
        assert [r.action for r in upsert(s, [page], default_url="https://x.test/c")] == ["unchanged"]
    changed = page.model_copy(update={"intro": "New intro"})
    with rt.sessions.begin() as s:
        assert [r.action for r in upsert(s, [changed], default_url="https://x.test/c")] == ["updated"]
    with rt.sessions() as s:
        row = s.scalar(select(Comparison))
        assert row.data["intro"] == "New intro"
        assert row.url == "https://x.test/c/cursor-background-agents-vs-smollm3"
        assert row.published_at.replace(tzinfo=UTC) == when  # unchanged without --published
        assert s.scalar(select(func.count()).select_from(Comparison)) == 1
        assert len(row.data["quotes"]) == 8


def test_slugify() -> None:
    assert slugify("Cursor Background Agents vs SmolLM3") == "cursor-background-agents-vs-smollm3"
    assert slugify("  Café  AI  vs  GPT‑5 (beta) ") == "cafe-ai-vs-gpt-5-beta"


def test_title_must_be_a_vs_b() -> None:
    with pytest.raises(Exception, match="expected a title of the form 'A vs B'"):
        ComparisonData.model_validate({**_json_item(), "title": "Just one tool"})


def test_an_international_url_is_stored_as_an_ascii_uri(rt) -> None:
    """A URL with non-ASCII characters (an IRI, RFC 3987) is stored as the URI it stands for: IDNA host,
    %-encoded UTF-8 path and query; a default URL made from a non-ASCII title too. A `Location` header
    and every email carry ASCII only."""
    given = ComparisonData.model_validate(
        _json_item("Alpha vs Beta", url="https://bücher.example/compare/日本-vs-x?q=é")
    )
    default = ComparisonData.model_validate(_json_item("日本 vs Café", url=None))
    with rt.sessions.begin() as s:
        upsert(s, [given, default], default_url="https://verdicts.example.com/compare")
    with rt.sessions() as s:
        urls = {slug: url for slug, url in s.execute(select(Comparison.slug, Comparison.url))}
    assert urls == {
        "alpha-vs-beta": "https://xn--bcher-kva.example/compare/%E6%97%A5%E6%9C%AC-vs-x?q=%C3%A9",
        "日本-vs-cafe": "https://verdicts.example.com/compare/%E6%97%A5%E6%9C%AC-vs-cafe",
    }
    with rt.sessions() as s:
        assert all(row.data["url"] == urls[row.slug] for row in s.scalars(select(Comparison)))


@pytest.mark.parametrize(
    "url, reason",
    [
        ("https://例え.jp:99999/x", "port"),
        ("https://例え.jp:8o/x", "port"),
        ("https://例え..jp/x", "host"),
        ("https://[::1/é", "host"),
    ],
)
def test_a_url_with_no_uri_form_is_refused_with_file_line_and_field(tmp_path: Path, url: str, reason: str) -> None:
    """An IRI that cannot become a URI (a port out of range, a host IDNA cannot write) is refused at ingest
    like any bad input, naming file, line and field: the whole file stores nothing (README "Comparison
    sources"), rather than an unexpected error from the store or a link no reader can follow."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([_json_item(), _json_item("Eps vs Zeta", url=url)], indent=2))
    (src,) = list(expand([str(bad)]))
    assert src.items is None and src.error is not None
    assert src.error.startswith(f"{bad}:"), src.error
    assert f"item 1: url: expected an http(s) URL whose {reason}" in src.error, src.error
    line = int(src.error.split(":")[1])
    assert bad.read_text().split("\n")[line - 1].strip() == "{"


def test_a_url_keeps_its_userinfo_and_ip_literal_when_stored(rt) -> None:
    """The authority of an IRI is kept whole in its URI: userinfo and an IPv6 literal's brackets."""
    items = [
        ComparisonData.model_validate(_json_item("Alpha vs Beta", url="https://user@exämple.com/é")),
        ComparisonData.model_validate(_json_item("Gamma vs Delta", url="https://[::1]:8080/é")),
    ]
    with rt.sessions.begin() as s:
        upsert(s, items, default_url="https://verdicts.example.com/compare")
    with rt.sessions() as s:
        urls = {slug: url for slug, url in s.execute(select(Comparison.slug, Comparison.url))}
    assert urls == {
        "alpha-vs-beta": "https://user@xn--exmple-cua.com/%C3%A9",
        "gamma-vs-delta": "https://[::1]:8080/%C3%A9",
    }
