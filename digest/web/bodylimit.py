"""Bound every request body while it streams: 413 before the app can buffer more than the limit.

A route that calls `await request.body()` holds the whole body in memory, and a chunked
upload has no Content-Length to refuse up front: a 400 MB chunked POST used to grow the
process by 400 MB before the route's own size check ran. This pure ASGI middleware counts
the bytes of each `http.request` message as the app reads them. Past the limit the app's
read fails, and the client gets a plain 413 (whatever the route did with the failure) with
`Connection: close`, so the rest of the upload is never read. A declared Content-Length over
the limit is refused before the app runs at all.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODY = b'{"ok": false, "error": "The request is too large."}'


class TooLarge(Exception):
    """Raised from `receive` once the body passes its limit (the middleware answers 413)."""


class BodyLimit:
    """`default` bytes for every path, or the limit of the longest matching prefix in `prefixes`."""

    def __init__(self, app: ASGIApp, default: int, prefixes: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.prefixes = sorted((prefixes or {}).items(), key=lambda kv: -len(kv[0]))

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.prefixes:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        if _declared_length(scope) > limit:
            await _refuse(send)
            return
        state = {"read": 0, "over": False, "started": False}

        async def limited_receive() -> Message:
            if state["over"]:
                raise TooLarge
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > limit:
                    state["over"] = True
                    raise TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:
                return  # the route's own answer to a failed read is replaced by the 413
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except TooLarge:
            pass
        if state["over"] and not state["started"]:
            await _refuse(send)


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # uvicorn refuses a malformed Content-Length before it reaches us
    return 0


async def _refuse(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_BODY)).encode()),
                (b"connection", b"close"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BODY})
