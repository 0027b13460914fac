"""JSON for big batch payloads without escaping the same HTML a hundred times.

Every reader's HTML is the issue's compiled HTML with a few values filled in.
JSON string escaping works character by character, so the escaped form of the
whole is the escaped parts joined: the parts are escaped once per issue and
joined per reader. A `PreEscaped` string carries that form next to its value,
and `dumps` uses it instead of escaping again. Output is ASCII (`\\uXXXX`), so
encoding it to bytes is a copy.
"""

from __future__ import annotations

import json
from typing import Any

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode


class PreEscaped(str):
    """A str that also holds its JSON string form (without the quotes)."""

    json_escaped: str

    def __new__(cls, value: str, escaped: str) -> PreEscaped:
        obj = super().__new__(cls, value)
        obj.json_escaped = escaped
        return obj


def escape(value: str) -> str:
    """The JSON string form of `value`, without the surrounding quotes."""
    return _encode(value)[1:-1]


def dumps(value: Any) -> str:
    """Compact ASCII JSON (like json.dumps with separators=(",", ":")) reusing PreEscaped forms.

    Lists are walked; in a dict, PreEscaped values are spliced in after the rest, which the
    C encoder writes in one call. The key order differs from json.dumps, but is stable.
    """
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        ready = [(k, v) for k, v in value.items() if isinstance(v, PreEscaped)]
        if not ready:
            return _encode(value)
        rest = _encode({k: v for k, v in value.items() if not isinstance(v, PreEscaped)})
        spliced = ",".join(f'{_encode(str(k))}:"{v.json_escaped}"' for k, v in ready)
        return rest[:-1] + ("," if len(rest) > 2 else "") + spliced + "}"
    if isinstance(value, PreEscaped):
        return f'"{value.json_escaped}"'
    return _encode(value)
