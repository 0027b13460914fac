"""The preview web app: issue page, transactional emails, send test, history, outbox browser, live reload.

Bound to 127.0.0.1 by default; requests whose Host is not the loopback address are refused
(DNS rebinding), and every POST carries the per-process form token (CSRF from other sites).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.editor_note import set_note
from digest.errors import UserError
from digest.preview import outbox as outbox_mod
from digest.preview.build import KINDS, SAMPLE, Preview
from digest.preview.checks import FAIL, PASS, WARN
from digest.preview.draft import Draft, change_draft, load_draft
from digest.preview.history import issue_history, issue_stats
from digest.preview.pages import EMAIL_CSP, FRAMED_PAGE_CSP, PAGES_DIR, SECURITY_HEADERS, Pages, framed_email
from digest.preview.state import PreviewState, Reloader
from digest.preview.testsend import send_test
from digest.weeks import Week, current_week

log = logging.getLogger("digest.preview")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
STATIC = {"preview.css": "text/css", "preview.js": "text/javascript"}
OTHERS_SHOWN = 12  # candidates below the cut listed with a Pin button; `digest select` scores them all
TRANSACTIONAL = {"confirm": "Confirmation email", "welcome": "Welcome email"}


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
                response = Response("The preview answers on 127.0.0.1 or localhost only.\n", status_code=421,
                                    media_type="text/plain")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _checks_summary(preview: Preview) -> dict[str, int]:
    out = {PASS: 0, WARN: 0, FAIL: 0}
    for c in preview.checks:
        out[c.status] += 1
    return out


def create_preview_app(state: PreviewState, *, watch: bool = True) -> FastAPI:
    pages = Pages()
    reloader = Reloader(state)
    static_files = {name: (PAGES_DIR / name).read_bytes() for name in STATIC}
    static_version = hashlib.sha256(b"".join(static_files.values())).hexdigest()[:12]

    def warm() -> None:
        """Build the week's issue once while the server starts, so the first page view is a cache hit."""
        try:
            digest_for(None)
        except Exception as exc:  # noqa: BLE001 - the page itself will show what is wrong
            log.info("preview warm-up skipped: %s", exc)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(reloader.run()) if watch else None
        if watch:
            asyncio.get_running_loop().run_in_executor(None, warm)
        try:
            yield
        finally:
            state.closing = True
            reloader.stop()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 3)

    app = FastAPI(title="digest preview", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.preview = state
    app.state.reloader = reloader
    app.add_middleware(LoopbackHostGuard, state=state)

    # -- shared helpers ---------------------------------------------------------------------

    def schedule_alert(rt: Any) -> str | None:
        """The overdue state `digest serve` acts on: a slot missed by too much waits for the operator."""
        from digest.scheduler import slot_state

        try:
            st = slot_state(rt)
        except Exception:  # noqa: BLE001 - the preview must render even if the database hiccups
            return None
        return st.message if st.overdue else None

    def base_context(request: Request, section: str, title: str) -> dict[str, Any]:
        rt = state.rt
        notice = state.notices.get(request.query_params.get("notice", ""))
        return {"section": section, "title": title, "site_name": rt.settings.site.name, "version": state.version,
                "config_error": state.config_error, "restart_note": state.restart_note, "notice": notice,
                "csrf": state.csrf, "transport": rt.config.transport_kind, "static_version": static_version,
                "config_path": str(rt.config.path), "templates_dir": str(rt.config.templates_dir),
                "schedule_alert": schedule_alert(rt)}

    def error_page(request: Request, message: str, status: int = 400) -> HTMLResponse:
        ctx = base_context(request, "", "Problem")
        return pages.render("error.html", {**ctx, "message": message}, status=status)

    def back(path: str, params: dict[str, str]) -> RedirectResponse:
        query = urlencode({k: v for k, v in params.items() if v})
        return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)

    async def verified_form(request: Request) -> Any:
        form = await request.form()
        origin = request.headers.get("origin")
        if origin and origin not in (f"http://{request.headers.get('host', '')}",):
            raise UserError("this form was posted from another site; reload the preview and try again")
        if not secrets.compare_digest(str(form.get("csrf", "")), state.csrf):
            raise UserError("the form is out of date (the preview restarted); reload the page and try again")
        return form

    def email_context(request: Request, kind: str, preview: Preview, week: Week | None) -> dict[str, Any]:
        query = urlencode({**({"week": week.key} if week is not None else {}), "v": preview.token})
        return {"kind": kind, "preview": preview, "frame_src": f"/render/{kind}.html?{query}",
                "eml_href": f"/render/{kind}.eml?{query}",
                "summary": _checks_summary(preview), "sample": SAMPLE,
                "test_recipients": state.rt.settings.preview.test_recipients}

    def digest_for(week_key: str | None, timings: dict[str, float] | None = None) -> tuple[Draft, Preview]:
        week = state.week(week_key)
        rt = state.rt
        start = time.perf_counter()
        draft = load_draft(rt, week)
        middle = time.perf_counter()
        preview = state.cache.get(rt, "digest", draft, state.config_generation)
        if timings is not None:
            timings.update(draft=middle - start, email=time.perf_counter() - middle)
        return draft, preview

    def server_timing(response: Response, timings: dict[str, float]) -> Response:
        """Where the page's time went, for the browser's devtools and bench/preview.py."""
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())
        return response

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError) -> HTMLResponse:
        return error_page(request, str(exc))

    # -- the issue ---------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def issue_page(request: Request, week: str | None = None) -> Response:
        timings: dict[str, float] = {}
        draft, preview = digest_for(week, timings)
        rt = state.rt
        stats = issue_stats(rt, draft.issue.id) if draft.frozen and draft.issue.id else None
        ctx = base_context(request, "issue", f"Issue {draft.week.key}")
        this_week = current_week(rt.settings.schedule)
        ctx.update(email_context(request, "digest", preview, draft.week))
        ctx.update({"draft": draft, "sel": draft.selection, "stats": stats, "this_week": this_week,
                    "prev_week": draft.week.previous(), "next_week": draft.week.next(),
                    "schedule": rt.settings.schedule, "selection_cfg": rt.settings.selection,
                    "others_shown": OTHERS_SHOWN})
        start = time.perf_counter()
        response = pages.render("issue.html", ctx)
        timings["page"] = time.perf_counter() - start
        return server_timing(response, timings)

    @app.get("/emails/{kind}", response_class=HTMLResponse)
    def transactional_page(request: Request, kind: str) -> HTMLResponse:
        if kind not in TRANSACTIONAL:
            return error_page(request, f"no email called {kind!r}; there are: {', '.join(TRANSACTIONAL)}", 404)
        preview = state.cache.get(state.rt, kind, None, state.config_generation)
        ctx = base_context(request, kind, TRANSACTIONAL[kind])
        ctx.update(email_context(request, kind, preview, None))
        return pages.render("transactional.html", ctx)

    def _rendered(kind: str, week: str | None, token: str | None = None) -> Preview:
        if kind not in KINDS:
            raise UserError(f"no email called {kind!r}")
        cached = state.cache.by_token(token, kind) if token else None
        if cached is not None:  # the build the page showed: no second look at the database
            return cached
        if kind == "digest":
            return digest_for(week)[1]
        return state.cache.get(state.rt, kind, None, state.config_generation)

    @app.get("/render/{kind}.html")
    def render_html(request: Request, kind: str, week: str | None = None, scheme: str = "light",
                    v: str | None = None) -> Response:
        preview = _rendered(kind, week, v)
        if not preview.ok:
            ctx = {**base_context(request, "", "Template error"), "problem": preview.problem}
            return pages.render("frame_error.html", ctx, csp=FRAMED_PAGE_CSP)
        return HTMLResponse(framed_email(preview.html, "dark" if scheme == "dark" else "light"),
                            headers={**SECURITY_HEADERS, "Content-Security-Policy": EMAIL_CSP})

    @app.get("/render/{kind}.eml")
    def render_eml(kind: str, week: str | None = None, v: str | None = None) -> Response:
        preview = _rendered(kind, week, v)
        if not preview.ok:
            raise UserError(f"the {kind} email does not render: {preview.problem.message if preview.problem else ''}")
        name = f"preview-{kind}" + (f"-{week}" if week else "") + ".eml"
        return Response(preview.eml, media_type="message/rfc822",
                        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/selection")
    async def selection_change(request: Request) -> Response:
        week_key = ""
        try:
            form = await verified_form(request)
            week_key = str(form.get("week", ""))
            week = state.week(week_key or None)
            op = str(form.get("op", ""))  # "pin:<slug>" from the page's buttons, or action + slug fields
            action, slug = op.split(":", 1) if ":" in op else (str(form.get("action", "")), str(form.get("slug", "")))
            done = await run_in_threadpool(change_draft, state.rt, week, action, slug)
            return back("/", {"week": week_key, "notice": state.notice("ok", done[:1].upper() + done[1:])})
        except UserError as exc:
            return back("/", {"week": week_key, "notice": state.notice("error", str(exc))})

    @app.post("/note")
    async def note_change(request: Request) -> Response:
        week_key = ""
        try:
            form = await verified_form(request)
            week_key = str(form.get("week", ""))
            week = state.week(week_key or None)
            text = str(form.get("note", ""))
            done = await run_in_threadpool(set_note, state.rt, week, text if text.strip() else None)
            return back("/", {"week": week_key, "notice": state.notice("ok", done[:1].upper() + done[1:])})
        except UserError as exc:
            return back("/", {"week": week_key, "notice": state.notice("error", str(exc))})

    @app.post("/test-send")
    async def test_send(request: Request) -> Response:
        kind, week_key = "digest", ""
        try:
            form = await verified_form(request)
            kind = str(form.get("kind", "digest"))
            week_key = str(form.get("week", ""))
            to = [str(v) for v in form.getlist("to")]
            page = "/" if kind == "digest" else f"/emails/{kind}"

            def run() -> Any:
                draft = load_draft(state.rt, state.week(week_key or None)) if kind == "digest" else None
                return send_test(state.rt, kind, draft, to)

            result = await run_in_threadpool(run)
            text = f"Test sent to {', '.join(result.sent)} through the {result.transport} transport"
            if result.transport == "outbox":
                text += f" (outbox folder “{result.folder}”)"
            if result.failed:
                text += "; rejected: " + ", ".join(f"{a} ({e})" for a, e in result.failed)
            return back(page, {"week": week_key if kind == "digest" else "",
                               "notice": state.notice("error" if result.failed else "ok", text)})
        except UserError as exc:
            page = "/" if kind == "digest" else f"/emails/{kind}"
            return back(page if kind in KINDS else "/", {"week": week_key, "notice": state.notice("error", str(exc))})

    # -- live reload ---------------------------------------------------------------------------

    @app.get("/events")
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            seen, idle = -1, 0.0
            yield "retry: 500\n\n"
            while not state.closing:
                if state.version != seen:
                    seen = state.version
                    yield f"event: version\ndata: {seen}\n\n"
                    idle = 0.0
                await reloader.wait(seen, 0.5)
                idle += 0.5
                if idle >= 15:
                    idle = 0.0
                    yield ": ping\n\n"
                if await request.is_disconnected():
                    break

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- history and outbox --------------------------------------------------------------------

    @app.get("/history", response_class=HTMLResponse)
    def history_page(request: Request) -> HTMLResponse:
        ctx = base_context(request, "history", "History")
        ctx["issues"] = issue_history(state.rt)
        return pages.render("history.html", ctx)

    @app.get("/outbox", response_class=HTMLResponse)
    def outbox_page(request: Request, folder: str | None = None) -> HTMLResponse:
        rt = state.rt
        root = rt.outbox_dir
        folders = outbox_mod.list_folders(root)
        chosen = folder or (folders[0].name if folders else None)
        entries, total = outbox_mod.list_messages(root, chosen) if chosen else ([], 0)
        ctx = base_context(request, "outbox", "Outbox")
        ctx.update({"folders": folders, "chosen": chosen, "entries": entries, "total": total,
                    "outbox_dir": str(root)})
        return pages.render("outbox.html", ctx)

    @app.get("/outbox/{folder}/{name}", response_class=HTMLResponse)
    def outbox_message(request: Request, folder: str, name: str) -> HTMLResponse:
        opened = outbox_mod.open_message(state.rt.outbox_dir, folder, name)
        ctx = base_context(request, "outbox", opened.entry.subject or name)
        ctx.update({"opened": opened, "raw_href": f"/outbox/{quote(folder)}/{quote(name)}/raw",
                    "from_header": next((v for k, v in opened.headers if k.lower() == "from"), ""),
                    "frame_src": f"/outbox/{folder}/{name}/html"})
        return pages.render("message.html", ctx)

    @app.get("/outbox/{folder}/{name}/html")
    def outbox_html(folder: str, name: str, scheme: str = "light") -> Response:
        opened = outbox_mod.open_message(state.rt.outbox_dir, folder, name)
        html = opened.html if opened.html is not None else "<p>(this message has no HTML part)</p>"
        return HTMLResponse(framed_email(html, "dark" if scheme == "dark" else "light"),
                            headers={**SECURITY_HEADERS, "Content-Security-Policy": EMAIL_CSP})

    @app.get("/outbox/{folder}/{name}/raw")
    def outbox_raw(folder: str, name: str) -> Response:
        opened = outbox_mod.open_message(state.rt.outbox_dir, folder, name)
        return Response(opened.raw, media_type="text/plain; charset=utf-8", headers=SECURITY_HEADERS)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        # Named with a hash of their content (?v=), so a reload never asks for them again.
        return Response(static_files[name], media_type=STATIC[name],
                        headers={"Cache-Control": "public, max-age=31536000, immutable",
                                 "X-Content-Type-Options": "nosniff"})

    @app.exception_handler(404)
    async def _not_found(request: Request, _exc: Exception) -> HTMLResponse:
        return error_page(request, f"nothing at {request.url.path}", 404)

    return app
