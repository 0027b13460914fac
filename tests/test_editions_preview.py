"""The operator preview shows the week's editions: their picks and how many readers each goes to."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from digest.cycle.send import send_week
from digest.preview.app import create_preview_app
from digest.preview.state import PreviewState
from digest.weeks import current_week, utcnow
from tests.support_editions import MODELS, add_reader, seed_categories
from tests.support_preview import preview_runtime


@pytest.fixture
def prt(tmp_path: Path, db_url: str):
    rt = preview_runtime(tmp_path / "project", db_url, ["me@example.com"])
    yield rt
    rt.close()


def editions_card(html: str) -> str:
    return html.split('data-testid="editions"', 1)[1].split("</section>", 1)[0]


def test_the_issue_page_lists_each_edition_with_its_picks_and_readers(prt) -> None:
    seed_categories(prt, published=utcnow() - timedelta(hours=2))
    add_reader(prt, "all@example.com")
    add_reader(prt, "models@example.com", topics="open-models")
    add_reader(prt, "models2@example.com", topics="open-models")
    add_reader(prt, "images@example.com", topics="image-generation")
    add_reader(prt, "paused@example.com", paused_until=utcnow() + timedelta(days=9))
    client = TestClient(create_preview_app(PreviewState(prt), watch=False), base_url="http://127.0.0.1:8025")
    card = editions_card(client.get("/").text)
    assert "readers' choices need now" in card and "1 paused reader(s) skipped" in card
    assert "Open Models, weekly" in card and "2 reader(s)" in card and "<code>weekly/open-models</code>" in card
    models = card.split("Open Models, weekly", 1)[1].split("</details>", 1)[0]
    assert all(t in models for t in MODELS)
    images = card.split("Image Generation, weekly", 1)[1].split("</details>", 1)[0]
    assert "1 filler" in images and "filler: the overall best" in images
    assert 'data-testid="edition-checks"' in models  # the checks run per edition too
    send_week(prt, current_week(prt.settings.schedule), manual=True)
    sent = editions_card(client.get("/").text)
    assert "readers' choices need now" not in sent and "Open Models, weekly" in sent and "2 reader(s)" in sent
    assert 'data-testid="edition-checks"' in sent.split("Open Models, weekly", 1)[1].split("</details>", 1)[0]


def test_edition_checks_are_compiled_once_until_a_template_or_the_draft_changes(prt, monkeypatch) -> None:
    """The page is reloaded on every template save: each topic edition is compiled once per change,
    not once per view (it was, and a page with many editions got slower with each)."""
    from digest.cycle import editions

    seed_categories(prt, published=utcnow() - timedelta(hours=2))
    add_reader(prt, "all@example.com")
    add_reader(prt, "models@example.com", topics="open-models")
    add_reader(prt, "images@example.com", topics="image-generation")
    compiled: list[str] = []
    real = editions.compile_edition

    def counting(config, issue, ed, *args, **kwargs):  # type: ignore[no-untyped-def]
        compiled.append(ed.key)
        return real(config, issue, ed, *args, **kwargs)

    monkeypatch.setattr(editions, "compile_edition", counting)
    client = TestClient(create_preview_app(PreviewState(prt), watch=False), base_url="http://127.0.0.1:8025")
    first = editions_card(client.get("/").text)
    assert sorted(compiled) == ["weekly/image-generation", "weekly/open-models"]
    again = editions_card(client.get("/").text)
    assert len(compiled) == 2 and again == first  # the same checks, nothing compiled
    footer = prt.config.templates_dir / "digest.mjml.j2"
    footer.write_text(footer.read_text() + "\n{#- an edit -#}\n")
    client.get("/")
    assert len(compiled) == 4  # a template changed: compiled again, once
    add_reader(prt, "dev@example.com", topics="developer-tools")  # the draft's editions change
    client.get("/")
    assert sorted(compiled[4:]) == ["weekly/developer-tools", "weekly/image-generation", "weekly/open-models"]
