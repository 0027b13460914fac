"""Live reload (server-sent events that open pages follow) and the pages' static files."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from digest.preview.context import STATIC, Ctx

PING_SECONDS = 15  # a comment line now and then, so proxies and browsers keep the stream open

router = APIRouter()


async def _versions(request: Request, ctx: Ctx) -> AsyncIterator[str]:
    """Send the state's version whenever it changes, until the client leaves or the server stops."""
    state = ctx.state
    seen, idle = -1, 0.0
    yield "retry: 500\n\n"
    while not state.closing:
        if state.version != seen:
            seen = state.version
            yield f"event: version\ndata: {seen}\n\n"
            idle = 0.0
        await ctx.reloader.wait(seen, 0.5)
        idle += 0.5
        if idle >= PING_SECONDS:
            idle = 0.0
            yield ": ping\n\n"
        if await request.is_disconnected():
            break


@router.get("/events")
async def events(request: Request, ctx: Ctx) -> StreamingResponse:
    return StreamingResponse(
        _versions(request, ctx),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/static/{name}")
def static(ctx: Ctx, name: str) -> Response:
    if name not in STATIC:
        return Response("not found", status_code=404, media_type="text/plain")
    # Named with a hash of their content (?v=), so a reload never asks for them again.
    return Response(
        ctx.static_files[name],
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
    )
