"""The issue page (this week's draft, its checks and stats) and the pin/drop/swap buttons on it."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData

from digest.preview import charts
from digest.preview.context import Ctx, server_timing
from digest.preview.draft import change_draft
from digest.preview.history import counted, insights
from digest.weeks import Week, current_week

OTHERS_SHOWN = 12  # candidates below the cut listed with a Pin button; `digest select` scores them all

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def issue_page(request: Request, ctx: Ctx, week: str | None = None) -> Response:
    timings: dict[str, float] = {}
    draft, preview = ctx.digest_for(week, timings)
    rt = ctx.state.rt
    stats = None
    figures = []
    if draft.frozen and draft.issue.id:
        full = insights(rt, draft.issue.id)  # one `digest stats` for the numbers and the charts
        stats = counted(full)
        clicks = full.get("clicks") or {}
        figures = [charts.delivery_funnel(full)]
        if clicks.get("tracked"):
            figures.append(
                charts.click_through(
                    clicks.get("comparisons") or [],
                    int(full.get("sent") or 0),
                    set_aside=int(clicks.get("set_aside_total") or 0),
                    editions=len(full.get("editions") or []),
                )
            )
            figures += charts.edition_click_through(full.get("editions") or [])
    page = ctx.base_context(request, "issue", f"Issue {draft.week.key}")
    this_week = current_week(rt.settings.schedule)
    page.update(ctx.email_context("digest", preview, draft.week))
    page.update(
        {
            "draft": draft,
            "sel": draft.selection,
            "stats": stats,
            "this_week": this_week,
            "prev_week": draft.week.previous(),
            "next_week": draft.week.next(),
            "schedule": rt.settings.schedule,
            "selection_cfg": rt.settings.selection,
            "others_shown": OTHERS_SHOWN,
            "charts": figures,
            "edition_checks": ctx.state.cache.edition_checks(rt, draft, ctx.state.config_generation),
        }
    )
    start = time.perf_counter()
    response = ctx.pages.render("issue.html", page)
    timings["page"] = time.perf_counter() - start
    return server_timing(response, timings)


@router.post("/selection")
async def selection_change(request: Request, ctx: Ctx) -> Response:
    def change(form: FormData, week: Week) -> str:
        op = str(form.get("op", ""))  # "pin:<slug>" from the page's buttons, or action + slug fields
        action, slug = op.split(":", 1) if ":" in op else (str(form.get("action", "")), str(form.get("slug", "")))
        return change_draft(ctx.state.rt, week, action, slug)

    return await ctx.draft_action(request, change)
