"""The preview web app: issue page, transactional emails, send test, history, outbox browser, live reload.

Bound to 127.0.0.1 by default; requests whose Host is not the loopback address are refused
(DNS rebinding), and every POST carries the per-process form token (CSRF from other sites).
Bound anywhere else, every request must carry the access token printed at start (access.py).
The pages themselves are routers in digest/preview/routes/, sharing one `PreviewContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.errors import UserError
from digest.preview.access import AccessTokenGuard
from digest.preview.context import PreviewContext
from digest.preview.routes import emails, history, issue, live, note, outbox, testsend
from digest.preview.state import PreviewState, Reloader

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
ROUTERS = (issue.router, emails.router, note.router, testsend.router, live.router, history.router, outbox.router)


class LoopbackHostGuard:
    """Refuse requests whose Host header is not a loopback name: a page on another site that
    rebinds its DNS name to 127.0.0.1 cannot read or drive the preview."""

    def __init__(self, app: ASGIApp, state: PreviewState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.state.loopback_only:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in LOOPBACK_HOSTS:
                response = Response(
                    "The preview answers on 127.0.0.1 or localhost only.\n", status_code=421, media_type="text/plain"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _lifespan(ctx: PreviewContext, watch: bool) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Watch templates and config while the server runs (and warm the cache); stop cleanly on exit."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(ctx.reloader.run()) if watch else None
        if watch:
            asyncio.get_running_loop().run_in_executor(None, ctx.warm)
        try:
            yield
        finally:
            ctx.state.closing = True
            ctx.reloader.stop()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 3)

    return lifespan


def create_preview_app(state: PreviewState, *, watch: bool = True) -> FastAPI:
    """Off loopback only with an access token: the pages show every reader's personal links."""
    if not state.loopback_only and not state.access_token:
        raise UserError("--host: off loopback the preview needs an access token (every request must carry it)")
    ctx = PreviewContext(state, Reloader(state))
    app = FastAPI(
        title="digest preview", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan(ctx, watch)
    )
    app.state.ctx = ctx
    app.add_middleware(LoopbackHostGuard, state=state)
    if state.access_token:
        app.add_middleware(AccessTokenGuard, token=state.access_token)
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError) -> HTMLResponse:
        return ctx.error_page(request, str(exc))

    @app.exception_handler(404)
    async def _not_found(request: Request, _exc: Exception) -> HTMLResponse:
        return ctx.error_page(request, f"nothing at {request.url.path}", 404)

    return app
