"""Unsubscribe: the page a reader's link opens (never changes anything) and the RFC 8058 one-click POST.

GET  /u/<token>            unsubscribe / manage page (never changes anything)
POST /u/<token>            RFC 8058 one-click (List-Unsubscribe=One-Click) and the page's buttons
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from digest.links import TokenError, UnsubscribeClaim
from digest.runtime import Runtime
from digest.storage.models import Frequency, SubscriberStatus
from digest.web.forms import BadRequest, bad_link, client_ip, mask, read_fields, refuse_foreign_post
from digest.web.pages import OWN_ORIGIN, pages_for, plain_error
from subscribers import lifecycle, preferences

router = APIRouter()


# -- unsubscribe -------------------------------------------------------------------------


@dataclass(frozen=True)
class UnsubView:
    state: str  # subscribed | unsubscribed | blocked | gone
    masked: str = ""
    has_reason: bool = False
    monthly: bool = False  # already gets the monthly edition: no "monthly instead" offer


def _view(rt: Runtime, claim: UnsubscribeClaim) -> UnsubView:
    with rt.sessions() as session:
        sub = lifecycle.subscriber_for(session, claim)
        if sub is None:
            return UnsubView("gone")
        state = {
            SubscriberStatus.ACTIVE: "subscribed",
            SubscriberStatus.PENDING: "subscribed",
            SubscriberStatus.UNSUBSCRIBED: "unsubscribed",
        }.get(sub.status, "blocked")
        return UnsubView(state, mask(sub.email), bool(sub.unsubscribe_reason), sub.frequency == Frequency.MONTHLY)


def _act(
    rt: Runtime,
    claim: UnsubscribeClaim,
    action: str,
    fields: dict[str, str],
    method: str,
    ip: str | None,
    ua: str | None,
) -> str:
    with rt.sessions.begin() as session:
        sub = lifecycle.subscriber_for(session, claim, lock=True)
        if sub is None:
            return "gone"
        if action == "unsubscribe":
            lifecycle.unsubscribe(session, sub, issue_id=claim.issue_id, method=method)
            if fields.get("reason") or fields.get("reason_text", "").strip():
                lifecycle.set_reason(
                    session,
                    sub,
                    code=fields.get("reason", ""),
                    text=fields.get("reason_text", "")[:2000],
                    issue_id=claim.issue_id,
                )
            return "unsubscribed"
        if action == "resubscribe":
            return (
                "resubscribed"
                if lifecycle.resubscribe(session, sub, issue_id=claim.issue_id, ip=ip, user_agent=ua)
                else "unchanged"
            )
        if action == "monthly":  # "Too many emails": the best of the month instead, in one click
            return (
                "monthly"
                if preferences.monthly_instead(session, sub, issue_id=claim.issue_id, ip=ip, user_agent=ua)
                else "unchanged"
            )
        saved = lifecycle.set_reason(
            session,
            sub,
            code=fields.get("reason", ""),
            text=fields.get("reason_text", "")[:2000],
            issue_id=claim.issue_id,
        )
        return "reason" if saved else "unchanged"


def read_claim(rt: Runtime, token: str) -> UnsubscribeClaim | None:
    try:
        return lifecycle.read_unsubscribe_token(rt, token)
    except TokenError:
        return None


def posted_claim(rt: Runtime, request: Request, token: str) -> UnsubscribeClaim | Response:
    """The claim a POST from a reader's link acts on, or the answer that refuses it: a foreign Origin (403)
    or a token that is not valid (400). `/u/` and `/preferences/` both start here."""
    refused = refuse_foreign_post(rt, request)
    if refused is not None:
        return refused
    claim = read_claim(rt, token)
    return bad_link() if claim is None else claim


@router.get("/u/{token}", include_in_schema=False)
async def unsubscribe_page(request: Request, token: str) -> Response:
    rt: Runtime = request.app.state.rt
    claim = read_claim(rt, token)
    if claim is None:
        return bad_link()
    view = await run_in_threadpool(_view, rt, claim)
    done = request.query_params.get("done", "")
    return pages_for(request).render(
        "unsubscribe.html.j2",
        private=True,
        headers=OWN_ORIGIN,
        view=view,
        token=token,
        reasons=lifecycle.REASONS,
        manage=request.query_params.get("manage") == "1",
        done=done if done in ("unsubscribed", "resubscribed", "reason", "monthly") else "",
    )


@router.post("/u/{token}", include_in_schema=False)
async def unsubscribe_post(request: Request, token: str) -> Response:
    rt: Runtime = request.app.state.rt
    # `null` is refused: this page is served with strict-origin (its buttons name the site), a mail client's
    # one-click POST sends no Origin, and a foreign page's sandboxed frame is what sends `null`.
    claim = posted_claim(rt, request, token)
    if isinstance(claim, Response):
        return claim
    try:
        fields, _ = await read_fields(request)
    except BadRequest as exc:
        return plain_error(exc.status, exc.message)
    one_click = fields.get("List-Unsubscribe", "").strip().lower() == "one-click"
    action = "unsubscribe" if one_click else fields.get("action", "")
    if action not in ("unsubscribe", "resubscribe", "reason", "monthly"):
        return plain_error(400, "Unknown request: expected List-Unsubscribe=One-Click.")
    result = await run_in_threadpool(
        _act,
        rt,
        claim,
        action,
        fields,
        "one-click" if one_click else "page",
        client_ip(request),
        request.headers.get("user-agent"),
    )
    pages = pages_for(request)
    if one_click:
        # RFC 8058: answer 200 with no redirect; the change is already committed.
        view = UnsubView("gone") if result == "gone" else await run_in_threadpool(_view, rt, claim)
        return pages.render(
            "unsubscribe.html.j2",
            private=True,
            headers=OWN_ORIGIN,
            view=view,
            token=token,
            reasons=lifecycle.REASONS,
            manage=False,
            done="unsubscribed",
        )
    return RedirectResponse(
        f"/u/{token}?{urlencode({'done': result})}",
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
