"""Upsert parsed comparisons by slug: unchanged content is a no-op, changed content is updated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.ingest.schema import ComparisonData
from digest.mail import ascii_uri
from digest.storage.models import Comparison
from digest.weeks import as_utc, utcnow


@dataclass(frozen=True)
class UpsertResult:
    slug: str
    action: str  # added | updated | unchanged


def upsert(
    session: Session, items: list[ComparisonData], *, default_url: str, published: datetime | None = None
) -> list[UpsertResult]:
    """Caller commits: one source's items go in together or not at all."""
    results = []
    now = utcnow()
    for item in items:
        slug = item.slug
        # An IRI (`/compare/日本-vs-x`, or a slug made from such a title) is stored as its URI: a Location
        # header and an email hold ASCII only.
        url = ascii_uri(item.url or f"{default_url.rstrip('/')}/{slug}")
        item = item.model_copy(update={"url": url})
        when = published or item.published_at  # the operator's --published wins over the file's own
        digest_hash = item.content_hash()
        row = session.scalar(select(Comparison).where(Comparison.slug == slug))
        if row is None:
            session.add(
                Comparison(
                    slug=slug,
                    title=item.title,
                    url=url,
                    published_at=as_utc(when) if when else now,
                    content_hash=digest_hash,
                    community_votes=item.community_votes,
                    data=item.model_dump(mode="json", exclude={"published_at"}),
                    created_at=now,
                    updated_at=now,
                )
            )
            results.append(UpsertResult(slug, "added"))
            continue
        changed = row.content_hash != digest_hash
        if when is not None and as_utc(row.published_at) != as_utc(when):
            row.published_at = as_utc(when)
            changed = True
        if changed:
            row.title, row.url, row.content_hash = item.title, url, digest_hash
            row.community_votes = item.community_votes
            row.data = item.model_dump(mode="json", exclude={"published_at"})
            row.updated_at = now
        results.append(UpsertResult(slug, "updated" if changed else "unchanged"))
    session.flush()
    return results
