"""Provider webhooks: POST /webhooks/<provider>, one route per provider that declares a webhook.

Each route only reads the raw body (up to the limit its provider declared), lets the provider's
`receive` verify and parse it into DeliveryEvents, and hands them to `apply_events`. A bad or
missing signature gets 401 and leaves no trace (for SNS, a topic not ours gets that very answer);
a signed body that is not an event gets 400. No provider is named here: the routes are read
from the declarations (digest.providers.registry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from digest.delivery.events import Acknowledged, DeliveryEvent, EventError
from digest.providers import registry
from digest.runtime import Runtime
from subscribers.delivery_events import apply_events

MAX_BODY = 256 * 1024  # the default limit of a webhook's body (a provider may declare its own)


def _answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def _body(request: Request, limit: int) -> bytes:
    if int(request.headers.get("content-length") or 0) > limit:
        raise EventError(413, "body too large")
    body = await request.body()
    if len(body) > limit:
        raise EventError(413, "body too large")
    return body


def endpoint(webhook: registry.Webhook) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The route of one provider's webhook: read, verify and parse (in a thread: it may fetch), apply."""

    async def receive(request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.rt
        try:
            body = await _body(request, webhook.max_body)
            got = await run_in_threadpool(webhook.receive, rt, body, request.headers)
        except EventError as exc:
            return _answer(exc.status, ok=False, error=exc.message)
        if isinstance(got, Acknowledged):
            return _answer(200, ok=True, result=got.result)
        return await _apply(rt, got)

    return receive


def build_router() -> APIRouter:
    """One POST route per provider with a webhook, at the path its name gives."""
    router = APIRouter()
    for provider in registry.providers():
        if provider.webhook is not None:
            router.add_api_route(
                provider.webhook_path,
                endpoint(provider.webhook),
                methods=["POST"],
                include_in_schema=False,
                name=f"{provider.name}_webhook",
            )
    return router


async def _apply(rt: Runtime, events: list[DeliveryEvent]) -> JSONResponse:
    result = await run_in_threadpool(apply_events, rt, events)
    return _answer(200, ok=True, result=result)


router = build_router()
