"""Comparisons with chosen tool categories, and readers with chosen preferences, for edition tests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from digest.ingest.schema import ComparisonData
from digest.ingest.store import upsert
from digest.runtime import Runtime
from digest.storage.models import Frequency, Subscriber
from subscribers.api import add_subscriber

# Titles by category: two tools of that category each.
DEV = ["Cursor vs Windsurf", "Aider vs Cline", "Zed AI vs Copilot"]
MODELS = ["SmolLM3 vs Phi-4 Mini", "Mistral Small vs Gemma 3", "Qwen3 vs Llama 4"]
IMAGES = ["Flux vs Midjourney"]
CATEGORIES = {"Developer Tools": DEV, "Open Models": MODELS, "Image Generation": IMAGES}


def comparison(title: str, category: str, panel: int = 70) -> ComparisonData:
    a, b = title.split(" vs ")
    tool = {"category": category, "tagline": "A tool", "community": None, "price": "Free", "description": "Does it."}
    return ComparisonData.model_validate(
        {
            "title": title,
            "intro": f"{a} against {b}.",
            "tools": [{**tool, "name": a, "panel_ship": panel}, {**tool, "name": b, "panel_ship": panel - 10}],
            "quotes": [
                {"tool": "a", "reviewer": 1, "text": f"{a} ships."},
                {"tool": "b", "reviewer": 1, "text": f"{b} ships too."},
            ],
        }
    )


def seed_categories(
    rt: Runtime, published: datetime, categories: dict[str, list[str]] | None = None, tag: str = "", best: int = 90
) -> None:
    items = [
        comparison(f"{t}{tag}", cat, best - i * 5)
        for cat, titles in (categories or CATEGORIES).items()
        for i, t in enumerate(titles)
    ]
    with rt.sessions.begin() as s:
        upsert(s, items, default_url="https://verdicts.example.com/compare", published=published)


def add_reader(
    rt: Runtime,
    email: str,
    *,
    topics: str = "",
    frequency: Frequency = Frequency.WEEKLY,
    paused_until: datetime | None = None,
) -> int:
    with rt.sessions.begin() as s:
        sub = add_subscriber(s, email, confirmed=True).subscriber
        sub.topics, sub.frequency, sub.paused_until = topics, frequency, paused_until
        s.flush()
        return sub.id


def set_choice(rt: Runtime, emails: list[str], *, topics: str = "", frequency: Frequency = Frequency.WEEKLY) -> None:
    with rt.sessions.begin() as s:
        s.execute(update(Subscriber).where(Subscriber.email.in_(emails)).values(topics=topics, frequency=frequency))
