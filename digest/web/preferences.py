"""The preference centre: the "Manage subscription" link of every issue and of the welcome email.

    GET  /preferences/<token>   topics, frequency, pause, a Save button (changes nothing)
    POST /preferences/<token>   that form (form-encoded; every ticked `topic`, `frequency`, `pause`)

The token is the reader's signed unsubscribe token (tied to the subscriber and their address), so
no login and no JavaScript: a plain form that posts and comes back with "Saved".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from digest.links import UnsubscribeClaim
from digest.runtime import Runtime
from digest.selection import topics as topic_catalogue
from digest.selection.topics import Topics
from digest.storage.models import Frequency, SubscriberStatus
from digest.web.forms import bad_link, mask
from digest.web.pages import OWN_ORIGIN, pages_for, plain_error
from digest.web.unsubscribe import posted_claim, read_claim
from digest.weeks import as_utc, utcnow
from subscribers import lifecycle, preferences

router = APIRouter()
MAX_BODY = 16 * 1024


@dataclass
class PreferenceView:
    state: str  # subscribed | left | gone
    masked: str = ""
    topics: list[tuple[str, str, bool]] = field(default_factory=list)  # key, name, ticked
    frequency: str = Frequency.WEEKLY.value
    paused_until: datetime | None = None


def catalogue(rt: Runtime) -> Topics:
    """Read fresh, not from `preferences.offered`'s one-minute cache: a topic another process offers
    already may be this reader's own choice, and a save must neither drop nor refuse it."""
    with rt.sessions() as session:
        return topic_catalogue.load(session, rt.settings.topics)


def _view(rt: Runtime, claim: UnsubscribeClaim, cat: Topics) -> PreferenceView:
    with rt.sessions() as session:
        sub = lifecycle.subscriber_for(session, claim)
        if sub is None:
            return PreferenceView("gone")
        masked = mask(sub.email)
        if sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
            return PreferenceView("left", masked)
        chosen = set(cat.parse(sub.topics or ""))
        paused = sub.paused_until if preferences.is_paused(sub) else None
        return PreferenceView(
            "subscribed",
            masked,
            [(t.key, t.name, t.key in chosen) for t in cat.topics],
            Frequency(sub.frequency).value,
            as_utc(paused) if paused else None,
        )


def _save(rt: Runtime, claim: UnsubscribeClaim, change: preferences.Change) -> str:
    with rt.sessions.begin() as session:  # the row locked: a double-clicked Save records one change
        sub = lifecycle.subscriber_for(session, claim, lock=True)
        if sub is None or sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
            return "gone"
        return "saved" if preferences.apply(session, sub, change, by="reader: preference centre") else "unchanged"


@router.get("/preferences/{token}", include_in_schema=False)
async def preferences_page(request: Request, token: str) -> Response:
    rt: Runtime = request.app.state.rt
    claim = read_claim(rt, token)
    if claim is None:
        return bad_link()
    cat = await run_in_threadpool(catalogue, rt)
    view = await run_in_threadpool(_view, rt, claim, cat)
    done = request.query_params.get("done", "")
    return pages_for(request).render(
        "preferences.html.j2",
        private=True,
        headers=OWN_ORIGIN,
        view=view,
        token=token,
        pause_weeks=preferences.PAUSE_WEEKS,
        error="",
        done=done if done in ("saved", "unchanged") else "",
        now=utcnow(),
    )


@router.post("/preferences/{token}", include_in_schema=False)
async def preferences_post(request: Request, token: str) -> Response:
    rt: Runtime = request.app.state.rt
    claim = posted_claim(rt, request, token)
    if isinstance(claim, Response):
        return claim
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return plain_error(415, "Send the form (application/x-www-form-urlencoded).")
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        return plain_error(413, "The request is too large.")
    body = await request.body()
    if len(body) > MAX_BODY:
        return plain_error(413, "The request is too large.")
    cat = await run_in_threadpool(catalogue, rt)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        change = preferences.parse_form(pairs, cat)
    except (UnicodeDecodeError, ValueError) as exc:
        message = str(exc) if isinstance(exc, preferences.PreferenceError) else "The form could not be read."
        view = await run_in_threadpool(_view, rt, claim, cat)
        return pages_for(request).render(
            "preferences.html.j2",
            status=400,
            private=True,
            headers=OWN_ORIGIN,
            view=view,
            token=token,
            pause_weeks=preferences.PAUSE_WEEKS,
            error=message,
            done="",
            now=utcnow(),
        )
    result = await run_in_threadpool(_save, rt, claim, change)
    return RedirectResponse(
        f"/preferences/{token}?done={result if result != 'gone' else 'unchanged'}",
        status_code=303,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
