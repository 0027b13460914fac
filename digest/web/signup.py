"""Public routes of sign-up (page, API, embed.js, iframe) and confirmation.

    GET  /subscribe            hosted sign-up page
    POST /subscribe            form-encoded, multipart or JSON; JSON in -> JSON out, a form -> 303
    GET  /subscribe/thanks     "check your inbox"
    GET  /embed                the form alone, for an <iframe>
    GET  /embed.js             drop-in script: renders the form into any page, posts with fetch
    GET  /embed/origin         whether the caller's Origin may use the form (embed.js explains a CORS refusal)
    GET  /confirm/<token>      double opt-in link: a page with a "Confirm my subscription" button
    POST /confirm/<token>      that button: confirms (a GET never does; link scanners GET)

Every bad input gets a clear 4xx and changes nothing; a forged token gets a plain 400. A POST to
/u/ or /preferences/ from a page on another site (its Origin) gets a plain 403 (`refuse_foreign_post`).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from digest.delivery.drainer_process import DrainerProcess
from digest.runtime import Runtime
from digest.web.forms import (
    CONTROL_CHARS,
    MAX_FIELD,
    BadRequest,
    allowed_origins,
    client_ip,
    host_page,
    mask,
    read_fields,
    safe_next,
    wants_json,
)
from digest.web.pages import DEFAULT_DIR, Pages, origin_of, pages_for
from subscribers import lifecycle, preferences
from subscribers.ratelimit import prune
from subscribers.signup import SignupOutcome, SignupRequest, clean_form_id, signup

router = APIRouter()
log = logging.getLogger("digest.web.signup")


async def _signup(rt: Runtime, req: SignupRequest) -> SignupOutcome:
    """Run a sign-up right here on the event loop, unless it may wait on DNS.

    A sign-up is a few short statements (well under a millisecond of database time); handing
    it to the thread pool only added thread switches and lock hand-offs, and measured slower
    on SQLite and on PostgreSQL (bench/subscribe.py). Run one uvicorn worker per core so a
    slow database round trip in one worker never holds up all of them. With
    `subscribe.check_deliverability` the address's domain is looked up first, which can take
    seconds, so then it goes to the thread pool.
    """
    if rt.settings.subscribe.check_deliverability:
        return await run_in_threadpool(signup, rt, req)
    return signup(rt, req)


def _drainer_wake(request: Request) -> None:
    drainer = getattr(request.app.state, "subscriber_drainer", None)
    if drainer is not None:
        drainer.wake()


# -- sign-up -----------------------------------------------------------------------------


@router.get("/subscribe", include_in_schema=False)
async def subscribe_page(request: Request) -> Response:
    pages = pages_for(request)
    nxt = safe_next(request.query_params.get("next"), request.app.state.rt, request)
    topics = await run_in_threadpool(_topic_boxes, request.app.state.rt)
    return pages.render("subscribe.html.j2", form=_form_context(source="hosted", next_url=nxt, topics=topics))


def _form_context(
    *,
    source: str,
    next_url: str | None = None,
    email: str = "",
    name: str = "",
    error: str = "",
    error_field: str | None = None,
    compact: bool = False,
    page: str | None = None,
    topics: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """`topics`: (key, name) of the topic boxes to offer; none: no boxes (every topic)."""
    return {
        "action": "/subscribe",
        "source": source,
        "next": next_url or "",
        "email": email,
        "name": name,
        "error": error,
        "error_field": error_field,
        "compact": compact,
        "page": page or "",
        "topics": topics or [],
    }


def _topic_boxes(rt: Runtime) -> list[tuple[str, str]]:
    return [(t.key, t.name) for t in preferences.offered(rt).topics]


@router.post("/subscribe", include_in_schema=False)
async def subscribe_post(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    origin = request.headers.get("origin")
    as_json = "application/json" in request.headers.get("accept", "") or request.headers.get(
        "content-type", ""
    ).startswith("application/json")
    if origin and origin.lower() not in allowed_origins(rt, request):
        return _refuse(request, as_json, 403, "This site may not use the sign-up form.")
    try:
        fields, body_json = await read_fields(request)
    except BadRequest as exc:
        return _refuse(request, as_json, exc.status, exc.message)
    as_json = wants_json(request, body_json)
    source = clean_form_id(fields.get("source"), "api" if as_json else "form")
    try:
        asked = preferences.signup_topics(fields.get("topics") or fields.get("topic") or "")
    except preferences.PreferenceError as exc:
        return _form_or_json_error(request, rt, as_json, fields, source, f"Topics: {exc}.")
    req = SignupRequest(
        email=fields.get("email", "")[:MAX_FIELD],
        name=(fields.get("name") or "")[:MAX_FIELD] or None,
        honeypot=fields.get("website", ""),
        form=source,
        page=host_page(fields.get("page"), rt, request) or request.headers.get("referer") or origin,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        topics=asked,
    )
    drainer = getattr(request.app.state, "subscriber_drainer", None)
    if drainer is not None:
        drainer.note_request()
    try:
        outcome = await _signup(rt, req)
    except DBAPIError:
        log.exception("sign-up: database error")
        return _refuse(
            request,
            as_json,
            503,
            "The sign-up is briefly unavailable; please try again in a minute.",
            headers={"Retry-After": "30"},
        )
    if outcome.queued and drainer is not None:
        drainer.wake()
    if as_json:
        return _json_outcome(outcome)
    return _form_outcome(request, rt, outcome, fields, source)


def _form_or_json_error(
    request: Request, rt: Runtime, as_json: bool, fields: dict[str, str], source: str, message: str
) -> Response:
    return (
        _json_outcome(SignupOutcome("invalid", message, field="topics"))
        if as_json
        else _form_outcome(request, rt, SignupOutcome("invalid", message, field="topics"), fields, source)
    )


def _json_outcome(outcome: SignupOutcome) -> JSONResponse:
    if outcome.accepted:
        return JSONResponse({"ok": True, "message": outcome.message})
    if outcome.status == "limited":
        return JSONResponse(
            {"ok": False, "error": outcome.message, "retry_after": outcome.retry_after},
            status_code=429,
            headers={"Retry-After": str(outcome.retry_after)},
        )
    return JSONResponse({"ok": False, "error": outcome.message, "field": outcome.field}, status_code=400)


def _form_outcome(
    request: Request, rt: Runtime, outcome: SignupOutcome, fields: dict[str, str], source: str
) -> Response:
    nxt = safe_next(fields.get("next"), rt, request)
    if outcome.accepted:
        return RedirectResponse(nxt or "/subscribe/thanks", status_code=303)
    pages = pages_for(request)
    status = 429 if outcome.status == "limited" else 400
    headers = {"Retry-After": str(outcome.retry_after)} if outcome.status == "limited" else None
    form = _form_context(
        source=source,
        next_url=nxt,
        email=_echo(fields.get("email"), 254),
        name=_echo(fields.get("name"), 100),
        error=outcome.message,
        error_field=outcome.field,
        compact=source == "embed",
        page=host_page(fields.get("page"), rt, request),
        topics=_topic_boxes(rt) if source == "hosted" or fields.get("topic") else None,
    )
    if source == "embed":
        return pages.render("embed.html.j2", status=status, frameable=True, headers=headers, form=form, done=False)
    return pages.render("subscribe.html.j2", status=status, headers=headers, form=form)


def _echo(value: str | None, limit: int) -> str:
    """What the visitor typed, shown back in the form: one line, bounded."""
    return " ".join(CONTROL_CHARS.sub(" ", value or "").split())[:limit]


def _refuse(
    request: Request, as_json: bool, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    if as_json:
        return JSONResponse({"ok": False, "error": message}, status_code=status, headers=headers)
    return pages_for(request).render(
        "message.html.j2",
        status=status,
        title="Something went wrong",
        heading="We could not take that sign-up",
        message=message,
        headers=headers,
    )


@router.get("/subscribe/thanks", include_in_schema=False)
async def thanks_page(request: Request) -> Response:
    return pages_for(request).render("thanks.html.j2")


@router.get("/embed", include_in_schema=False)
async def embed_page(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    done = request.query_params.get("done") == "1"
    # The iframe's Referer is the page that embeds it: carried in the form, so the consent
    # record names that page rather than /embed (the form's own POST has /embed as Referer).
    page = host_page(request.query_params.get("page"), rt, request) or host_page(
        request.headers.get("referer"), rt, request
    )
    with_topics = request.query_params.get("topics") in ("1", "true")
    topics = await run_in_threadpool(_topic_boxes, rt) if with_topics else []
    return pages_for(request).render(
        "embed.html.j2",
        frameable=True,
        done=done,
        form=_form_context(source="embed", next_url="/embed?done=1", compact=True, page=page, topics=topics),
    )


@router.get("/embed/topics", include_in_schema=False)
async def embed_topics(request: Request) -> Response:
    """The topics a sign-up form may offer (embed.js with data-topics="true"): key and name of each."""
    topics = await run_in_threadpool(_topic_boxes, request.app.state.rt)
    return JSONResponse(
        {"topics": [{"key": k, "name": n} for k, n in topics]}, headers={"Cache-Control": "public, max-age=300"}
    )


@router.get("/embed/origin", include_in_schema=False)
async def embed_origin(request: Request) -> Response:
    """Whether the calling page's origin may use the form. Readable from any origin on purpose:
    to a script a CORS refusal looks like a network failure, and this lets embed.js tell the
    visitor the form is not enabled here and the site's developer which setting to change."""
    rt: Runtime = request.app.state.rt
    origin = (request.headers.get("origin") or "").lower()
    allowed = not origin or origin in allowed_origins(rt, request)
    return JSONResponse(
        {"origin": origin or None, "allowed": allowed, "setting": "site.allowed_origins"},
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
    )


@router.get("/embed.js", include_in_schema=False)
async def embed_js(request: Request) -> Response:
    pages = pages_for(request)
    path = pages.dir / "embed.js"
    if not path.is_file():
        path = DEFAULT_DIR / "embed.js"
    return Response(
        path.read_bytes(),
        media_type="application/javascript; charset=utf-8",
        headers={
            "Cache-Control": "public, max-age=300",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )


# -- confirm -----------------------------------------------------------------------------


@router.get("/confirm/{token}", include_in_schema=False)
async def confirm_page(request: Request, token: str) -> Response:
    """Opening the link only shows a button: scanners that prefetch links confirm nothing."""
    result = await run_in_threadpool(lifecycle.confirm_state, request.app.state.rt, token)
    return _confirm_answer(request, token, result)


@router.post("/confirm/{token}", include_in_schema=False)
async def confirm_post(request: Request, token: str) -> Response:
    """The page's button (a plain form: no JavaScript needed) is the person's deliberate act."""
    result = await run_in_threadpool(
        lifecycle.confirm,
        request.app.state.rt,
        token,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    if result.state == "confirmed":
        _drainer_wake(request)
    return _confirm_answer(request, token, result)


def _confirm_answer(request: Request, token: str, result: lifecycle.ConfirmResult) -> Response:
    ok = result.state in ("pending", "confirmed", "already")
    # A dead link's page offers the sign-up form. Under "no-referrer" Chromium posts it with
    # `Origin: null` (refused by the origin check); "origin" sends only the origin, never the token.
    headers = None if ok else {"Referrer-Policy": "origin"}
    return pages_for(request).render(
        "confirm.html.j2",
        status=200 if ok else 400,
        private=True,
        headers=headers,
        state=result.state,
        action=f"/confirm/{token}" if result.state == "pending" else "",
        masked=mask(result.email),
        form={**_form_context(source="confirm-again", compact=True), "submit": "Send me a new link"},
    )


# -- app wiring --------------------------------------------------------------------------


def setup_app(app: FastAPI, rt: Runtime, *, start_drainer: bool = True) -> None:
    """CORS for the embed origins, and the confirmation/welcome drainer for the app's lifetime."""
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted({origin_of(o) for o in rt.settings.site.allowed_origins}),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Accept"],
        allow_credentials=False,
        max_age=600,
    )
    app.state.subscriber_pages = Pages(rt.config)
    if not start_drainer:
        return

    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        # Its own process: rendering and sending never hold up a request (no timing tells
        # a new address from a known one). It also prunes old rate-limit buckets.
        drainer = DrainerProcess(rt, housekeeping=prune)
        a.state.subscriber_drainer = drainer
        drainer.start()
        # Everything built so far (app, routes, templates, SQLAlchemy metadata) lives as long
        # as the process: move it out of the collector's sight. Full collections then stay
        # short; before this they paused a worker for 100-200 ms now and then under load.
        gc.collect()
        gc.freeze()
        try:
            async with previous(a) as state:
                yield state
        finally:
            drainer.stop()
            a.state.subscriber_drainer = None

    app.router.lifespan_context = lifespan
