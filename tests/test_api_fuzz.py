"""schemathesis against the public API of a real `digest serve`: zero 5xx, zero answers off the schema.

The schema is the server's own `/openapi.json` (digest/web/openapi.py). Each operation gets a
bounded number of generated requests (valid and invalid bodies, parameters and media types),
sent over HTTP to uvicorn. What the fuzzer cannot reach, and why, is in tests/README.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from digest.providers import registry
from digest.web.openapi import PUBLIC
from tests.conftest import apply_overrides
from tests.support_http import served

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
MAX_EXAMPLES = 25  # per operation and mode: about a minute for the whole API on each database
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SNS_TOPIC = "arn:aws:sns:eu-west-1:123456789012:digest-ses"  # configured, so /webhooks/ses checks what it gets
# Every registered provider's secrets (an installed one's too), so each webhook checks what it gets, not 503.
SECRETS = {name: f"fuzz-{name.lower()}-0123456789abcdef" for p in registry.providers() for name in p.secrets}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import fresh_pg_url

    tmp = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        import shutil

        target = tmp / "digest.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        url = f"sqlite:///{target}"
    else:
        url = fresh_pg_url(request.getfixturevalue("pg_template"))
    with served(
        tmp,
        url,
        **{**SECRETS, "RESEND_WEBHOOK_SECRET": WEBHOOK_SECRET},
        config=lambda text: apply_overrides(
            text,
            {
                "subscribe": {"per_ip_per_minute": 100000, "per_ip_per_hour": 100000, "per_address_per_hour": 100000},
                "webhooks": {"sns_topic_arns": [SNS_TOPIC]},
            },
        ),
    ) as proc:
        yield proc.url


@pytest.fixture(scope="module")
def api(server: str):  # type: ignore[no-untyped-def]
    return schemathesis.openapi.from_dict(httpx.get(server + "/openapi.json").json())


def test_every_public_operation_is_described_and_so_fuzzed(rt) -> None:  # type: ignore[no-untyped-def]
    from digest.web.app import create_app
    from digest.web.openapi import undescribed

    missing = undescribed(create_app(rt))
    assert not missing, f"add these to digest/web/openapi.PUBLIC (every status code they answer): {missing}"


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """Every operation with valid input; with invalid input too where it takes any (a body, path or query)."""
    cases = []
    for (path, method), op in sorted(PUBLIC.items()):
        cases.append((path, method, GenerationMode.POSITIVE))
        takes = "{" in path or "requestBody" in op or any(p["in"] == "query" for p in op.get("parameters", []))
        if takes:  # (an optional string header has no invalid value)
            cases.append((path, method, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(("path", "method", "mode"), _cases())
def test_no_server_errors_and_every_answer_matches_the_schema(
    api,
    server: str,
    path: str,
    method: str,  # type: ignore[no-untyped-def]
    mode: GenerationMode,
) -> None:
    operation = api[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(base_url=server, checks=CHECKS, allow_redirects=False, timeout=30)

    run()
