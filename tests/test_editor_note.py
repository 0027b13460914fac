"""The editor's note: `digest note` and the preview's field set it on the week's draft; it renders
as a small Markdown subset, escaped like everything else; a sent issue's note never changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from digest.cycle.note import current_note, set_note
from digest.errors import UserError
from digest.render.note import note_html, note_text
from digest.storage.models import Issue
from digest.weeks import Week
from tests.support_email import config
from tests.support_render import compile_sample, sample_issue
from tests.test_config_cli import run_cli

WEEK = "2026-W47"
EVIL = "<script>alert(1)</script>"


def test_markdown_subset_renders_paragraphs_links_and_emphasis_and_escapes_the_rest() -> None:
    note = (
        f"Agents *everywhere* and **one** surprise: {EVIL} & <b>no markup</b>.\n"
        "Read [our method](https://verdicts.example.com/method?a=1&b=2).\n\n"
        "Second paragraph, ![no image](https://x.test/i.png), [no js](javascript:alert(1))."
    )
    html = str(note_html(note, "#1d4f91"))
    assert html.count("<p") == 2
    assert "<em>everywhere</em>" in html and "<strong>one</strong>" in html
    assert '<a href="https://verdicts.example.com/method?a=1&amp;b=2"' in html
    assert "&lt;script&gt;" in html and "<script" not in html and "<b>" not in html
    assert "<img" not in html and "javascript:" not in html.split("[no js]")[0].replace("(javascript:", "")
    assert 'href="javascript' not in html
    text = note_text(note)
    assert "our method (https://verdicts.example.com/method?a=1&b=2)" in text
    assert text.count("\n\n") == 1 and EVIL in text  # the text part shows it literally


def test_the_note_opens_the_issue_in_html_and_text() -> None:
    compiled = compile_sample(
        config(), sample_issue(5, editor_note="Two agents lead. Read [why](https://verdicts.example.com/why).")
    )
    assert 'Read <a href="https://verdicts.example.com/why"' in compiled.html
    assert "Two agents lead. Read why (https://verdicts.example.com/why)." in compiled.text
    assert "ranked by our panel" not in compiled.html  # the note replaces the standard line


def test_set_replace_clear_and_refuse_bad_notes(rt) -> None:
    week = Week.parse(WEEK)
    assert set_note(rt, week, None) == f"issue {WEEK} has no note"
    with rt.sessions() as s:
        assert s.scalar(select(Issue).where(Issue.week == WEEK)) is None  # clearing nothing creates nothing
    assert "note saved" in set_note(rt, week, "  First *note*.  ")
    assert current_note(rt, week) == "First *note*."
    assert "note replaced" in set_note(rt, week, "Second.")
    for bad, message in (
        ("", "the note is empty"),
        ("x" * 2001, "at most 2000"),
        ("[x](javascript:alert(1))", "is not an http(s) URL"),
        ("[x](/relative)", "not an http(s) URL"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            set_note(rt, week, bad)
    assert current_note(rt, week) == "Second."
    assert "note cleared" in set_note(rt, week, None)
    assert current_note(rt, week) is None


def test_a_sent_issues_note_cannot_change(rt) -> None:
    week = Week.parse(WEEK)
    set_note(rt, week, "As sent.")
    with rt.sessions.begin() as s:
        s.scalar(select(Issue).where(Issue.week == WEEK)).status = "sent"
    for text in ("Changed.", None):
        with pytest.raises(UserError, match="already sent; its note can no longer change"):
            set_note(rt, week, text)
    assert current_note(rt, week) == "As sent."


def test_digest_note_command(project: Path, tmp_path: Path) -> None:
    r = run_cli(project, "note", "--week", WEEK, "Hello *readers*.")
    assert r.returncode == 0 and f"issue {WEEK}: note saved" in r.stdout, r.stderr
    assert run_cli(project, "note", "--week", WEEK).stdout.strip() == "Hello *readers*."
    f = tmp_path / "note.md"
    f.write_text("From a file.\n\nWith [a link](https://verdicts.example.com).\n", encoding="utf-8")
    assert "note replaced" in run_cli(project, "note", "--week", WEEK, "--file", str(f)).stdout
    assert run_cli(project, "note", "--week", WEEK).stdout.startswith("From a file.")
    for args, message in (
        (["both", "--clear"], "give one of TEXT, --file or --clear, not TEXT and --clear"),
        (["--file", str(tmp_path / "missing.md")], "no such file"),
        (["[x](javascript:alert(1))"], "is not an http(s) URL"),
        (["--week", "2026-W99", "x"], ""),
    ):
        r = run_cli(project, "note", *([] if "--week" in args else ["--week", WEEK]), *args)
        assert r.returncode == 2 and r.stderr.startswith("error: ") and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert run_cli(project, "note", "--week", WEEK).stdout.startswith("From a file.")  # unchanged by the errors
    assert "note cleared" in run_cli(project, "note", "--week", WEEK, "--clear").stdout
    assert "has no note" in run_cli(project, "note", "--week", WEEK).stdout


def test_a_note_with_a_control_character_is_refused_and_changes_nothing(rt) -> None:
    """Like every other input: an escape sequence or a NUL never reaches the email, the terminal or the database."""
    week = Week.parse(WEEK)
    set_note(rt, week, "Kept.")
    for bad, code in (
        ("Red \x1b[31malert\x1b[0m", "U+001B"),
        ("a\x00b", "U+0000"),
        ("a\x7fb", "U+007F"),
        ("a\x85b", "U+0085"),
        ("a\rb", "U+000D"),
        ("a\ufffeb", "U+FFFE"),
        ("\x1f edge", "U+001F"),
    ):
        with pytest.raises(UserError, match=re.escape(code)) as caught:
            set_note(rt, week, bad)
        assert str(caught.value).startswith("note: character ") and "\n" not in str(caught.value)
    assert current_note(rt, week) == "Kept."
    assert "note replaced" in set_note(rt, week, "A tab\there, a line\nand a paragraph.\r\n\r\nSecond.")


def test_digest_note_refuses_control_characters_in_one_line(project: Path, tmp_path: Path) -> None:
    assert run_cli(project, "note", "--week", WEEK, "Kept.").returncode == 0
    nul = tmp_path / "nul.md"
    nul.write_text("Line one.\n\x00 hidden\n", encoding="utf-8")
    for args, code in ((["Red \x1b[31malert\x1b[0m"], "U+001B"), (["--file", str(nul)], "U+0000")):
        r = run_cli(project, "note", "--week", WEEK, *args)
        assert r.returncode == 2 and r.stderr.startswith("error: note: character ") and code in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and "\x1b" not in r.stderr and "Traceback" not in r.stderr
    assert run_cli(project, "note", "--week", WEEK).stdout.strip() == "Kept."
    multi = tmp_path / "multi.md"
    multi.write_text("First line\twith a tab.\nSame paragraph.\n\nSecond paragraph.\n", encoding="utf-8")
    assert run_cli(project, "note", "--week", WEEK, "--file", str(multi)).returncode == 0
