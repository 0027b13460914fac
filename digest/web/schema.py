"""The pieces of OpenAPI the public operations share: the core's (digest.web.openapi) and each
provider's webhook operation (declared with the provider) are written with the same ones."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

TEXT: Schema = {"type": "string"}
HTML = {"text/html": {"schema": TEXT}}
PLAIN = {"text/plain": {"schema": TEXT}}
_ERROR: Schema = {
    "type": "object",
    "required": ["ok", "error"],
    "properties": {
        "ok": {"const": False},
        "error": {"type": "string"},
        "field": {"type": ["string", "null"]},
        "retry_after": {"type": "integer"},
    },
}
JSON_ERROR = {"application/json": {"schema": _ERROR}}
JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
TOO_LARGE = {"description": "The body is over the limit (refused while it streams).", "content": JSON_ERROR}


def answer(description: str, *contents: dict[str, Any]) -> dict[str, Any]:
    """A response object: its description and the media types it may come in."""
    merged: dict[str, Any] = {}
    for c in contents:
        merged.update(c)
    return {"description": description, "content": merged} if merged else {"description": description}
