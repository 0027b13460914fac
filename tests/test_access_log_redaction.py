"""The access log of `digest serve` never records a confirm or unsubscribe token."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from digest.links import Tokens
from digest.web.accesslog import PUBLIC_PARAMS, REDACTED, redact_path
from tests.support_http import SECRET, served
from tests.support_serve import wait_for

pytestmark = pytest.mark.slow


def test_tokens_in_confirm_and_unsubscribe_paths_never_reach_the_access_log(tmp_path: Path, sqlite_url: str) -> None:
    tokens = Tokens(SECRET)
    confirm, unsub = tokens.confirm(1, "a@example.com"), tokens.unsubscribe(1, "a@example.com", None)
    with served(tmp_path, sqlite_url) as proc:
        httpx.get(f"{proc.url}/confirm/{confirm}")
        httpx.get(f"{proc.url}/u/{unsub}?manage=1")
        httpx.post(f"{proc.url}/u/{unsub}", data={"List-Unsubscribe": "One-Click"})
        httpx.get(f"{proc.url}/archive?token=secret-value")
        wait_for(lambda: proc.output().count("/u/[redacted]") >= 2, 10, what="the access log lines")
        log = proc.output()
    assert confirm not in log and unsub not in log and "secret-value" not in log
    assert '"GET /confirm/[redacted] HTTP/1.1"' in log
    assert '"GET /u/[redacted] HTTP/1.1"' in log and '"POST /u/[redacted] HTTP/1.1"' in log


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/confirm/abc.def", "/confirm/[redacted]"),
        ("/confirm/abc.def/yes?x=1", "/confirm/[redacted]/yes"),
        ("/u/tok?done=unsubscribed", "/u/[redacted]"),
        ("/c/01AAABAAAAAAACaY4MGV1R", "/c/[redacted]"),  # a tracked link names the reader's message
        ("/archive/2026-W47", "/archive/2026-W47"),
        ("/subscribe?next=/x", "/subscribe?next=/x"),
        ("/x?token=abc&a=1", "/x?token=[redacted]&a=1"),
    ],
)
def test_redaction_keeps_the_route_and_drops_the_token(path: str, logged: str) -> None:
    assert redact_path(path) == logged


def test_the_preference_token_never_reaches_the_access_log(tmp_path: Path, sqlite_url: str) -> None:
    """The preference link carries the reader's unsubscribe token: it unsubscribes whoever holds it."""
    token = Tokens(SECRET).unsubscribe(1, "a@example.com", None)
    with served(tmp_path, sqlite_url) as proc:
        httpx.get(f"{proc.url}/preferences/{token}")
        httpx.get(f"{proc.url}/preferences/{token}?done=saved")
        httpx.post(f"{proc.url}/preferences/{token}", data={"frequency": "weekly"})
        wait_for(lambda: proc.output().count(" /preferences/") >= 3, 10, what="the access log lines")
        log = proc.output()
    assert token not in log
    assert '"GET /preferences/[redacted] HTTP/1.1"' in log and '"POST /preferences/[redacted] HTTP/1.1"' in log


def test_every_route_with_a_token_parameter_is_redacted(tmp_path: Path, sqlite_url: str) -> None:
    """Enumerates the real app's routes: a new route taking a token cannot be forgotten by the access log."""
    from digest.web.app import create_app
    from digest.web.openapi import api_routes
    from tests.conftest import make_runtime, write_project

    rt = make_runtime(write_project(tmp_path / "project"), sqlite_url)
    try:
        app = create_app(rt)
    finally:
        rt.close()
    checked = []
    for route in api_routes(app.routes):  # the app's routes, also inside its included routers
        path = route.path
        params = re.findall(r"\{([^}:]+)(?::[^}]*)?\}", path)
        if not params:
            continue
        secret = "s3cr3t-Tok.en_value"
        concrete = re.sub(
            r"\{[^}]+\}",
            lambda m: secret if m.group(0).strip("{}").split(":")[0] not in PUBLIC_PARAMS else "2026-W47",
            path,
        )
        for suffix in ("", "?done=saved", "/extra?token=x"):
            logged = redact_path(concrete + suffix)
            if set(params) - PUBLIC_PARAMS:
                assert secret not in logged, f"{path}: {concrete + suffix} is logged as {logged}"
                assert REDACTED in logged
            else:
                assert logged.startswith(concrete), path
        checked.append(path)
    assert {"/confirm/{token}", "/u/{token}", "/preferences/{token}", "/c/{token}", "/o/{token}"} <= set(checked)
    assert "/archive/{week}" in checked


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/preferences/tok", "/preferences/[redacted]"),
        ("/preferences/tok?done=saved", "/preferences/[redacted]"),
        ("/o/01AAABAAAAAAACaY4MGV1R", "/o/[redacted]"),  # the open pixel names the reader's message too
        ("/?token=abc", "/?token=[redacted]"),  # the preview's access token, off loopback
    ],
)
def test_redaction_covers_the_preference_centre_and_the_pixel(path: str, logged: str) -> None:
    assert redact_path(path) == logged
