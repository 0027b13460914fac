"""Helpers for the preview tests: a project with its own COPY of the email templates, seeded data."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from digest.ingest.schema import ComparisonData
from digest.ingest.sources import expand
from digest.ingest.store import upsert
from digest.runtime import Runtime
from digest.weeks import utcnow
from tests.conftest import ROOT, SAMPLES, apply_overrides, make_runtime, write_project

SITE = "https://verdicts.example.com/compare"


def preview_project(root: Path, recipients: list[str] | None = None) -> Path:
    """config.toml + templates/email copied into `root` (tests edit the copy, never the repo)."""
    cfg = write_project(root)
    templates = root / "templates" / "email"
    shutil.copytree(ROOT / "templates" / "email", templates)
    text = cfg.read_text().replace(f'dir = "{ROOT / "templates" / "email"}"', 'dir = "templates/email"')
    if recipients is not None:
        text = apply_overrides(text, {"preview": {"test_recipients": recipients}})
    cfg.write_text(text)
    return cfg


def preview_runtime(root: Path, db_url: str, recipients: list[str] | None = None) -> Runtime:
    return make_runtime(preview_project(root, recipients), db_url)


def seed_samples(rt: Runtime, published: datetime | None = None) -> list[str]:
    """The two sample comparisons, published just now (inside this week's window). Returns slugs."""
    slugs = []
    with rt.sessions.begin() as s:
        for src in expand([str(SAMPLES)]):
            for r in upsert(s, src.items or [], default_url=SITE, published=published or utcnow() - timedelta(hours=1)):
                slugs.append(r.slug)
    return slugs


def comparison(title: str, a_ship: int = 80, b_ship: int = 60, url: str | None = None) -> ComparisonData:
    a, b = title.split(" vs ")
    data = {
        "title": title,
        "intro": f"Which one should you ship with? {title}.",
        "tools": [
            {
                "category": "Developer Tools",
                "name": a,
                "tagline": f"{a} does things",
                "panel_ship": a_ship,
                "community": None,
                "price": "Free",
                "description": f"{a} description",
            },
            {
                "category": "Developer Tools",
                "name": b,
                "tagline": f"{b} does things",
                "panel_ship": b_ship,
                "community": None,
                "price": "Free",
                "description": f"{b} description",
            },
        ],
        "quotes": [{"tool": "a", "reviewer": 1, "text": "Solid."}, {"tool": "b", "reviewer": 1, "text": "Fine."}],
    }
    if url:
        data["url"] = url
    return ComparisonData.model_validate(data)


def seed_items(rt: Runtime, items: list[ComparisonData], published: datetime | None = None) -> list[str]:
    with rt.sessions.begin() as s:
        results = upsert(s, items, default_url=SITE, published=published or utcnow() - timedelta(hours=1))
    return [r.slug for r in results]
