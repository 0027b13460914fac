"""The normalized comparison every source is parsed into (also the JSON file format)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from digest import plaintext
from digest.mail import NoUriForm, iri_to_uri

_TITLE_SPLIT = re.compile(r"\s+vs\.?\s+", re.IGNORECASE)
# Fields whose text may span lines (and hold tabs); every other text field is one line.
MULTILINE_FIELDS = frozenset({"description", "intro", "text"})


def _plain(value: object, info: ValidationInfo) -> object:
    """No control characters or noncharacters reach a template, a header or a feed (README: ingest)."""
    if isinstance(value, str):
        bad = plaintext.problem(value, multiline=info.field_name in MULTILINE_FIELDS)
        if bad:
            raise ValueError(bad)
    return value


def slugify(title: str) -> str:
    """`Cursor Background Agents vs SmolLM3` -> `cursor-background-agents-vs-smollm3`."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^\w]+", "-", text.lower(), flags=re.UNICODE).strip("-_")
    return re.sub(r"[-_]+", "-", text)[:200]


def split_title(title: str) -> tuple[str, str] | None:
    parts = _TITLE_SPLIT.split(title.strip(), maxsplit=1)
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    category: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=120)
    tagline: str = Field("", max_length=300)
    panel_ship: int = Field(ge=0, le=100, description="Share of the panel that would ship it, in percent")
    community: int | None = Field(None, ge=0, le=100, description="Community vote in percent; null when no votes")
    price: str = Field(min_length=1, max_length=60, description="Entry price as shown, e.g. Free or $20/mo")
    description: str = Field("", max_length=5000)

    _no_controls = field_validator("*")(_plain)


class Quote(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tool: Literal["a", "b"]
    reviewer: int = Field(ge=1, description="1-based reviewer number on the scorecard")
    text: str = Field(min_length=1, max_length=5000)

    _no_controls = field_validator("*")(_plain)


class ComparisonData(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=3, max_length=300)
    intro: str = Field("", max_length=1000)
    tools: list[Tool] = Field(min_length=2, max_length=2)
    quotes: list[Quote] = []
    url: str | None = Field(None, max_length=2000)
    published_at: datetime | None = None
    community_votes: int | None = Field(None, ge=0)

    _no_controls = field_validator("*")(_plain)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not split_title(value):
            raise ValueError("expected a title of the form 'A vs B'")
        if not slugify(value):
            raise ValueError("expected a title with at least one letter or digit")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://\S+$", value):
            raise ValueError("expected an http(s) URL")
        if value is not None:
            try:  # ASCII ones too: a port out of range is no link either way
                iri_to_uri(value)
            except NoUriForm as exc:  # refused here, with file and line, rather than as an error of the store
                raise ValueError(f"expected an http(s) URL whose {exc.expected}") from None
        return value

    @property
    def slug(self) -> str:
        return slugify(self.title)

    def content_hash(self) -> str:
        """Hash of everything but the publication time, so re-ingesting unchanged pages is a no-op."""
        payload = self.model_dump(mode="json", exclude={"published_at"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def quotes_for(self, tool: Literal["a", "b"]) -> list[Quote]:
        return [q for q in self.quotes if q.tool == tool]


def json_schema() -> dict[str, Any]:
    """The JSON Schema shipped as schemas/comparison.schema.json (a test keeps them equal)."""
    schema = ComparisonData.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "comparison.schema.json",
        "title": "Comparison",
        "description": (
            "One AI tool comparison as `digest ingest` reads it; a file may hold one object or a list of them."
        ),
        **{k: v for k, v in schema.items() if k != "title"},
    }
