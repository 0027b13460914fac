"""The editor's note form on the issue page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from digest.editor_note import set_note
from digest.errors import UserError
from digest.preview.context import Ctx, back

router = APIRouter()


@router.post("/note")
async def note_change(request: Request, ctx: Ctx) -> Response:
    state = ctx.state
    week_key = ""
    try:
        form = await ctx.verified_form(request)
        week_key = str(form.get("week", ""))
        week = state.week(week_key or None)
        text = str(form.get("note", ""))
        done = await run_in_threadpool(set_note, state.rt, week, text if text.strip() else None)
        return back("/", {"week": week_key, "notice": state.notice("ok", done[:1].upper() + done[1:])})
    except UserError as exc:
        return back("/", {"week": week_key, "notice": state.notice("error", str(exc))})
