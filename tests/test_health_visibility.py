"""/healthz tells the public only ok / not ok; the details go to the machine itself or an operator token."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from digest.config import load_config
from digest.runtime import Runtime
from digest.storage.db import make_engine, make_session_factory
from digest.web.app import create_app
from tests.support_http import served

pytestmark = pytest.mark.slow

TOKEN = "operator-token-for-tests-0123456789"
PUBLIC = ("203.0.113.7", 40000)


def test_details_for_localhost_and_the_operator_token_only_ok_for_the_public(tmp_path: Path, db_url: str) -> None:
    with served(tmp_path, db_url, DIGEST_OPERATOR_TOKEN=TOKEN) as proc:
        local = httpx.get(proc.url + "/healthz")
        assert local.status_code in (200, 503)
        assert {"status", "problems", "database", "scheduler", "last_issue"} <= set(local.json())
        # Through a reverse proxy on this machine: the peer is 127.0.0.1, but it is a public request.
        for header in (
            {"X-Forwarded-For": "203.0.113.7"},
            {"X-Real-IP": "203.0.113.7"},
            {"Forwarded": "for=203.0.113.7"},
            {"X-Forwarded-For": "127.0.0.1"},
        ):
            for path in ("/healthz", "/healthz/live"):
                public = httpx.get(proc.url + path, headers=header)
                assert public.status_code == local.status_code if path == "/healthz" else 200
                assert public.json() == {"status": public.json()["status"]}, (header, public.text)
                assert public.json()["status"] in ("ok", "error")
        proxied = {"X-Forwarded-For": "203.0.113.7"}
        wrong = httpx.get(proc.url + "/healthz", headers={**proxied, "Authorization": "Bearer nope"})
        assert set(wrong.json()) == {"status"}
        operator = httpx.get(proc.url + "/healthz", headers={**proxied, "Authorization": f"Bearer {TOKEN}"})
        assert "scheduler" in operator.json() and "database" in operator.json()


def test_no_operator_token_configured_means_no_remote_details(rt: Runtime) -> None:
    client = TestClient(create_app(rt), client=PUBLIC)
    for auth in ("Bearer ", "Bearer", "Basic x", ""):
        body = client.get("/healthz", headers={"Authorization": auth}).json()
        assert set(body) == {"status"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_database_error_text_is_not_shown_to_the_public(project: Path, tmp_path: Path, kind: str) -> None:
    if kind == "postgresql":
        url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
    else:
        folder = tmp_path / "var" / "gone.db"
        folder.mkdir(parents=True)
        url = f"sqlite:///{folder}"
    config = load_config(
        project, env={"DIGEST_DATABASE_URL": url, "DIGEST_SECRET_KEY": "k" * 32, "DIGEST_OPERATOR_TOKEN": TOKEN}
    )
    engine = make_engine(url)
    rt = Runtime(config=config, engine=engine, sessions=make_session_factory(engine))
    client = TestClient(create_app(rt), raise_server_exceptions=False, client=PUBLIC)
    for path in ("/healthz", "/healthz/live"):
        resp = client.get(path)
        assert resp.status_code == 503 and resp.json() == {"status": "error"}
    detailed = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert detailed.status_code == 503 and detailed.json()["database"]["error"]
    engine.dispose()
