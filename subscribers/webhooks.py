"""Provider webhooks: POST /webhooks/resend (Svix-signed) and POST /webhooks/ses (SNS-signed).

Each route only reads the raw body, lets its provider module verify and parse it into
DeliveryEvents, and hands them to `apply_events`. A bad or missing signature gets 401 and
leaves no trace (for SNS, a topic not ours gets that very answer); a signed body that is not
an event gets 400.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from digest.delivery.events import DeliveryEvent, EventError, resend, ses, sns
from digest.runtime import Runtime
from subscribers.delivery_events import apply_events

log = logging.getLogger("subscribers.webhooks")
router = APIRouter()

MAX_BODY = 256 * 1024
MAX_SNS_BODY = 1024 * 1024  # SNS messages are up to 256 KiB before JSON escaping in the envelope


def _answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def _body(request: Request, limit: int) -> bytes:
    if int(request.headers.get("content-length") or 0) > limit:
        raise EventError(413, "body too large")
    body = await request.body()
    if len(body) > limit:
        raise EventError(413, "body too large")
    return body


@router.post("/webhooks/resend", include_in_schema=False)
async def resend_webhook(request: Request) -> JSONResponse:
    rt: Runtime = request.app.state.rt
    try:
        body = await _body(request, MAX_BODY)
        svix_id = resend.verify(rt.config.webhook_secret, body, request.headers)
        events = resend.parse(svix_id, body)
    except EventError as exc:
        return _answer(exc.status, ok=False, error=exc.message)
    return await _apply(rt, events)


@router.post("/webhooks/ses", include_in_schema=False)
async def ses_webhook(request: Request) -> JSONResponse:
    """SNS: check topic and signature, answer the subscription handshake, apply SES events."""
    rt: Runtime = request.app.state.rt
    topics = rt.settings.webhooks.sns_topic_arns
    trust = sns.SnsTrust.from_env(rt.config.env)
    try:
        if not topics:
            raise EventError(503, "no SNS topic configured (set webhooks.sns_topic_arns in config.toml)")
        message = sns.envelope(await _body(request, MAX_SNS_BODY))
        sns.acceptable(message, topics, trust)  # nothing is fetched for a message that is not
        await run_in_threadpool(sns.verify, message, trust)
        if message["Type"] == "SubscriptionConfirmation":
            await run_in_threadpool(sns.confirm_subscription, message, trust)
            log.info("confirmed the SNS subscription to %s", message["TopicArn"])
            return _answer(200, ok=True, result="subscription confirmed")
        if message["Type"] == "UnsubscribeConfirmation":
            log.warning("SNS says this endpoint was unsubscribed from %s", message["TopicArn"])
            return _answer(200, ok=True, result="unsubscribe noted")
        events = ses.parse(message["MessageId"], message["Message"])
    except EventError as exc:
        return _answer(exc.status, ok=False, error=exc.message)
    return await _apply(rt, events)


async def _apply(rt: Runtime, events: list[DeliveryEvent]) -> JSONResponse:
    result = await run_in_threadpool(apply_events, rt, events)
    return _answer(200, ok=True, result=result)
