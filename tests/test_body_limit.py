"""Request bodies are bounded while they stream: a huge chunked POST gets 413, memory stays flat."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from digest.web.bodylimit import BodyLimit
from tests.support_http import peak_rss_kib, served, stream_chunked

pytestmark = pytest.mark.slow

BIG = 200 * 1024 * 1024  # far more than any route accepts; the server must stop reading long before


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/subscribe", "application/x-www-form-urlencoded"),
        ("/subscribe", "multipart/form-data; boundary=xyz"),
        ("/webhooks/resend", "application/json"),
    ],
)
def test_a_huge_chunked_post_gets_413_and_the_server_does_not_buffer_it(
    tmp_path: Path, sqlite_url: str, path: str, ctype: str
) -> None:
    with served(tmp_path, sqlite_url, RESEND_WEBHOOK_SECRET="whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") as proc:
        before = peak_rss_kib(proc.proc.pid)
        response, sent = stream_chunked(proc.port, path, BIG, content_type=ctype)
        grown_mib = (peak_rss_kib(proc.proc.pid) - before) / 1024
        assert response.startswith(b"HTTP/1.1 413"), response[:300]
        assert grown_mib < 20, f"the server grew by {grown_mib:.0f} MiB for a {BIG >> 20} MiB body"
        assert sent < BIG, "the server read the whole body before refusing it"
        assert proc.healthy()  # still serving


def test_a_declared_content_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    calls: list[str] = []
    app = FastAPI()

    @app.post("/x")
    async def x(request: Request) -> dict[str, int]:
        calls.append("x")
        return {"n": len(await request.body())}

    app.add_middleware(BodyLimit, default=100, prefixes={"/big/": 1000})
    client = TestClient(app)
    resp = client.post("/x", content=b"a" * 101)
    assert resp.status_code == 413 and resp.headers["connection"] == "close"
    assert calls == []
    assert client.post("/x", content=b"a" * 100).json() == {"n": 100}


def test_a_route_that_swallows_the_failed_read_still_answers_413() -> None:
    app = FastAPI()

    @app.post("/form")
    async def form(request: Request) -> dict[str, str]:
        try:
            await request.body()
        except Exception:  # noqa: BLE001 - like a route that maps any read failure to its own 400
            return {"error": "could not read"}
        return {"ok": "yes"}

    app.add_middleware(BodyLimit, default=100)

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"a" * 50

    resp = TestClient(app).post("/form", content=chunks())
    assert resp.status_code == 413
