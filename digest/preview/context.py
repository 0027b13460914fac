"""What every preview route shares, as one typed object on `app.state`, handed to routes by `Depends`.

The routers (digest/preview/routes/) hold no state of their own: the live `PreviewState`, the
reloader, the page renderer and the static files' version all live here, built once per app.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from digest.errors import UserError
from digest.preview.build import KINDS, SAMPLE, Preview
from digest.preview.checks import FAIL, PASS, WARN
from digest.preview.draft import Draft, load_draft
from digest.preview.pages import PAGES_DIR, Pages
from digest.preview.state import PreviewState, Reloader
from digest.runtime import Runtime
from digest.weeks import Week

log = logging.getLogger("digest.preview")
STATIC = {"preview.css": "text/css", "preview.js": "text/javascript"}


def _static_files() -> dict[str, bytes]:
    return {name: (PAGES_DIR / name).read_bytes() for name in STATIC}


def checks_summary(preview: Preview) -> dict[str, int]:
    """How many checks passed, warned and failed, for the page's summary line."""
    out = {PASS: 0, WARN: 0, FAIL: 0}
    for c in preview.checks:
        out[c.status] += 1
    return out


def schedule_alert(rt: Runtime) -> str | None:
    """The overdue state `digest serve` acts on: a slot missed by too much waits for the operator."""
    from digest.schedule.slots import slot_state

    try:
        st = slot_state(rt)
    except Exception:  # noqa: BLE001 - the preview must render even if the database hiccups
        return None
    return st.message if st.overdue else None


def back(path: str, params: dict[str, str]) -> RedirectResponse:
    """Redirect after a POST (303), keeping only the non-empty query parameters."""
    query = urlencode({k: v for k, v in params.items() if v})
    return RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)


def server_timing(response: Response, timings: dict[str, float]) -> Response:
    """Where the page's time went, for the browser's devtools and bench/preview.py."""
    response.headers["Server-Timing"] = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())
    return response


@dataclass
class PreviewContext:
    """The preview app's shared parts; one per app, stored as `app.state.ctx`."""

    state: PreviewState
    reloader: Reloader
    pages: Pages = field(default_factory=Pages)
    static_files: dict[str, bytes] = field(default_factory=_static_files)
    static_version: str = field(init=False)  # a hash of their content: their URLs change when they do

    def __post_init__(self) -> None:
        self.static_version = hashlib.sha256(b"".join(self.static_files.values())).hexdigest()[:12]

    def base_context(self, request: Request, section: str, title: str) -> dict[str, Any]:
        """What every page template needs (navigation, config problems, the form token)."""
        state, rt = self.state, self.state.rt
        notice = state.notices.get(request.query_params.get("notice", ""))
        return {
            "section": section,
            "title": title,
            "site_name": rt.settings.site.name,
            "version": state.version,
            "config_error": state.config_error,
            "restart_note": state.restart_note,
            "notice": notice,
            "csrf": state.csrf,
            "transport": rt.config.transport_kind,
            "static_version": self.static_version,
            "config_path": str(rt.config.path),
            "templates_dir": str(rt.config.templates_dir),
            "schedule_alert": schedule_alert(rt),
        }

    def error_page(self, request: Request, message: str, status: int = 400) -> HTMLResponse:
        ctx = self.base_context(request, "", "Problem")
        return self.pages.render("error.html", {**ctx, "message": message}, status=status)

    async def verified_form(self, request: Request) -> FormData:
        """The posted form, if it came from this preview (same origin) and carries this process's token."""
        form = await request.form()
        origin = request.headers.get("origin")
        if origin and origin not in (f"http://{request.headers.get('host', '')}",):
            raise UserError("this form was posted from another site; reload the preview and try again")
        if not secrets.compare_digest(str(form.get("csrf", "")), self.state.csrf):
            raise UserError("the form is out of date (the preview restarted); reload the page and try again")
        return form

    async def draft_action(self, request: Request, change: Callable[[FormData, Week], str]) -> RedirectResponse:
        """One change to a week's draft from a verified form, run off the event loop; back to the
        issue page with what happened (or what was wrong) as its notice."""
        week_key = ""
        try:
            form = await self.verified_form(request)
            week_key = str(form.get("week", ""))
            week = self.state.week(week_key or None)
            done = await run_in_threadpool(change, form, week)
            return back("/", {"week": week_key, "notice": self.state.notice("ok", done[:1].upper() + done[1:])})
        except UserError as exc:
            return back("/", {"week": week_key, "notice": self.state.notice("error", str(exc))})

    def email_context(self, kind: str, preview: Preview, week: Week | None) -> dict[str, Any]:
        """The parts of a page that show one rendered email: its frame, .eml link and checks."""
        query = urlencode({**({"week": week.key} if week is not None else {}), "v": preview.token})
        return {
            "kind": kind,
            "preview": preview,
            "frame_src": f"/render/{kind}.html?{query}",
            "eml_href": f"/render/{kind}.eml?{query}",
            "summary": checks_summary(preview),
            "sample": SAMPLE,
            "test_recipients": self.state.rt.settings.preview.test_recipients,
        }

    def digest_for(self, week_key: str | None, timings: dict[str, float] | None = None) -> tuple[Draft, Preview]:
        """The week's draft and its rendered email (cached until the draft, templates or config change)."""
        state = self.state
        week = state.week(week_key)
        rt = state.rt
        start = time.perf_counter()
        draft = load_draft(rt, week)
        middle = time.perf_counter()
        preview = state.cache.get(rt, "digest", draft, state.config_generation)
        if timings is not None:
            timings.update(draft=middle - start, email=time.perf_counter() - middle)
        return draft, preview

    def rendered(self, kind: str, week: str | None, token: str | None = None) -> Preview:
        """The email a page showed (by its build token), else a fresh or cached build of `kind`."""
        if kind not in KINDS:
            raise UserError(f"no email called {kind!r}")
        cached = self.state.cache.by_token(token, kind) if token else None
        if cached is not None:  # the build the page showed: no second look at the database
            return cached
        if kind == "digest":
            return self.digest_for(week)[1]
        return self.state.cache.get(self.state.rt, kind, None, self.state.config_generation)

    def warm(self) -> None:
        """Build the week's issue once while the server starts, so the first page view is a cache hit."""
        try:
            self.digest_for(None)
        except Exception as exc:  # noqa: BLE001 - the page itself will show what is wrong
            log.info("preview warm-up skipped: %s", exc)


async def preview_context(request: Request) -> PreviewContext:
    """The app's context, for `Depends` (async: no thread hop just to read an attribute)."""
    ctx: PreviewContext = request.app.state.ctx
    return ctx


Ctx = Annotated[PreviewContext, Depends(preview_context)]
