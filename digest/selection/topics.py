"""Topics readers choose from: the tool categories found in the comparisons, as `[topics]` shapes them.

A topic's key is stable while its name may change: the slug of its category (a renamed category
keeps its key) or, for a merged topic, the slug of the merge's name. A comparison belongs to the
topics of both its tools. A reader's choice is stored as the sorted keys joined by "+" ("" = every
topic); keys no longer offered (a category hidden or merged since) are dropped when the choice is
read, and a choice left empty means every topic again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.config import TopicSettings
from digest.ingest.schema import slugify
from digest.storage.models import Comparison

SEP = "+"


def category_key(category: str) -> str:
    """Case and spacing ignored: "Developer tools" and "Developer  Tools" are one category."""
    return " ".join(str(category).split()).casefold()


@dataclass(frozen=True)
class Topic:
    key: str
    name: str
    categories: frozenset[str]  # category_key() of each


@dataclass(frozen=True)
class Topics:
    topics: tuple[Topic, ...]  # sorted by name
    by_category: dict[str, str]  # category_key -> topic key

    def keys(self) -> list[str]:
        return [t.key for t in self.topics]

    def name(self, key: str) -> str:
        return next((t.name for t in self.topics if t.key == key), key)

    def of(self, data: dict[str, Any]) -> set[str]:
        """The topics of a comparison (its stored data): those of both its tools."""
        found = (self.by_category.get(category_key(t.get("category", ""))) for t in data.get("tools", []))
        return {k for k in found if k}

    def normalize(self, keys: Iterable[str]) -> tuple[str, ...]:
        """The offered keys among `keys`, sorted; () when none (= every topic)."""
        offered = set(self.keys())
        chosen = tuple(sorted({k for k in keys if k in offered}))
        return () if len(chosen) == len(offered) else chosen

    def parse(self, stored: str) -> tuple[str, ...]:
        return self.normalize(k for k in stored.split(SEP) if k)

    def label(self, keys: Iterable[str]) -> str:
        chosen = list(keys)
        return "All topics" if not chosen else " + ".join(self.name(k) for k in chosen)


def join(keys: Iterable[str]) -> str:
    """The stored form of a choice."""
    return SEP.join(sorted(set(keys)))


def build(settings: TopicSettings, categories: Iterable[str]) -> Topics:
    """Topics from the categories found, shaped by `[topics]` (rename, merge, hide)."""
    hidden = {category_key(c) for c in settings.hide}
    merged = {category_key(c): name for name, cs in settings.merge.items() for c in cs}
    renamed = {category_key(c): name for c, name in settings.rename.items()}
    spelled: dict[str, str] = {}
    for c in categories:
        spelled.setdefault(category_key(c), " ".join(str(c).split()))
    groups: dict[str, tuple[str, set[str]]] = {}
    for ckey, spelling in spelled.items():
        if ckey in hidden or not ckey:
            continue
        if ckey in merged:
            key, name = slugify(merged[ckey]) or "topic", merged[ckey]
        else:
            key, name = slugify(spelling) or "topic", renamed.get(ckey, spelling)
        groups.setdefault(key, (name, set()))[1].add(ckey)
    topics = tuple(
        sorted((Topic(k, n, frozenset(cs)) for k, (n, cs) in groups.items()), key=lambda t: (t.name.casefold(), t.key))
    )
    return Topics(topics, {c: t.key for t in topics for c in t.categories})


def categories_in(session: Session) -> list[str]:
    """Every tool category of the stored comparisons."""
    out: list[str] = []
    for data in session.scalars(select(Comparison.data)):
        out.extend(str(t.get("category", "")) for t in (data or {}).get("tools", []))
    return out


def load(session: Session, settings: TopicSettings) -> Topics:
    return build(settings, categories_in(session))
