"""Tracked links in a compiled issue: one marker per link position, the frozen destinations beside it.

Each comparison has three links (the contents list, its card's button, the text part); link
`3 * (rank - 1) + place` is the position a click token names (digest.links.ClickTokens). The
compiled HTML holds a personalization marker per link, filled per reader with their
`/c/<token>` URL, or with the destination itself where nobody is tracked (archive, preview).
"""

from __future__ import annotations

from typing import Any

from digest.render.personalize import marker

PLACES = ("toc", "card", "text")
# The transparent 1x1 GIF: the open pixel's answer, and its stand-in where nobody is tracked.
BLANK_GIF_BASE64 = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
BLANK_GIF_URL = f"data:image/gif;base64,{BLANK_GIF_BASE64}"


def slot(position: int) -> str:
    return f"link_{position}"


def position(rank: int, place: str) -> int:
    return len(PLACES) * (rank - 1) + PLACES.index(place)


def add_links(items: list[dict[str, Any]], nonce: str | None) -> list[dict[str, Any]]:
    """Give each item context `link` (place -> href); with a nonce, markers, and return the frozen links."""
    frozen: list[dict[str, Any]] = []
    for item in items:
        item["link"] = {}
        for place in PLACES:
            pos = position(int(item["rank"]), place)
            if nonce is None:
                item["link"][place] = item["url"]
                continue
            item["link"][place] = marker(nonce, slot(pos))
            while len(frozen) < pos:  # ranks are 1..n, so this only pads a gap left by a missing rank
                frozen.append({"rank": 0, "place": "", "slug": "", "title": "", "url": ""})
            frozen.append(
                {
                    "rank": int(item["rank"]),
                    "place": place,
                    "slug": item["slug"],
                    "title": item["title"],
                    "url": item["url"],
                }
            )
    return frozen


def direct_values(links: list[dict[str, Any]] | None) -> dict[str, str]:
    """Each link slot filled with its destination (nobody to track: the archive, previews, test sends)."""
    return {slot(i): str(link.get("url") or "") for i, link in enumerate(links or [])}
