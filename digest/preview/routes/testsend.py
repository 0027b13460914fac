"""The "Send test" form: one copy to addresses on preview.test_recipients (digest.preview.testsend)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from digest.errors import UserError
from digest.preview.build import KINDS
from digest.preview.context import Ctx, back
from digest.preview.draft import load_draft
from digest.preview.testsend import TestSendResult, send_test

router = APIRouter()


def _sent_notice(result: TestSendResult) -> str:
    text = f"Test sent to {', '.join(result.sent)} through the {result.transport} transport"
    if result.transport == "outbox":
        text += f" (outbox folder “{result.folder}”)"
    if result.failed:
        text += "; rejected: " + ", ".join(f"{a} ({e})" for a, e in result.failed)
    return text


@router.post("/test-send")
async def test_send(request: Request, ctx: Ctx) -> Response:
    state = ctx.state
    kind, week_key = "digest", ""
    try:
        form = await ctx.verified_form(request)
        kind = str(form.get("kind", "digest"))
        week_key = str(form.get("week", ""))
        to = [str(v) for v in form.getlist("to")]
        page = "/" if kind == "digest" else f"/emails/{kind}"

        def run() -> TestSendResult:
            draft = load_draft(state.rt, state.week(week_key or None)) if kind == "digest" else None
            return send_test(state.rt, kind, draft, to)

        result = await run_in_threadpool(run)
        return back(
            page,
            {
                "week": week_key if kind == "digest" else "",
                "notice": state.notice("error" if result.failed else "ok", _sent_notice(result)),
            },
        )
    except UserError as exc:
        page = "/" if kind == "digest" else f"/emails/{kind}"
        return back(page if kind in KINDS else "/", {"week": week_key, "notice": state.notice("error", str(exc))})
