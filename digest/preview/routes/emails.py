"""The transactional emails' pages (confirm, welcome) and every email as rendered: framed HTML and .eml."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from digest.errors import UserError
from digest.preview.context import Ctx
from digest.preview.pages import EMAIL_CSP, FRAMED_PAGE_CSP, SECURITY_HEADERS, framed_email

TRANSACTIONAL = {"confirm": "Confirmation email", "welcome": "Welcome email"}

router = APIRouter()


@router.get("/emails/{kind}", response_class=HTMLResponse)
def transactional_page(request: Request, ctx: Ctx, kind: str) -> HTMLResponse:
    if kind not in TRANSACTIONAL:
        return ctx.error_page(request, f"no email called {kind!r}; there are: {', '.join(TRANSACTIONAL)}", 404)
    state = ctx.state
    preview = state.cache.get(state.rt, kind, None, state.config_generation)
    page = ctx.base_context(request, kind, TRANSACTIONAL[kind])
    page.update(ctx.email_context(kind, preview, None))
    return ctx.pages.render("transactional.html", page)


@router.get("/render/{kind}.html")
def render_html(
    request: Request, ctx: Ctx, kind: str, week: str | None = None, scheme: str = "light", v: str | None = None
) -> Response:
    preview = ctx.rendered(kind, week, v)
    if not preview.ok:
        page = {**ctx.base_context(request, "", "Template error"), "problem": preview.problem}
        return ctx.pages.render("frame_error.html", page, csp=FRAMED_PAGE_CSP)
    return HTMLResponse(
        framed_email(preview.html, "dark" if scheme == "dark" else "light"),
        headers={**SECURITY_HEADERS, "Content-Security-Policy": EMAIL_CSP},
    )


@router.get("/render/{kind}.eml")
def render_eml(ctx: Ctx, kind: str, week: str | None = None, v: str | None = None) -> Response:
    preview = ctx.rendered(kind, week, v)
    if not preview.ok:
        raise UserError(f"the {kind} email does not render: {preview.problem.message if preview.problem else ''}")
    name = f"preview-{kind}" + (f"-{week}" if week else "") + ".eml"
    return Response(
        preview.eml,
        media_type="message/rfc822",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
    )
