"""The History page: past issues with the numbers `digest stats` prints."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from digest.preview import charts
from digest.preview.context import Ctx
from digest.preview.history import issue_history, list_history
from digest.weeks import Week

router = APIRouter()


@router.get("/history", response_class=HTMLResponse)
def history_page(request: Request, ctx: Ctx, before: str | None = None) -> HTMLResponse:
    page = ctx.base_context(request, "history", "History")
    shown = issue_history(ctx.state.rt, before=Week.parse(before) if before is not None else None)
    page.update({"issues": shown.rows, "older": shown.older, "before": before})
    history = list_history(ctx.state.rt)
    page["charts"] = [
        charts.list_over_time(history["subscribers_by_week"]),
        charts.category_click_through(history["click_through_by_category"]),
    ]
    return ctx.pages.render("history.html", page)
