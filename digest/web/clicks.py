"""`/c/<token>`: a tracked link. Redirects to the destination frozen with the issue, records the click.

The destination never comes from the request: the token (digest.links.ClickTokens) names an
issue, a delivery and a link position, and the position is looked up in the issue's frozen
links (`issues.links`, cached per process: a sent issue's links never change). Anything else
gets a 400 page and no `Location`. The click is queued (digest.delivery.clicklog) and written
after the answer; HEAD requests redirect too and are recorded as such (scanners send them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from digest.delivery.clicklog import ClickRecorder, scanner_agent
from digest.links import ClickTokens, TokenError, Tokens
from digest.runtime import Runtime
from digest.storage.models import ISSUE_SENDING, ISSUE_SENT, Issue

router = APIRouter()

_BAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Link not valid</title>
<style>body{font:16px/1.5 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:34em;margin:3em auto;
padding:0 1em;color:#1b1c1e}</style></head><body><h1>This link is not valid</h1>
<p>It may have been cut short or changed when it was copied. The comparisons are all on the site,
and every issue is in the <a href="/archive">archive</a>.</p></body></html>"""
_BAD_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}


class ClickService:
    """Token reader, frozen-link cache and recorder of one web process."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.tokens = ClickTokens(Tokens(rt.secret_key))
        self.recorder = ClickRecorder(rt.sessions, rt.settings.tracking.flush_seconds,
                                      rt.settings.tracking.retention_days)
        self._links: dict[int, list[str] | None] = {}

    def cached(self, issue_id: int) -> list[str] | None:
        return self._links.get(issue_id)

    def destinations(self, issue_id: int) -> list[str] | None:
        """The issue's frozen link destinations (None: no such frozen issue); read once per process."""
        if issue_id in self._links:
            return self._links[issue_id]
        with self.rt.sessions() as session:
            row = session.execute(select(Issue.status, Issue.links).where(Issue.id == issue_id)).one_or_none()
        urls = None
        if row is not None and row.status in (ISSUE_SENDING, ISSUE_SENT) and row.links:
            urls = [str(link.get("url") or "") for link in row.links]
            self._links[issue_id] = urls  # frozen: never changes; unknown issues are not cached
        return urls


def _bad() -> HTMLResponse:
    return HTMLResponse(_BAD, status_code=400, headers=_BAD_HEADERS)


@router.api_route("/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def follow(request: Request, token: str) -> Response:
    service: ClickService = request.app.state.clicks
    try:
        issue_id, delivery_id, link = service.tokens.read(token)
    except TokenError:
        return _bad()
    urls = service.cached(issue_id)
    if urls is None:
        try:
            urls = await run_in_threadpool(service.destinations, issue_id)
        except SQLAlchemyError:
            return PlainTextResponse("The service is briefly unavailable; please try again in a minute.",
                                     status_code=503, headers={"Retry-After": "30", "Cache-Control": "no-store"})
    if urls is None or link >= len(urls) or not urls[link]:
        return _bad()
    service.recorder.record(issue_id=issue_id, delivery_id=delivery_id, link=link, method=request.method,
                            agent=scanner_agent(request.headers.get("user-agent")))
    # origin: the destination sees where readers come from, never the token (UTM says the rest).
    return Response(status_code=302, headers={"Location": urls[link], "Cache-Control": "no-store",
                                              "Referrer-Policy": "origin"})


def setup_clicks(app: FastAPI, rt: Runtime) -> None:
    """The click service for the app's lifetime: its recorder's thread starts and stops with the app."""
    service = ClickService(rt)
    app.state.clicks = service
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        service.recorder.start()
        try:
            async with previous(a) as state:
                yield state
        finally:
            service.recorder.stop()  # the clicks still queued are written before the process ends

    app.router.lifespan_context = lifespan
