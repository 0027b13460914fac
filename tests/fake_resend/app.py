"""The fake's HTTP face: POST /emails/batch, GET /domains[/{id}] and GET /webhooks[/{id}] like Resend's, plus
/_fake/* for tests."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from tests.fake_resend.state import Answer, FakeResend, Faults


class DroppedConnection(Exception):
    """Raised after a partial answer: uvicorn then closes the socket, the client sees a cut connection."""


class _CutResponse(Response):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})
        raise DroppedConnection("fake resend: connection dropped on purpose")


def _respond(answer: Answer) -> Response:
    if answer.drop:
        return _CutResponse()
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def create_app(fake: FakeResend) -> FastAPI:
    app = FastAPI(title="fake resend", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.fake = fake

    @app.post("/emails/batch")
    async def send_batch(request: Request) -> Response:
        arrived = time.time()
        key = request.headers.get("idempotency-key")
        early = fake.admit(arrived, request.headers.get("authorization"), key)
        if early is not None:
            return _respond(early)
        raw = await request.body()
        permissive = request.headers.get("x-batch-validation", "strict").lower() == "permissive"
        # Parsing and schema checks run off the event loop, so arrivals keep accurate timestamps.
        answer = await run_in_threadpool(fake.handle_batch, arrived, raw, key, permissive)
        if answer.status == 200 and not answer.drop:
            late = fake.after_accept()
            if late is not None and late.drop:
                return _respond(late)
            if late is not None and late.delay:
                await asyncio.sleep(late.delay)
        return _respond(answer)

    @app.post("/emails")
    async def send_one(request: Request) -> Response:
        return JSONResponse(
            {"statusCode": 405, "message": "the fake only implements /emails/batch", "name": "method_not_allowed"},
            status_code=405,
        )

    @app.get("/domains")
    async def list_domains(request: Request) -> Response:
        return _respond(fake.list_domains(request.headers.get("authorization"), dict(request.query_params)))

    @app.get("/webhooks")
    async def list_webhooks(request: Request) -> Response:
        return _respond(fake.list_webhooks(request.headers.get("authorization"), dict(request.query_params)))

    @app.get("/webhooks/{webhook_id}")
    async def get_webhook(webhook_id: str, request: Request) -> Response:
        return _respond(fake.get_webhook(request.headers.get("authorization"), webhook_id))

    @app.get("/domains/{domain_id}")
    async def get_domain(domain_id: str, request: Request) -> Response:
        return _respond(fake.get_domain(request.headers.get("authorization"), domain_id))

    @app.get("/_fake/summary")
    async def summary() -> dict[str, Any]:
        return fake.summary()

    @app.get("/_fake/dump")
    async def dump() -> dict[str, Any]:
        return fake.dump()

    @app.post("/_fake/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        faults = Faults(**(await request.json()))
        fake.set_faults(faults)
        return asdict(faults)

    @app.post("/_fake/reset")
    async def reset() -> dict[str, str]:
        fake.reset()
        return {"status": "ok"}

    return app
