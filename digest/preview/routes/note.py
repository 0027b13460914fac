"""The editor's note form on the issue page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import FormData

from digest.cycle.note import set_note
from digest.preview.context import Ctx
from digest.weeks import Week

router = APIRouter()


@router.post("/note")
async def note_change(request: Request, ctx: Ctx) -> Response:
    def change(form: FormData, week: Week) -> str:
        text = str(form.get("note", ""))
        return set_note(ctx.state.rt, week, text if text.strip() else None)

    return await ctx.draft_action(request, change)
