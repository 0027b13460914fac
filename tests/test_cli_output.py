"""What the operator reads in the terminal: honest stats, tables that never cut what is typed
next, help in the operator's words, and nothing a visitor typed can drive the terminal."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from digest.storage.models import Subscriber
from subscribers import lifecycle
from subscribers.api import add_subscriber
from tests.conftest import make_runtime, write_project
from tests.support_delivery import add_readers, digest_cli, seed_comparisons
from tests.support_subscribers import send_issue

SECRET = "test-secret-key-0123456789"
W47 = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)


def _env(db_url: str, **extra: str) -> dict[str, str]:
    return {"DIGEST_DATABASE_URL": db_url, "DIGEST_SECRET_KEY": SECRET, **extra}


def _outbox_issue(tmp_path: Path, db_url: str, readers: int = 20):  # type: ignore[no-untyped-def]
    cfg = write_project(tmp_path / "project")
    rt = make_runtime(cfg, db_url)
    seed_comparisons(rt, published=W47 - timedelta(days=1))
    emails = add_readers(rt, readers)
    issue_id = send_issue(rt, "2026-W47", W47)
    return cfg, rt, emails, issue_id


def _row(stdout: str, label: str) -> str:
    return next(line for line in stdout.splitlines() if re.match(rf"\W*{label}\b", line.strip("│ ")))


# -- digest stats --------------------------------------------------------------------------


def test_stats_says_n_a_for_what_the_outbox_cannot_measure_and_lists_unsubscribe_reasons(tmp_path, db_url) -> None:
    cfg, rt, emails, issue_id = _outbox_issue(tmp_path, db_url)
    given = {
        emails[0]: ("too_many", ""),
        emails[1]: ("too_many", ""),
        emails[2]: ("not_relevant", "more agents"),
        emails[3]: ("", ""),
    }
    with rt.sessions.begin() as s:
        for address, (code, text) in given.items():
            sub = s.scalar(select(Subscriber).where(Subscriber.email == address))
            assert lifecycle.unsubscribe(s, sub, issue_id=issue_id, method="page")
            if code:
                lifecycle.set_reason(s, sub, code=code, text=text, issue_id=issue_id)
        sub = s.scalar(select(Subscriber).where(Subscriber.email == emails[0]))
        lifecycle.set_reason(s, sub, code="too_many", text="again", issue_id=issue_id)  # counted once
    result = digest_cli(cfg, _env(db_url), "stats")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for key in ("delivered", "bounced", "complained", "opened", "clicked"):
        row = _row(out, key)
        assert "n/a" in row and "%" not in row, row
    assert "0.0%" not in "".join(_row(out, k) for k in ("delivered", "bounced", "complained", "opened", "clicked"))
    assert "20.0%" in _row(out, "unsubscribed")  # 4 of 20: measured, by our own link
    assert "does not report" in out and "outbox" in out
    reasons = out.split("unsubscribe reasons given:", 1)[1]
    assert re.search(r"2\s+Too many emails", reasons), out
    assert re.search(r"1\s+The content is not relevant to me", reasons), out
    data = json.loads(digest_cli(cfg, _env(db_url), "stats", "--json").stdout)
    assert data["unmeasured"] == ["delivered", "bounced", "complained", "opened", "clicked"]
    assert data["rates"]["opened"] is None and data["rates"]["unsubscribed"] == 0.2
    assert data["unsubscribe_reasons"] == {"too_many": 2, "not_relevant": 1}
    rt.close()


# -- tables --------------------------------------------------------------------------------


def test_select_and_subscribers_list_never_cut_slugs_or_addresses(tmp_path, sqlite_url) -> None:
    cfg, rt, _, _ = _outbox_issue(tmp_path, sqlite_url, readers=1)
    long_address = "a.very.long.local.part.for.testing.truncation@subdomain.example-newsletter.com"
    with rt.sessions.begin() as s:
        add_subscriber(s, long_address, name="Someone With A Rather Long Display Name Indeed", confirmed=True)
    with rt.sessions() as s:
        from digest.storage.models import Comparison

        slugs = list(s.scalars(select(Comparison.slug)))
    assert max(len(slug) for slug in slugs) > 30
    for tty in ("1", ""):  # a narrow terminal, and a pipe
        env = _env(sqlite_url, COLUMNS="80", TTY_COMPATIBLE=tty) if tty else _env(sqlite_url)
        picks = digest_cli(cfg, env, "select", "--week", "2026-W47")
        assert picks.returncode == 0, picks.stderr
        assert "…" not in picks.stdout
        for slug in slugs:
            assert slug in picks.stdout, picks.stdout
        listing = digest_cli(cfg, env, "subscribers", "list")
        assert "…" not in listing.stdout
        assert long_address in listing.stdout, listing.stdout
    rt.close()


# -- help ----------------------------------------------------------------------------------


def test_help_shows_plain_metavars_and_commands_in_workflow_order(tmp_path) -> None:
    cfg = write_project(tmp_path / "project")
    env = {"COLUMNS": "100"}
    root = digest_cli(cfg, env, "--help")
    assert root.returncode == 0
    listed = re.findall(r"^  ([a-z-]+)\s{2,}", root.stdout.split("Commands:", 1)[1], re.M)
    expected = [
        "init",
        "demo",
        "doctor",
        "ingest",
        "comparisons",
        "select",
        "preview",
        "send",
        "stats",
        "subscribers",
        "serve",
        "worker",
        "db",
    ]
    assert [c for c in listed if c in expected] == expected, listed
    for args in (
        ["select"],
        ["ingest"],
        ["stats"],
        ["send"],
        ["subscribers", "import"],
        ["subscribers", "list"],
        ["subscribers", "add"],
        ["serve"],
        ["worker"],
        ["preview"],
        ["comparisons", "list"],
        ["init"],
        ["doctor"],
    ):
        text = digest_cli(cfg, env, *args, "--help").stdout
        assert not re.search(r"<[a-z]", re.sub(r"site_url/<slug>", "", text)), (args, text)
        assert "{" not in text.split("\n", 1)[0], text
    select_help = digest_cli(cfg, env, "select", "--help").stdout
    assert re.search(r"--week WEEK\b", select_help) and re.search(r"--pin SLUG\b", select_help)
    assert re.search(r"--json\s{2,}Machine", select_help)  # a flag takes no value label


# -- terminal safety -----------------------------------------------------------------------

ESC_NAME = "Mallory\x1b]0;owned\x07\x1b[2J\x1b[31mRED\u202e\x9b31m"


def test_control_characters_in_names_and_addresses_never_reach_the_terminal(tmp_path, db_url) -> None:
    cfg = write_project(tmp_path / "project")
    rt = make_runtime(cfg, db_url)
    with rt.sessions.begin() as s:
        add_subscriber(s, "mallory@example.com", name="Mallory", confirmed=True)
        add_subscriber(s, "markup@example.com", name="[bold red]x[/] [/unclosed]", confirmed=True)
    with rt.sessions.begin() as s:  # sign-up refuses such names now; rows stored before that rule still exist
        s.execute(update(Subscriber).where(Subscriber.email == "mallory@example.com").values(name=ESC_NAME))
    for tty in ("", "1"):
        env = _env(db_url, TTY_COMPATIBLE=tty, COLUMNS="200") if tty else _env(db_url)
        listing = digest_cli(cfg, env, "subscribers", "list")
        assert listing.returncode == 0, listing.stderr
        raw = listing.stdout
        assert "\x1b]0;owned" not in raw and "\x1b[2J" not in raw and "\x07" not in raw and "\x9b" not in raw
        assert "\u202e" not in raw
        assert "Mallory\\x1b]0;owned\\x07\\x1b[2J" in raw, raw
        assert "\\u202e" in raw and "\\x9b31m" in raw
        assert "[bold red]x[/] [/unclosed]" in raw  # shown as typed: not rich markup, no crash
    as_json = digest_cli(cfg, _env(db_url), "subscribers", "list", "--json")
    assert "\x9b" not in as_json.stdout and "\u202e" not in as_json.stdout and "\x1b" not in as_json.stdout
    names = {row["email"]: row["name"] for row in json.loads(as_json.stdout)}
    assert names["mallory@example.com"] == ESC_NAME  # the JSON still carries the exact value
    rt.close()


def test_terminal_safe_helper_escapes_every_control_character() -> None:
    from digest.cli.output import terminal_safe

    assert terminal_safe("a\x00b\x1bc\x7fd\x85e\u2066f") == "a\\x00b\\x1bc\\x7fd\\x85e\\u2066f"
    assert terminal_safe("line\nnext\tcol") == "line\\x0anext\\x09col"
    assert terminal_safe("line\nnext", keep_newlines=True) == "line\nnext"
    assert terminal_safe("zoë@exämple.com ✓") == "zoë@exämple.com ✓"


def test_terminal_and_json_output_escape_exactly_the_controls_and_bidi_marks_of_one_rule() -> None:
    """One character class (digest.plaintext) for terminal text and JSON: every code point checked."""
    import json
    import re
    import sys
    import unicodedata

    from digest import plaintext
    from digest.cli.output import json_safe, terminal_safe

    bidi_classes = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}
    bidi = {c for c in map(chr, range(sys.maxunicode + 1)) if unicodedata.bidirectional(c) in bidi_classes}
    bidi |= {"\u200e", "\u200f", "\u061c"}  # LRM, RLM, ALM: invisible marks that reorder a line too
    assert set(re.findall(f"[{plaintext.BIDI_CONTROLS}]", "".join(sorted(bidi)))) == bidi
    controls = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]}
    escaped, escaped_json = set(), set()
    for c in map(chr, range(sys.maxunicode + 1)):
        if terminal_safe(c) != c:
            escaped.add(c)
        if 0xD800 <= ord(c) <= 0xDFFF:
            continue  # no JSON text holds a lone surrogate raw
        dumped = json.dumps(c, ensure_ascii=False)
        if json_safe(dumped) != dumped:
            escaped_json.add(c)
            assert json.loads(json_safe(dumped)) == c
    assert escaped == controls | bidi
    assert escaped_json == {c for c in controls if ord(c) >= 0x7F} | bidi  # json.dumps escapes C0 itself


def test_preview_history_and_stats_card_say_n_a_too(tmp_path, sqlite_url) -> None:
    from fastapi.testclient import TestClient

    from digest.preview.app import create_preview_app
    from digest.preview.state import PreviewState

    _, rt, _, _ = _outbox_issue(tmp_path, sqlite_url, readers=3)
    client = TestClient(create_preview_app(PreviewState(rt), watch=False), base_url="http://127.0.0.1:8025")
    history = client.get("/history").text
    row = history.split("/?week=2026-W47", 1)[1].split("</tr>", 1)[0]
    assert row.count(">n/a") == 2, row  # delivered, opened (the outbox reports neither)
    assert 'data-label="Clicked">0 ' in row  # clicks are counted by our own tracked links, on every transport
    card = client.get("/?week=2026-W47").text.split("stat-grid", 1)[1].split("</section>", 1)[0]
    assert re.search(r'stat-n">n/a</div><div class="stat-l">Opened', card), card
    rt.close()
