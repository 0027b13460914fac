"""The access log of `digest serve` never records a confirm or unsubscribe token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from digest.links import Tokens
from digest.web.accesslog import redact_path
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
        wait_for(lambda: proc.output().count('/u/[redacted]') >= 2, 10, what="the access log lines")
        log = proc.output()
    assert confirm not in log and unsub not in log and "secret-value" not in log
    assert '"GET /confirm/[redacted] HTTP/1.1"' in log
    assert '"GET /u/[redacted] HTTP/1.1"' in log and '"POST /u/[redacted] HTTP/1.1"' in log


@pytest.mark.parametrize(("path", "logged"), [
    ("/confirm/abc.def", "/confirm/[redacted]"),
    ("/confirm/abc.def/yes?x=1", "/confirm/[redacted]/yes"),
    ("/u/tok?done=unsubscribed", "/u/[redacted]"),
    ("/c/01AAABAAAAAAACaY4MGV1R", "/c/[redacted]"),  # a tracked link names the reader's message
    ("/archive/2026-W47", "/archive/2026-W47"),
    ("/subscribe?next=/x", "/subscribe?next=/x"),
    ("/x?token=abc&a=1", "/x?token=[redacted]&a=1"),
])
def test_redaction_keeps_the_route_and_drops_the_token(path: str, logged: str) -> None:
    assert redact_path(path) == logged
