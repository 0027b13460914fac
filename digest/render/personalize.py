"""Fill per-subscriber values into an issue compiled once.

The compiled HTML and text carry markers `@@<nonce>.<name>@@`; the nonce is
random per compile, so comparison content can never forge a marker. Splitting
once and joining per subscriber keeps personalization at string-join speed.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from itertools import chain, repeat

FIELDS = ("unsubscribe_url", "manage_url", "view_url", "name", "greeting", "open_url")


def new_nonce() -> str:
    return secrets.token_hex(8)


def marker(nonce: str, name: str) -> str:
    return f"@@{nonce}.{name}@@"


def markers(nonce: str) -> dict[str, str]:
    return {name: marker(nonce, name) for name in FIELDS}


@dataclass
class Personalizer:
    """Pre-split HTML and text; `fill` is called once per recipient."""

    html_parts: list[str]
    html_slots: list[str]
    text_parts: list[str]
    text_slots: list[str]

    @classmethod
    def build(cls, compiled_html: str, compiled_text: str, nonce: str) -> Personalizer:
        pattern = re.compile(rf"@@{re.escape(nonce)}\.(\w+)@@")
        hp = pattern.split(compiled_html)
        tp = pattern.split(compiled_text)
        return cls(hp[0::2], hp[1::2], tp[0::2], tp[1::2])

    def fill(self, values: dict[str, str], safe: dict[str, str] | None = None) -> tuple[str, str]:
        """`values` are raw strings; they are HTML-escaped for the HTML part. `safe` values need no
        escaping anywhere (the caller checked: e.g. tracked links, URL-safe characters only)."""
        escaped, values = filled_values(values, safe)
        return (
            join_parts(self.html_parts, self.html_slots, escaped),
            join_parts(self.text_parts, self.text_slots, values),
        )


def html_values(values: dict[str, str]) -> dict[str, str]:
    """The values as the HTML part holds them."""
    return {k: html.escape(v, quote=True) for k, v in values.items()}


def filled_values(values: dict[str, str], safe: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """The values for the HTML part and for the text part: `safe` ones (URL-safe already) go into both as they are."""
    escaped = html_values(values)
    if safe:
        escaped.update(safe)
        values = {**values, **safe}
    return escaped, values


def join_parts(parts: list[str], slots: list[str], values: dict[str, str]) -> str:
    """Interleave the fixed parts with each slot's value (missing values are empty).

    C-level maps, no Python loop per slot: an issue has two slots per tracked link."""
    out = list(chain.from_iterable(zip(parts, map(values.get, slots, repeat("", len(slots))))))
    out.append(parts[-1])
    return "".join(out)
