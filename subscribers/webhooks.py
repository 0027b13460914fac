"""POST /webhooks/resend: delivery events from Resend, verified (Svix) and handled once each.

The signature is checked over the raw body before anything is parsed; a bad or stale one
gets 401 and leaves no trace. The svix-id goes into `webhook_receipts` in the same
transaction as the event's effect, so a replay (or two at once) changes nothing twice.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from svix.webhooks import Webhook

from digest.runtime import Runtime
from digest.storage.models import Delivery, Subscriber, WebhookReceipt
from digest.weeks import as_utc, utcnow
from subscribers.addresses import AddressError, normalize_email
from subscribers.lifecycle import record_bounce, record_complaint

log = logging.getLogger("subscribers.webhooks")
router = APIRouter()

MAX_BODY = 256 * 1024
_STAMPS = {"email.delivered": "delivered_at", "email.opened": "opened_at", "email.clicked": "clicked_at"}


def _answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.post("/webhooks/resend", include_in_schema=False)
async def resend_webhook(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.rt
    secret = rt.config.webhook_secret
    if not secret:
        return _answer(503, ok=False, error="webhook secret not configured (set RESEND_WEBHOOK_SECRET)")
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        return _answer(413, ok=False, error="body too large")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _answer(413, ok=False, error="body too large")
    headers = {k: request.headers.get(k, "") for k in ("svix-id", "svix-timestamp", "svix-signature")}
    try:
        verifier = Webhook(secret)
    except Exception:  # noqa: BLE001 - a secret that is not whsec_<base64>
        log.error("RESEND_WEBHOOK_SECRET is not a valid whsec_... secret")
        return _answer(503, ok=False, error="webhook secret misconfigured")
    try:
        verifier.verify(body, headers)
    except Exception:  # noqa: BLE001 - any malformed header or body fails verification the same way
        return _answer(401, ok=False, error="invalid signature")
    try:
        payload = json.loads(body)
        event_type = payload["type"]
        data = payload.get("data") or {}
        if not isinstance(event_type, str) or not isinstance(data, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError, RecursionError):
        return _answer(400, ok=False, error="body is not a Resend event (JSON with type and data)")
    try:
        when = event_time(payload.get("created_at"))
    except ValueError as exc:
        return _answer(400, ok=False, error=str(exc))
    result = await run_in_threadpool(handle_event, rt, headers["svix-id"], event_type, data, when)
    return _answer(200, ok=True, result=result)


def handle_event(rt: Runtime, message_id: str, event_type: str, data: dict[str, Any],
                 created_at: datetime | None = None) -> str:
    """Apply one verified event exactly once; returns a short description for logs and tests."""
    try:
        with rt.sessions.begin() as session:
            if session.scalar(select(WebhookReceipt.id).where(WebhookReceipt.message_id == message_id[:100])):
                return "duplicate"
            session.add(WebhookReceipt(message_id=message_id[:100], event_type=event_type[:64], received_at=utcnow()))
            session.flush()
            return _apply(session, event_type, data, created_at or utcnow())
    except IntegrityError:  # the same svix-id arrived twice at the same moment; the other one handled it
        return "duplicate"


def event_time(value: Any) -> datetime | None:
    """The event's `created_at` in UTC; None when absent or unreadable (then: now).

    A date that reads but cannot be a UTC instant (year 1 east of UTC, year 9999 west of it)
    is a ValueError for a 400: a signed body can still be nonsense."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return as_utc(parsed)
    except OverflowError:
        raise ValueError(f"created_at: {value[:40]!r} is out of range") from None


def _apply(session, event_type: str, data: dict[str, Any], when: datetime) -> str:  # type: ignore[no-untyped-def]
    email_id = data.get("email_id")
    delivery = None
    if isinstance(email_id, str) and email_id:
        delivery = session.scalar(select(Delivery).where(Delivery.provider_id == email_id[:100]).limit(1))
    if event_type in _STAMPS:
        if delivery is None:
            return "ignored: no matching delivery"
        if getattr(delivery, _STAMPS[event_type]) is None:
            setattr(delivery, _STAMPS[event_type], when)
        return f"recorded {event_type}"
    if event_type not in ("email.bounced", "email.complained"):
        return f"ignored: {event_type}"
    sub, address = _person(session, delivery, data)
    if sub is None and address is None:
        return "ignored: unknown recipient"
    if event_type == "email.complained":
        return record_complaint(session, email=address, sub=sub, delivery=delivery, now=when)
    bounce = data.get("bounce") if isinstance(data.get("bounce"), dict) else {}
    kind = str(bounce.get("type") or "")
    detail = {"type": kind[:40], "subtype": str(bounce.get("subType") or "")[:60]}
    return record_bounce(session, email=address, sub=sub, permanent=kind.lower() == "permanent",
                         delivery=delivery, detail=detail, now=when)


def _person(session, delivery: Delivery | None, data: dict[str, Any]) -> tuple[Subscriber | None, str | None]:  # type: ignore[no-untyped-def]
    """The subscriber of the matched delivery, else the event's first recipient (confirm/welcome mail)."""
    if delivery is not None and delivery.subscriber_id is not None:
        sub = session.get(Subscriber, delivery.subscriber_id)
        if sub is not None:
            return sub, sub.email
    to = data.get("to")
    first = to[0] if isinstance(to, list) and to else to
    if not isinstance(first, str):
        return None, (delivery.email or None) if delivery is not None else None
    try:
        address = normalize_email(first.rsplit("<", 1)[-1].rstrip(">"))
    except AddressError:
        return None, None
    return session.scalar(select(Subscriber).where(Subscriber.email == address)), address
