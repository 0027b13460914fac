"""Public routes of the subscriber side: sign-up (page, API, embed.js, iframe), confirm, unsubscribe.

    GET  /subscribe            hosted sign-up page
    POST /subscribe            form-encoded, multipart or JSON; JSON in -> JSON out, a form -> 303
    GET  /subscribe/thanks     "check your inbox"
    GET  /embed                the form alone, for an <iframe>
    GET  /embed.js             drop-in script: renders the form into any page, posts with fetch
    GET  /embed/origin         whether the caller's Origin may use the form (embed.js explains a CORS refusal)
    GET  /confirm/<token>      double opt-in link: a page with a "Confirm my subscription" button
    POST /confirm/<token>      that button: confirms (a GET never does; link scanners GET)
    GET  /u/<token>            unsubscribe / manage page (never changes anything)
    POST /u/<token>            RFC 8058 one-click (List-Unsubscribe=One-Click) and the page's buttons

Every bad input gets a clear 4xx and changes nothing; a forged token gets a plain 400. A POST to
/u/ or /preferences/ from a page on another site (its Origin) gets a plain 403 (`refuse_foreign_post`).
"""

from __future__ import annotations

import gc
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware

from digest.delivery.drainer_process import DrainerProcess
from digest.links import TokenError, UnsubscribeClaim
from digest.runtime import Runtime
from digest.storage.models import SUB_ACTIVE, SUB_PENDING, SUB_UNSUBSCRIBED, Frequency
from subscribers import lifecycle, preferences
from subscribers.pages import DEFAULT_DIR, OWN_ORIGIN, Pages, origin_of, pages_for, plain_error
from subscribers.ratelimit import prune
from subscribers.signup import SignupOutcome, SignupRequest, clean_form_id, signup

router = APIRouter()
log = logging.getLogger("subscribers.web")

MAX_BODY = 16 * 1024
MAX_FIELD = 2000
_CTRL = re.compile(r"[\x00-\x1f\x7f\\]")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- request helpers ---------------------------------------------------------------------


async def read_fields(request: Request) -> tuple[dict[str, str], bool]:
    """The posted fields as strings, and whether the body was JSON. Raises BadRequest."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise BadRequest(413, "The request is too large.")
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_BODY:
        raise BadRequest(413, "The request is too large.")
    if ctype == "application/json":
        try:
            data = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting thousands deep
            raise BadRequest(400, "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "The request body must be a JSON object.")
        fields = {}
        for key, value in data.items():
            if not _is_text(key):  # JSON's "\ud800": no database stores it, no page shows it
                raise BadRequest(400, "A field name is not valid text.")
            if value is None:
                continue
            if not isinstance(value, str):
                raise BadRequest(400, f"{str(key)[:40]}: must be a string.")
            if not _is_text(value):
                raise BadRequest(400, f"{key[:40]}: is not valid text.")
            fields[str(key)] = value
        return fields, True
    if ctype in ("application/x-www-form-urlencoded", ""):
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "The form data could not be read.") from None
        return _first_values(pairs), False
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=0, max_fields=50)
        except Exception:  # noqa: BLE001 - malformed multipart of any kind
            raise BadRequest(400, "The form data could not be read.") from None
        return _first_values([(k, v) for k, v in form.multi_items() if isinstance(v, str)]), False
    raise BadRequest(415, "Send the form as application/x-www-form-urlencoded, multipart/form-data or JSON.")


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Each field's first value; the repeated `topic` boxes of a sign-up form join as "a+b"."""
    out: dict[str, str] = {}
    for key, value in pairs:
        if key == "topic" and key in out:
            out[key] = f"{out[key]}+{value}"
        out.setdefault(key, value)
    return out


def wants_json(request: Request, body_was_json: bool) -> bool:
    return body_was_json or "application/json" in request.headers.get("accept", "")


def client_ip(request: Request) -> str | None:
    """The peer address; behind a proxy run uvicorn with --proxy-headers --forwarded-allow-ips."""
    return request.client.host if request.client else None


def own_origins(rt: Runtime, request: Request) -> set[str]:
    """The site's own origin (`site.public_url`) and the one this request was sent to (its Host)."""
    own = {origin_of(rt.settings.site.public_url)}
    host = request.headers.get("host")
    if host:
        own.add(f"{request.url.scheme}://{host}".lower())
    return own


def allowed_origins(rt: Runtime, request: Request) -> set[str]:
    return {origin_of(o) for o in rt.settings.site.allowed_origins} | own_origins(rt, request)


FOREIGN_POST = "This form was sent from another site, so nothing was changed. Use the link in your email instead."


def refuse_foreign_post(rt: Runtime, request: Request) -> Response | None:
    """A 403 for a POST a page on another site made the reader's browser send (CSRF); None to go on.

    No Origin: a mail client's one-click POST (RFC 8058) or another non-browser client; current
    browsers name the page's origin on every POST, so a foreign page cannot send that.
    `Origin: null` comes from a sandboxed frame (a foreign page can make one) or a page under
    `Referrer-Policy: no-referrer`: refused, and the reader's own pages are served with
    `strict-origin` (OWN_ORIGIN) so their forms name the site.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return None
    origin = origin.strip().lower()
    if origin in own_origins(rt, request):
        return None
    return plain_error(403, FOREIGN_POST)


def safe_next(raw: str | None, rt: Runtime, request: Request) -> str | None:
    """A redirect target after the no-JS form: a path here, or a URL on an allowed origin."""
    if not raw or len(raw) > MAX_FIELD or _CTRL.search(raw) or " " in raw:
        return None
    if raw.startswith("/") and not raw.startswith("//"):
        return raw
    try:
        parts = urlsplit(raw)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return raw if origin_of(raw) in allowed_origins(rt, request) else None


def host_page(raw: str | None, rt: Runtime, request: Request) -> str | None:
    """The page a form was on, if it is a URL on an allowed origin (else the visitor could write anything)."""
    if not raw or raw.startswith("/"):
        return None
    return safe_next(raw, rt, request)


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


def _form_context(*, source: str, next_url: str | None = None, email: str = "", name: str = "",
                  error: str = "", error_field: str | None = None, compact: bool = False,
                  page: str | None = None, topics: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """`topics`: (key, name) of the topic boxes to offer; none: no boxes (every topic)."""
    return {"action": "/subscribe", "source": source, "next": next_url or "", "email": email, "name": name,
            "error": error, "error_field": error_field, "compact": compact, "page": page or "",
            "topics": topics or []}


def _topic_boxes(rt: Runtime) -> list[tuple[str, str]]:
    return [(t.key, t.name) for t in preferences.offered(rt).topics]


@router.post("/subscribe", include_in_schema=False)
async def subscribe_post(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    origin = request.headers.get("origin")
    as_json = "application/json" in request.headers.get("accept", "") or \
        request.headers.get("content-type", "").startswith("application/json")
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
        email=fields.get("email", "")[:MAX_FIELD], name=(fields.get("name") or "")[:MAX_FIELD] or None,
        honeypot=fields.get("website", ""), form=source,
        page=host_page(fields.get("page"), rt, request) or request.headers.get("referer") or origin,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"), topics=asked,
    )
    drainer = getattr(request.app.state, "subscriber_drainer", None)
    if drainer is not None:
        drainer.note_request()
    try:
        outcome = await _signup(rt, req)
    except DBAPIError:
        log.exception("sign-up: database error")
        return _refuse(request, as_json, 503, "The sign-up is briefly unavailable; please try again in a minute.",
                       headers={"Retry-After": "30"})
    if outcome.queued and drainer is not None:
        drainer.wake()
    if as_json:
        return _json_outcome(outcome)
    return _form_outcome(request, rt, outcome, fields, source)


def _form_or_json_error(request: Request, rt: Runtime, as_json: bool, fields: dict[str, str], source: str,
                        message: str) -> Response:
    return _json_outcome(SignupOutcome("invalid", message, field="topics")) if as_json else _form_outcome(
        request, rt, SignupOutcome("invalid", message, field="topics"), fields, source)


def _json_outcome(outcome: SignupOutcome) -> JSONResponse:
    if outcome.accepted:
        return JSONResponse({"ok": True, "message": outcome.message})
    if outcome.status == "limited":
        return JSONResponse({"ok": False, "error": outcome.message, "retry_after": outcome.retry_after},
                            status_code=429, headers={"Retry-After": str(outcome.retry_after)})
    return JSONResponse({"ok": False, "error": outcome.message, "field": outcome.field}, status_code=400)


def _form_outcome(request: Request, rt: Runtime, outcome: SignupOutcome, fields: dict[str, str],
                  source: str) -> Response:
    nxt = safe_next(fields.get("next"), rt, request)
    if outcome.accepted:
        return RedirectResponse(nxt or "/subscribe/thanks", status_code=303)
    pages = pages_for(request)
    status = 429 if outcome.status == "limited" else 400
    headers = {"Retry-After": str(outcome.retry_after)} if outcome.status == "limited" else None
    form = _form_context(source=source, next_url=nxt, email=_echo(fields.get("email"), 254),
                         name=_echo(fields.get("name"), 100), error=outcome.message, error_field=outcome.field,
                         compact=source == "embed", page=host_page(fields.get("page"), rt, request),
                         topics=_topic_boxes(rt) if source == "hosted" or fields.get("topic") else None)
    if source == "embed":
        return pages.render("embed.html.j2", status=status, frameable=True, headers=headers, form=form, done=False)
    return pages.render("subscribe.html.j2", status=status, headers=headers, form=form)


def _echo(value: str | None, limit: int) -> str:
    """What the visitor typed, shown back in the form: one line, bounded."""
    return " ".join(_CTRL.sub(" ", value or "").split())[:limit]


def _refuse(request: Request, as_json: bool, status: int, message: str,
            headers: dict[str, str] | None = None) -> Response:
    if as_json:
        return JSONResponse({"ok": False, "error": message}, status_code=status, headers=headers)
    return pages_for(request).render("message.html.j2", status=status, title="Something went wrong",
                                     heading="We could not take that sign-up", message=message, headers=headers)


@router.get("/subscribe/thanks", include_in_schema=False)
async def thanks_page(request: Request) -> Response:
    return pages_for(request).render("thanks.html.j2")


@router.get("/embed", include_in_schema=False)
async def embed_page(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    done = request.query_params.get("done") == "1"
    # The iframe's Referer is the page that embeds it: carried in the form, so the consent
    # record names that page rather than /embed (the form's own POST has /embed as Referer).
    page = host_page(request.query_params.get("page"), rt, request) or \
        host_page(request.headers.get("referer"), rt, request)
    with_topics = request.query_params.get("topics") in ("1", "true")
    topics = await run_in_threadpool(_topic_boxes, rt) if with_topics else []
    return pages_for(request).render("embed.html.j2", frameable=True, done=done,
                                     form=_form_context(source="embed", next_url="/embed?done=1", compact=True,
                                                        page=page, topics=topics))


@router.get("/embed/topics", include_in_schema=False)
async def embed_topics(request: Request) -> Response:
    """The topics a sign-up form may offer (embed.js with data-topics="true"): key and name of each."""
    topics = await run_in_threadpool(_topic_boxes, request.app.state.rt)
    return JSONResponse({"topics": [{"key": k, "name": n} for k, n in topics]},
                        headers={"Cache-Control": "public, max-age=300"})


@router.get("/embed/origin", include_in_schema=False)
async def embed_origin(request: Request) -> Response:
    """Whether the calling page's origin may use the form. Readable from any origin on purpose:
    to a script a CORS refusal looks like a network failure, and this lets embed.js tell the
    visitor the form is not enabled here and the site's developer which setting to change."""
    rt: Runtime = request.app.state.rt
    origin = (request.headers.get("origin") or "").lower()
    allowed = not origin or origin in allowed_origins(rt, request)
    return JSONResponse({"origin": origin or None, "allowed": allowed, "setting": "site.allowed_origins"},
                        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"})


@router.get("/embed.js", include_in_schema=False)
async def embed_js(request: Request) -> Response:
    pages = pages_for(request)
    path = pages.dir / "embed.js"
    if not path.is_file():
        path = DEFAULT_DIR / "embed.js"
    return Response(path.read_bytes(), media_type="application/javascript; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff",
                             "Cross-Origin-Resource-Policy": "cross-origin"})


# -- confirm -----------------------------------------------------------------------------


@router.get("/confirm/{token}", include_in_schema=False)
async def confirm_page(request: Request, token: str) -> Response:
    """Opening the link only shows a button: scanners that prefetch links confirm nothing."""
    result = await run_in_threadpool(lifecycle.confirm_state, request.app.state.rt, token)
    return _confirm_answer(request, token, result)


@router.post("/confirm/{token}", include_in_schema=False)
async def confirm_post(request: Request, token: str) -> Response:
    """The page's button (a plain form: no JavaScript needed) is the person's deliberate act."""
    result = await run_in_threadpool(lifecycle.confirm, request.app.state.rt, token, ip=client_ip(request),
                                     user_agent=request.headers.get("user-agent"))
    if result.state == "confirmed":
        _drainer_wake(request)
    return _confirm_answer(request, token, result)


def _confirm_answer(request: Request, token: str, result: lifecycle.ConfirmResult) -> Response:
    ok = result.state in ("pending", "confirmed", "already")
    # A dead link's page offers the sign-up form. Under "no-referrer" Chromium posts it with
    # `Origin: null` (refused by the origin check); "origin" sends only the origin, never the token.
    headers = None if ok else {"Referrer-Policy": "origin"}
    return pages_for(request).render(
        "confirm.html.j2", status=200 if ok else 400, private=True, headers=headers, state=result.state,
        action=f"/confirm/{token}" if result.state == "pending" else "", masked=mask(result.email),
        form={**_form_context(source="confirm-again", compact=True), "submit": "Send me a new link"})


def bad_link() -> Response:
    """A forged, garbled or dead token: the same plain answer, whatever was wrong."""
    return plain_error(400, "This link is not valid.")


# -- unsubscribe -------------------------------------------------------------------------


@dataclass(frozen=True)
class UnsubView:
    state: str  # subscribed | unsubscribed | blocked | gone
    masked: str = ""
    has_reason: bool = False
    monthly: bool = False  # already gets the monthly edition: no "monthly instead" offer


def mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def _view(rt: Runtime, claim: UnsubscribeClaim) -> UnsubView:
    with rt.sessions() as session:
        sub = lifecycle.subscriber_for(session, claim)
        if sub is None:
            return UnsubView("gone")
        state = {SUB_ACTIVE: "subscribed", SUB_PENDING: "subscribed", SUB_UNSUBSCRIBED: "unsubscribed"}.get(
            sub.status, "blocked")
        return UnsubView(state, mask(sub.email), bool(sub.unsubscribe_reason), sub.frequency == Frequency.MONTHLY)


def _act(rt: Runtime, claim: UnsubscribeClaim, action: str, fields: dict[str, str], method: str,
         ip: str | None, ua: str | None) -> str:
    with rt.sessions.begin() as session:
        sub = lifecycle.subscriber_for(session, claim, lock=True)
        if sub is None:
            return "gone"
        if action == "unsubscribe":
            lifecycle.unsubscribe(session, sub, issue_id=claim.issue_id, method=method)
            if fields.get("reason") or fields.get("reason_text", "").strip():
                lifecycle.set_reason(session, sub, code=fields.get("reason", ""),
                                     text=fields.get("reason_text", "")[:2000], issue_id=claim.issue_id)
            return "unsubscribed"
        if action == "resubscribe":
            return "resubscribed" if lifecycle.resubscribe(session, sub, issue_id=claim.issue_id, ip=ip,
                                                           user_agent=ua) else "unchanged"
        if action == "monthly":  # "Too many emails": the best of the month instead, in one click
            return "monthly" if preferences.monthly_instead(session, sub, issue_id=claim.issue_id, ip=ip,
                                                            user_agent=ua) else "unchanged"
        saved = lifecycle.set_reason(session, sub, code=fields.get("reason", ""),
                                     text=fields.get("reason_text", "")[:2000], issue_id=claim.issue_id)
        return "reason" if saved else "unchanged"


def read_claim(rt: Runtime, token: str) -> UnsubscribeClaim | None:
    try:
        return lifecycle.read_unsubscribe_token(rt, token)
    except TokenError:
        return None


@router.get("/u/{token}", include_in_schema=False)
async def unsubscribe_page(request: Request, token: str) -> Response:
    rt: Runtime = request.app.state.rt
    claim = read_claim(rt, token)
    if claim is None:
        return bad_link()
    view = await run_in_threadpool(_view, rt, claim)
    done = request.query_params.get("done", "")
    return pages_for(request).render(
        "unsubscribe.html.j2", private=True, headers=OWN_ORIGIN, view=view, token=token, reasons=lifecycle.REASONS,
        manage=request.query_params.get("manage") == "1",
        done=done if done in ("unsubscribed", "resubscribed", "reason", "monthly") else "")


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe_post(request: Request, token: str) -> Response:
    rt: Runtime = request.app.state.rt
    # `null` is refused: this page is served with strict-origin (its buttons name the site), a mail client's
    # one-click POST sends no Origin, and a foreign page's sandboxed frame is what sends `null`.
    refused = refuse_foreign_post(rt, request)
    if refused is not None:
        return refused
    claim = read_claim(rt, token)
    if claim is None:
        return bad_link()
    try:
        fields, _ = await read_fields(request)
    except BadRequest as exc:
        return plain_error(exc.status, exc.message)
    one_click = fields.get("List-Unsubscribe", "").strip().lower() == "one-click"
    action = "unsubscribe" if one_click else fields.get("action", "")
    if action not in ("unsubscribe", "resubscribe", "reason", "monthly"):
        return plain_error(400, "Unknown request: expected List-Unsubscribe=One-Click.")
    result = await run_in_threadpool(_act, rt, claim, action, fields, "one-click" if one_click else "page",
                                     client_ip(request), request.headers.get("user-agent"))
    pages = pages_for(request)
    if one_click:
        # RFC 8058: answer 200 with no redirect; the change is already committed.
        view = UnsubView("gone") if result == "gone" else await run_in_threadpool(_view, rt, claim)
        return pages.render("unsubscribe.html.j2", private=True, headers=OWN_ORIGIN, view=view, token=token,
                            reasons=lifecycle.REASONS, manage=False, done="unsubscribed")
    return RedirectResponse(f"/u/{token}?{urlencode({'done': result})}", status_code=303,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


# -- app wiring --------------------------------------------------------------------------


def setup_app(app: FastAPI, rt: Runtime, *, start_drainer: bool = True) -> None:
    """CORS for the embed origins, and the confirmation/welcome drainer for the app's lifetime."""
    app.add_middleware(
        CORSMiddleware, allow_origins=sorted({origin_of(o) for o in rt.settings.site.allowed_origins}),
        allow_methods=["GET", "POST"], allow_headers=["Content-Type", "Accept"], allow_credentials=False,
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
