"""The digest, confirm and welcome emails as rendered: content, escaping, size, text twin, accessibility."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from digest.config import load_config
from digest.errors import TemplateError
from digest.render.issue_email import (
    GMAIL_CLIP_BYTES,
    WARN_BYTES,
    pick_quote,
    pull_quote,
    size_warnings,
    verdict,
    with_utm,
)
from digest.render.personalize import FIELDS, Personalizer
from digest.render.templates import TEXT_WIDTH, make_env
from digest.render.transactional import render_transactional
from tests.conftest import ROOT
from tests.support_render import compile_sample, issue_from, sample_data, sample_issue

EVIL = "<script>alert(1)</script>"
TOM = 'Tom & "Jerry"'
TEMPLATES = ROOT / "templates" / "email"


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "config.toml", env={"DIGEST_SECRET_KEY": "test-secret-key-0123456789"})


class Visible(HTMLParser):
    """What a reader sees: text outside <head>/<style>, every start tag, every href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("style", "title", "head"):
            self._skip += 1
        href = dict(attrs).get("href")
        if href:
            self.hrefs.append(href)

    def handle_endtag(self, tag):
        if tag in ("style", "title", "head"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)

    @classmethod
    def of(cls, html: str) -> Visible:
        v = cls()
        v.feed(html)
        v.close()
        return v

    @property
    def joined(self) -> str:
        return " ".join(" ".join(self.text).split())


def fill(compiled) -> tuple[str, str]:
    values = {
        "unsubscribe_url": "https://news.example.com/u/TOKEN-A",
        "view_url": "https://news.example.com/archive/2026-W47",
        "manage_url": "https://news.example.com/u/TOKEN-A?manage=1",
        "name": "Ada",
        "greeting": "Hi Ada,",
    }
    return Personalizer.build(compiled.html, compiled.text, compiled.nonce).fill(values)


def evil_issue():
    data = sample_data()
    x = copy.deepcopy(data[0])
    x["title"] = f"{TOM} vs {EVIL}"
    x["tools"][0].update(name=TOM, tagline=f"{EVIL} and {TOM}", category=TOM)
    x["tools"][1].update(name=EVIL, price=TOM, category=EVIL)
    x["quotes"] = [
        {"tool": "a", "reviewer": 1, "text": f"{EVIL} is what {TOM} wrote. It stays text."},
        {"tool": "b", "reviewer": 1, "text": f"{TOM} & <b>bold</b> is no markup either."},
    ]
    return issue_from([x, data[1]], editor_note=f"Note with {EVIL} and {TOM}.")


def test_comparison_text_with_markup_shows_literally_in_html_and_text(config) -> None:
    compiled = compile_sample(config, evil_issue())
    html, text = fill(compiled)
    assert not re.search(r"<script", html, re.I), "no <script element may reach the HTML"
    assert "<b>bold</b>" not in html
    seen = Visible.of(html)
    assert "script" not in seen.tags and "b" not in seen.tags
    assert f"{TOM} vs {EVIL}" in seen.joined  # the card title and the table of contents, as text
    assert f"{EVIL} and {TOM}" in seen.joined  # tagline
    assert f"{EVIL} is what {TOM} wrote." in seen.joined  # pull quote
    assert f"Note with {EVIL} and {TOM}." in seen.joined  # editor's note
    for literal in (
        f"{TOM} vs {EVIL}",
        f"{EVIL} and {TOM}",
        f"{TOM} & <b>bold</b> is no markup either.",
        f"Note with {EVIL} and {TOM}.",
    ):
        assert literal in " ".join(text.split())
    assert compiled.subject.endswith(f"{TOM} vs {EVIL} + 1 more")  # a header: shown as typed


def test_transactional_mail_escapes_the_subscriber_name(config) -> None:
    ctx = {
        "subscriber": {"email": "ada@example.com", "name": f"{EVIL} {TOM}"},
        "unsubscribe_url": "https://n.example/u/U",
        "manage_url": "https://n.example/u/U?manage=1",
        "archive_url": "https://n.example/archive",
    }
    mail = render_transactional(config, "welcome", ctx)  # the confirmation never prints the name at all
    assert not re.search(r"<script", mail.html, re.I)
    assert f"Hi {EVIL} {TOM}," in Visible.of(mail.html).joined
    assert f"Hi {EVIL} {TOM}," in mail.text
    confirm = render_transactional(
        config, "confirm", {**ctx, "confirm_url": "https://n.example/confirm/abc", "expiry_days": 7}
    )
    assert "Tom" not in confirm.text and "Tom" not in Visible.of(confirm.html).joined


def test_digest_shows_every_part_of_a_card_in_rank_order(config) -> None:
    issue = sample_issue(5, editor_note="Agents everywhere this week.\n\nTwo coding tools lead.")
    compiled = compile_sample(config, issue)
    html, text = fill(compiled)
    seen = Visible.of(html).joined
    assert "Weekly AI Tool Verdicts" in seen and "Issue 12" in seen and "Monday 16 November 2026" in seen
    assert "Agents everywhere this week." in seen and "Two coding tools lead." in seen
    positions = []
    for item in issue.picks:
        data = item.comparison.data
        a, b = data["tools"]
        heading = f"{a['name']} vs {b['name']}"
        positions.append(seen.index(f"No. {item.rank}"))
        assert heading in seen and heading in text
        for tool in (a, b):
            for part in (tool["name"], tool["category"], tool["tagline"], tool["price"]):
                assert part in seen, part
            assert f"{tool['panel_ship']}%" in seen
        assert verdict(a, b) in seen
    assert positions == sorted(positions)
    assert "No votes yet" in seen and "No votes yet" in text  # community None
    for item in issue.picks:
        assert f"Read {item.comparison.title} →" in seen
    assert "Reviewer 2" in seen  # the first quote that ends at a sentence within the limit
    assert "1 Example Street" in seen and "1 Example Street" in text
    for label in ("View in browser", "Manage subscription", "Unsubscribe"):
        assert label in seen


def test_buttons_carry_utm_parameters_for_the_issue_week(config) -> None:
    # Tracked (the default): each link is a marker, and the frozen destination carries the UTM parameters.
    compiled = compile_sample(config, sample_issue(2))
    assert compiled.links and {link["place"] for link in compiled.links} == {"toc", "card", "text"}
    assert all("utm_source=newsletter&utm_medium=email&utm_campaign=2026-W47" in link["url"] for link in compiled.links)
    assert all(f"@@{compiled.nonce}.link_" in h for h in Visible.of(compiled.html).hrefs if "link_" in h)
    # Not tracked: the hrefs are the destinations themselves.
    own = load_config(ROOT / "config.toml", env={"DIGEST_SECRET_KEY": "test-secret-key-0123456789"})
    own.settings = own.settings.model_copy(
        update={"tracking": own.settings.tracking.model_copy(update={"clicks": False})}
    )
    compiled = compile_sample(own, sample_issue(2))
    assert compiled.links is None
    hrefs = Visible.of(compiled.html).hrefs
    buttons = [h for h in hrefs if "/compare/" in h]
    assert buttons and all("utm_source=newsletter&utm_medium=email&utm_campaign=2026-W47" in h for h in buttons)
    assert (
        with_utm("https://x.example/c?utm_source=old&a=1", "2026-W01")
        == "https://x.example/c?a=1&utm_source=newsletter&utm_medium=email&utm_campaign=2026-W01"
    )


def test_five_item_issue_html_is_well_under_gmail_clipping(config) -> None:
    compiled = compile_sample(config, sample_issue(5))
    size = len(compiled.html.encode("utf-8"))
    assert size < 60 * 1024, f"{size} bytes"
    assert compiled.warnings == []


def test_size_limits_refuse_past_102kb_and_warn_past_90kb(config) -> None:
    assert size_warnings("x" * (WARN_BYTES - 1)) == []
    assert "close to Gmail" in size_warnings("x" * (WARN_BYTES + 1))[0]
    with pytest.raises(TemplateError, match="Gmail clips"):
        size_warnings("x" * (GMAIL_CLIP_BYTES + 1))
    with pytest.raises(TemplateError, match="Gmail clips"):
        compile_sample(config, sample_issue(2, editor_note="A very long note. " * 7000))


def test_plain_text_twin_is_72_columns_with_every_link_written_out(config) -> None:
    compiled = compile_sample(config, sample_issue(5, editor_note="An editor's note long enough to wrap. " * 6))
    html, text = fill(compiled)
    for line in text.splitlines():
        if len(line) > TEXT_WIDTH:
            assert re.fullmatch(r"https?://\S+", line), f"line longer than {TEXT_WIDTH}: {line!r}"
    for href in set(Visible.of(html).hrefs):
        assert href in text, f"link missing from the text part: {href}"
    assert "https://news.example.com/u/TOKEN-A" in text  # unsubscribe
    assert "<" not in text.replace("<script", "")  # no HTML left in the text twin


@pytest.mark.parametrize("kind", ["confirm", "welcome"])
def test_transactional_text_twins_are_72_columns_with_links(config, kind: str) -> None:
    ctx = {
        "subscriber": {"email": "ada@example.com", "name": "Ada"},
        "confirm_url": "https://n.example/confirm/T",
        "expiry_days": 7,
        "unsubscribe_url": "https://n.example/u/U",
        "manage_url": "https://n.example/u/U?manage=1",
        "archive_url": "https://n.example/archive",
    }
    mail = render_transactional(config, kind, ctx)
    assert all(len(line) <= TEXT_WIDTH or line.startswith("http") for line in mail.text.splitlines())
    for href in set(Visible.of(mail.html).hrefs):
        assert href in mail.text
    if kind == "welcome":
        assert "https://n.example/u/U" in mail.text and "Monday" in mail.text
    else:
        assert "7 days" in mail.text and "https://n.example/confirm/T" in mail.text


def test_accessible_and_client_safe_markup(config) -> None:
    html, _ = fill(compile_sample(config, sample_issue(5)))
    assert re.search(r'<html[^>]* lang="en"', html)
    assert '<meta name="color-scheme" content="light dark"' in html
    tables = re.findall(r"<table\b[^>]*>", html)
    assert tables and all('role="presentation"' in t for t in tables)
    assert not re.search(r"<script|<link\b|@import|javascript:", html, re.I)
    assert not re.search(r"<img\b(?![^>]*\balt=)", html)  # any image would need alt text
    assert "prefers-color-scheme: dark" in html
    fonts = set(re.findall(r"font-family:([^;\"]+)", html))
    assert fonts and all(f.strip().endswith(("sans-serif", "serif", "monospace")) for f in fonts)
    for path in TEMPLATES.glob("*.j2"):
        assert 'inline="inline"' not in path.read_text(), f"{path.name}: mjml-python does not inline mj-style"


def _luminance(hex_colour: str) -> float:
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_brand_colour_pairs_have_contrast_of_at_least_4_5(config) -> None:
    brand = make_env(TEMPLATES).get_template("_brand.j2").module
    assert len(brand.contrast_pairs) >= 20
    for fg, bg in brand.contrast_pairs:
        ratio = contrast(getattr(brand, fg), getattr(brand, bg))
        assert ratio >= 4.5, f"{fg} on {bg}: {ratio:.2f}"


def test_every_personal_marker_is_filled(config) -> None:
    compiled = compile_sample(config, sample_issue(3))
    html, text = fill(compiled)
    assert compiled.nonce not in html and compiled.nonce not in text
    assert "Hi Ada," in html and "Hi Ada," in text
    assert {"unsubscribe_url", "manage_url", "view_url", "name", "greeting"} <= set(FIELDS)


def test_pull_quote_ends_at_a_sentence_boundary() -> None:
    text = (
        "Llama 3.2 runs on a phone. It is the default for e.g. offline apps. "
        "The third sentence is long enough to push the quote well past the limit we give it here."
    )
    assert pull_quote(text, 80) == "Llama 3.2 runs on a phone. It is the default for e.g. offline apps.\u00a0…"
    assert pull_quote("one " * 80, 40).endswith("…") and len(pull_quote("one " * 80, 40)) <= 41
    quotes = [
        {"tool": "a", "reviewer": 1, "text": "x" * 150 + " word " + "y" * 150 + "."},
        {"tool": "a", "reviewer": 2, "text": "Short and sweet. Then more."},
        {"tool": "b", "reviewer": 1, "text": "Only for b."},
    ]
    assert pick_quote(quotes, "a") == {"text": "Short and sweet. Then more.", "reviewer": 2}
    assert pick_quote(quotes, "a", avoid={"short and sweet. then more."})["reviewer"] == 1  # the next one
    assert pick_quote([], "a") is None


def test_verdict_names_the_favourite_or_both() -> None:
    a = {"name": "A", "panel_ship": 80}
    assert verdict(a, {"name": "B", "panel_ship": 60}) == "The panel favours A (80% vs 60%)"
    assert verdict({"name": "A", "panel_ship": 100}, {"name": "B", "panel_ship": 100}) == "The panel ships both"
    assert verdict({"name": "A", "panel_ship": 20}, {"name": "B", "panel_ship": 20}) == "The panel ships neither"


def test_templates_folder_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="templates folder not found"):
        make_env(tmp_path / "nope")


@pytest.mark.parametrize("stored", ["https://例え.jp:99999/x", "https://例え..jp/x"])
def test_a_stored_link_with_no_uri_form_does_not_stop_the_issue(config, stored: str) -> None:
    """A comparison stored before ingest refused IRIs with no URI form (bad port, bad host) still renders:
    its card links to the IRI as stored, with the UTM parameters, and the click redirect answers
    "link not valid" for it (tests/test_click_tracking.py); one bad link never stops a week's issue."""
    assert with_utm(stored, "2026-W47") == f"{stored}?utm_source=newsletter&utm_medium=email&utm_campaign=2026-W47"
    issue = sample_issue(2)
    issue.picks[0].comparison.url = stored
    compiled = compile_sample(config, issue)
    assert compiled.links is not None
    assert any(link["url"].startswith(stored + "?utm_source=newsletter") for link in compiled.links)
