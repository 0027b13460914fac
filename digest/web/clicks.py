"""`/c/<token>`: a tracked link. Redirects to the destination frozen with the issue, records the click.

`/o/<token>` is the optional open pixel (`[tracking] open_pixel`, off by default).

The destination never comes from the request: the token (digest.links.ClickTokens) names an
issue, the edition the reader was sent, a delivery and a link position, and the position is
looked up in that edition's frozen links (`editions.links`; the main edition's for tokens made
before editions), cached per process: a sent edition's links never change. Anything else
gets a 400 page and no `Location`. The click is queued (digest.reports.clicklog) and written
after the answer; HEAD requests redirect too and are recorded as such (scanners send them).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.errors import ConfigError
from digest.links import ClickTokens, TokenError, Tokens
from digest.mail import ascii_uri
from digest.render.tracked import BLANK_GIF_BASE64
from digest.reports.clicklog import ClickRecorder, scanner_agent
from digest.runtime import Runtime
from digest.storage.models import MAIN_EDITION_KEY, Edition, Issue, IssueStatus

log = logging.getLogger("digest.clicks")
router = APIRouter()

_BAD = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Link not valid</title>
<style>body{font:16px/1.5 -apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:34em;margin:3em auto;
padding:0 1em;color:#1b1c1e}</style></head><body><h1>This link is not valid</h1>
<p>It may have been cut short or changed when it was copied. The comparisons are all on the site,
and every issue is in the <a href="/archive">archive</a>.</p></body></html>"""
_BAD_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


class ClickService:
    """Token reader, frozen-link cache and recorder of one web process."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.recorder = ClickRecorder(
            rt.sessions,
            rt.settings.tracking.flush_seconds,
            rt.settings.tracking.retention_days,
            rt.settings.tracking.repeat_seconds,
        )
        self._links: dict[tuple[int, int | None], list[str]] = {}

    @cached_property
    def tokens(self) -> ClickTokens:
        """Read on first use (and again until it works): a broken key file must not keep the app from starting."""
        return ClickTokens(Tokens(self.rt.secret_key))

    @cached_property
    def pixel(self) -> ClickTokens:
        return ClickTokens(Tokens(self.rt.secret_key), "digest.open")

    def cached(self, issue_id: int, edition_id: int | None) -> list[str] | None:
        return self._links.get((issue_id, edition_id))

    def destinations(self, issue_id: int, edition_id: int | None) -> list[str] | None:
        """The frozen link destinations of an edition of a sent issue (edition None: the main one);
        None when there is no such thing. Read once per process."""
        if (issue_id, edition_id) in self._links:
            return self._links[issue_id, edition_id]
        # The edition must be one of this issue's; a token naming none is the main edition's.
        which = Edition.id == edition_id if edition_id is not None else Edition.key == MAIN_EDITION_KEY
        q = (
            select(Issue.status, Edition.links)
            .join(Edition, Edition.issue_id == Issue.id)
            .where(Issue.id == issue_id, which)
        )
        with self.rt.sessions() as session:
            row = session.execute(q).one_or_none()
        urls = None
        if row is not None and row.status in (IssueStatus.SENDING, IssueStatus.SENT) and row.links:
            urls = [_location(str(link.get("url") or "")) for link in row.links]
            self._links[issue_id, edition_id] = urls  # frozen: never changes; unknown ones are not cached
        return urls


def _location(url: str) -> str:
    """The URI a `Location` header may carry (ASCII only): links frozen before ingest stored IRIs as URIs
    still hold them. One that cannot be read as a URL is no destination (400), never a 500."""
    if not url:
        return ""
    try:
        uri = ascii_uri(url)
    except ValueError:
        uri = ""
    if not uri or any(c < " " or c == "\x7f" for c in uri):  # a header line holds no control characters
        log.warning("a frozen link is not a URL and is not redirected to: %r", url[:200])
        return ""
    return uri


_UNAVAILABLE = "The service is briefly unavailable; please try again in a minute."


def _bad() -> tuple[int, dict[str, str], str]:
    return 400, {**_BAD_HEADERS, "Content-Type": "text/html; charset=utf-8"}, _BAD


def _unavailable() -> tuple[int, dict[str, str], str]:
    """A broken key file or an unreachable database: the reader is asked to come back, never shown a 500."""
    return (
        503,
        {"Retry-After": "30", "Cache-Control": "no-store", "Content-Type": "text/plain; charset=utf-8"},
        _UNAVAILABLE,
    )


async def answer(
    service: ClickService, method: str, token: str, user_agent: str | None
) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) for one request: a 302 to the frozen destination, or 400, or 503."""
    try:
        claim = service.tokens.read(token)
    except TokenError:
        return _bad()
    except ConfigError:  # the key file is broken (logged where the key is read); links work again once fixed
        return _unavailable()
    urls = service.cached(claim.issue_id, claim.edition_id)
    if urls is None:
        try:
            urls = await run_in_threadpool(service.destinations, claim.issue_id, claim.edition_id)
        except SQLAlchemyError:
            return _unavailable()
    link = claim.link
    if urls is None or link >= len(urls) or not urls[link]:
        return _bad()
    service.recorder.record(
        issue_id=claim.issue_id,
        delivery_id=claim.delivery_id,
        link=link,
        method=method,
        agent=scanner_agent(user_agent),
        edition_id=claim.edition_id,
    )
    # origin: the destination sees where readers come from, never the token (UTM says the rest).
    return 302, {"Location": urls[link], "Cache-Control": "no-store", "Referrer-Policy": "origin"}, ""


_GIF = base64.b64decode(BLANK_GIF_BASE64)
_GIF_HEADERS = {"Content-Type": "image/gif", "Cache-Control": "no-store, private", "X-Content-Type-Options": "nosniff"}


def answer_open(
    service: ClickService, method: str, token: str, user_agent: str | None
) -> tuple[int, dict[str, str], bytes]:
    """The optional open pixel (`[tracking] open_pixel`): a transparent GIF, and an `open` recorded."""
    try:
        claim = service.pixel.read(token)
    except TokenError:
        status, headers, text = _bad()
        return status, headers, text.encode()
    except ConfigError:  # a broken key file, as for links
        status, headers, text = _unavailable()
        return status, headers, text.encode()
    service.recorder.record(
        issue_id=claim.issue_id,
        delivery_id=claim.delivery_id,
        link=-1,
        method=method,
        kind="open",
        agent=scanner_agent(user_agent),
    )
    return 200, dict(_GIF_HEADERS), _GIF


@router.api_route("/o/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def opened(request: Request, token: str) -> Response:
    status, headers, body = answer_open(
        request.app.state.clicks, request.method, token, request.headers.get("user-agent")
    )
    media = headers.pop("Content-Type", None)
    return Response(body, status_code=status, headers=headers, media_type=media)


@router.api_route("/c/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def follow(request: Request, token: str) -> Response:
    """Described here (and in openapi.PUBLIC); FastPath below answers it first, without the framework's cost."""
    status, headers, body = await answer(
        request.app.state.clicks, request.method, token, request.headers.get("user-agent")
    )
    media = headers.pop("Content-Type", None)
    return Response(body, status_code=status, headers=headers, media_type=media)


class FastPath:
    """Raw ASGI in front of the app for `/c/<token>`: the same `answer`, a tenth of the per-request cost
    (no routing, request object or middleware stack), so a burst of clicks after a send stays cheap."""

    def __init__(self, app: ASGIApp, service: ClickService):
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path[:3] not in ("/c/", "/o/") or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), None)
        if path[1] == "c":
            status, headers, text = await answer(self.service, scope["method"], path[3:], agent)
            body = text.encode("utf-8")
        else:
            status, headers, body = answer_open(self.service, scope["method"], path[3:], agent)
        data = b"" if scope["method"] == "HEAD" else body
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": data})


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
    app.add_middleware(FastPath, service=service)
