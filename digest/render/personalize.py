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

FIELDS = ("unsubscribe_url", "manage_url", "view_url", "name", "greeting")


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

    def fill(self, values: dict[str, str]) -> tuple[str, str]:
        """`values` are raw strings; they are HTML-escaped for the HTML part."""
        return (join_parts(self.html_parts, self.html_slots, html_values(values)),
                join_parts(self.text_parts, self.text_slots, values))


def html_values(values: dict[str, str]) -> dict[str, str]:
    """The values as the HTML part holds them."""
    return {k: html.escape(v, quote=True) for k, v in values.items()}


def join_parts(parts: list[str], slots: list[str], values: dict[str, str]) -> str:
    """Interleave the fixed parts with each slot's value (missing values are empty)."""
    out = [parts[0]]
    for slot, part in zip(slots, parts[1:]):
        out.append(values.get(slot, ""))
        out.append(part)
    return "".join(out)
