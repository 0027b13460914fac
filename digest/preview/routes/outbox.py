"""The Outbox browser: folders, one message's headers and parts, its framed HTML and raw source."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from digest.preview import outbox
from digest.preview.context import Ctx
from digest.preview.pages import EMAIL_CSP, SECURITY_HEADERS, framed_email

router = APIRouter()


@router.get("/outbox", response_class=HTMLResponse)
def outbox_page(request: Request, ctx: Ctx, folder: str | None = None) -> HTMLResponse:
    root = ctx.state.rt.outbox_dir
    folders = outbox.list_folders(root)
    chosen = folder or (folders[0].name if folders else None)
    entries, total = outbox.list_messages(root, chosen) if chosen else ([], 0)
    page = ctx.base_context(request, "outbox", "Outbox")
    page.update({"folders": folders, "chosen": chosen, "entries": entries, "total": total, "outbox_dir": str(root)})
    return ctx.pages.render("outbox.html", page)


@router.get("/outbox/{folder}/{name}", response_class=HTMLResponse)
def outbox_message(request: Request, ctx: Ctx, folder: str, name: str) -> HTMLResponse:
    opened = outbox.open_message(ctx.state.rt.outbox_dir, folder, name)
    page = ctx.base_context(request, "outbox", opened.entry.subject or name)
    page.update(
        {
            "opened": opened,
            "raw_href": f"/outbox/{quote(folder)}/{quote(name)}/raw",
            "from_header": next((v for k, v in opened.headers if k.lower() == "from"), ""),
            "frame_src": f"/outbox/{folder}/{name}/html",
        }
    )
    return ctx.pages.render("message.html", page)


@router.get("/outbox/{folder}/{name}/html")
def outbox_html(ctx: Ctx, folder: str, name: str, scheme: str = "light") -> Response:
    opened = outbox.open_message(ctx.state.rt.outbox_dir, folder, name)
    html = opened.html if opened.html is not None else "<p>(this message has no HTML part)</p>"
    return HTMLResponse(
        framed_email(html, "dark" if scheme == "dark" else "light"),
        headers={**SECURITY_HEADERS, "Content-Security-Policy": EMAIL_CSP},
    )


@router.get("/outbox/{folder}/{name}/raw")
def outbox_raw(ctx: Ctx, folder: str, name: str) -> Response:
    opened = outbox.open_message(ctx.state.rt.outbox_dir, folder, name)
    return Response(opened.raw, media_type="text/plain; charset=utf-8", headers=SECURITY_HEADERS)
