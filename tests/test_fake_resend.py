"""The fake Resend behaves like the real API where our sender depends on it (no database needed)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fake_resend import FakeResend, FakeResendServer, Faults
from tests.fake_resend.state import email_validator

KEY = "re_test_key"


def email(i: int = 0, **extra: object) -> dict[str, object]:
    return {
        "from": "Verdicts <verdicts@example.com>",
        "to": [f"r{i}@example.com"],
        "subject": "Hello",
        "html": "<p>hi</p>",
        "text": "hi",
        "headers": {"List-Unsubscribe": "<https://x/u/t>"},
        "tags": [{"name": "week", "value": "2026-W47"}],
        **extra,
    }


@pytest.fixture
def fake() -> Iterator[tuple[FakeResend, httpx.Client]]:
    state = FakeResend(api_keys={KEY})
    with FakeResendServer(state) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        yield state, client


def post(
    client: httpx.Client, body: object, key: str | None = None, permissive: bool = False, auth: str | None = KEY
) -> httpx.Response:
    headers = {}
    if auth is not None:
        headers["Authorization"] = f"Bearer {auth}"
    if key:
        headers["Idempotency-Key"] = key
    if permissive:
        headers["x-batch-validation"] = "permissive"
    return client.post("/emails/batch", json=body, headers=headers)


def test_the_schema_comes_from_resends_openapi_description() -> None:
    validator = email_validator()
    assert not list(validator.iter_errors(email()))
    assert list(validator.iter_errors({"from": "a@example.com", "subject": "no to"}))
    assert list(validator.iter_errors(email(to=[])))  # minItems 1


def test_accepts_a_valid_batch_and_records_each_email(fake) -> None:
    state, client = fake
    r = post(client, [email(i) for i in range(3)])
    assert r.status_code == 200
    assert len(r.json()["data"]) == 3 and all("id" in d for d in r.json()["data"])
    assert state.copies_by_recipient() == {"r0@example.com": 1, "r1@example.com": 1, "r2@example.com": 1}
    assert state.records[0].tags == {"week": "2026-W47"}
    assert state.records[0].headers["List-Unsubscribe"] == "<https://x/u/t>"


def test_errors_have_resends_shape_and_status(fake) -> None:
    _, client = fake
    r = post(client, [email(i) for i in range(101)])
    assert r.status_code == 422
    assert set(r.json()) == {"statusCode", "message", "name"}
    assert r.json()["statusCode"] == 422 and r.json()["name"] == "validation_error"
    assert "100" in r.json()["message"]
    bad = email()
    del bad["subject"]
    r = post(client, [email(), bad])
    assert r.status_code == 422 and "emails[1]" in r.json()["message"] and "subject" in r.json()["message"]
    r = post(client, [email()], auth=None)
    assert (r.status_code, r.json()["name"]) == (401, "missing_api_key")
    r = post(client, [email()], auth="re_wrong")
    assert (r.status_code, r.json()["name"]) == (403, "invalid_api_key")


def test_permissive_mode_reports_each_bad_email_by_index(fake) -> None:
    state, client = fake
    r = post(
        client,
        [email(0), email(1, to=["not-an-address"]), email(2, tags=[{"name": "week", "value": "a b"}])],
        permissive=True,
    )
    assert r.status_code == 200
    body = r.json()
    assert len(body["data"]) == 1
    assert [e["index"] for e in body["errors"]] == [1, 2]
    assert state.copies_by_recipient() == {"r0@example.com": 1}


def test_same_key_same_payload_replays_without_sending_again(fake) -> None:
    state, client = fake
    first = post(client, [email(1), email(2)], key="k-1")
    again = post(client, [email(1), email(2)], key="k-1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert len(state.records) == 2
    other = post(client, [email(1), email(3)], key="k-1")
    assert other.status_code == 409 and other.json()["name"] == "invalid_idempotent_request"
    assert len(state.records) == 2


def test_rate_limit_answers_429_with_ratelimit_headers(fake) -> None:
    state, client = fake
    state.rate_limit = 2.0
    answers = [post(client, [email(i)]) for i in range(4)]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    limited = answers[2]
    assert limited.status_code == 429 and limited.json()["name"] == "rate_limit_exceeded"
    for header in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"):
        assert header in limited.headers
    assert limited.headers["ratelimit-limit"] == "2" and limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["retry-after"]) >= 1


def test_faults_on_demand_500_429_dropped_and_slow(fake) -> None:
    state, client = fake
    state.set_faults(Faults(error_rate=1.0))
    r = post(client, [email()])
    assert r.status_code == 500 and r.json()["name"] == "application_error"
    state.set_faults(Faults(rate_limit_rate=1.0, rate_limit_retry_after=3))
    r = post(client, [email()])
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    state.set_faults(Faults(drop_rate=1.0, seed=3))
    outcomes = []
    for i in range(6):
        try:
            outcomes.append(post(client, [email(i)], key=f"d{i}").status_code)
        except httpx.HTTPError:
            outcomes.append("dropped")
    assert "dropped" in outcomes
    state.set_faults(Faults(slow_rate=1.0, slow_seconds=1.5))
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            "/emails/batch",
            json=[email(9)],
            headers={"Authorization": f"Bearer {KEY}", "Idempotency-Key": "slow"},
            timeout=0.5,
        )
    state.set_faults(Faults())
    replay = post(client, [email(9)], key="slow")  # the slow request was accepted: its answer is replayed
    assert replay.status_code == 200
    assert state.copies_by_recipient()["r9@example.com"] == 1
    state.set_faults(Faults(force_status=401, force_name="missing_api_key", force_message="revoked"))
    r = post(client, [email()])
    assert r.status_code == 401 and r.json() == {"statusCode": 401, "message": "revoked", "name": "missing_api_key"}


def test_the_vendored_openapi_description_is_the_shared_one() -> None:
    """tests/fake_resend/resend-openapi is a copy of ../shared/specs (so a fresh clone has it); keep them equal."""
    from tests.conftest import ROOT, require_or_skip
    from tests.fake_resend.state import SPEC

    shared = ROOT.parent / "shared" / "specs" / "resend-openapi" / "resend.yaml"
    require_or_skip(None if shared.exists() else f"{shared} is missing", "../shared/specs beside the checkout")
    assert SPEC.read_bytes() == shared.read_bytes(), "re-copy ../shared/specs/resend-openapi into tests/fake_resend"


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("true", "1 failed")])
def test_the_openapi_check_skips_outside_ci_and_fails_in_ci_without_shared_specs(tmp_path, ci, outcome) -> None:
    """A checkout with no ../shared beside it (a fresh clone) skips the check; CI, which has it, must not."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", clone)
    env = {**os.environ, "CI": ci}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_fake_resend.py::test_the_vendored_openapi_description_is_the_shared_one",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome in run.stdout, run.stdout + run.stderr
    assert "shared/specs/resend-openapi/resend.yaml is missing" in run.stdout


def test_domains_are_listed_and_read_as_resends_spec_describes() -> None:
    state = FakeResend(api_keys={KEY}, sending_keys={"re_send_only"})
    first = state.add_domain("one.example.org")
    second = state.add_domain("two.example.org", status="pending")
    with pytest.raises(ValueError, match="status"):
        state.add_domain("bad.example.org", status="almost")  # not a status the spec allows
    with FakeResendServer(state) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        auth = {"Authorization": f"Bearer {KEY}"}
        listed = client.get("/domains", headers=auth).json()
        assert listed["object"] == "list" and not listed["has_more"]
        assert [d["name"] for d in listed["data"]] == ["two.example.org", "one.example.org"]  # newest first
        assert "records" not in listed["data"][0]  # ListDomainsItem has none; GET /domains/{id} has them
        page = client.get("/domains", params={"limit": 1}, headers=auth).json()
        assert [d["id"] for d in page["data"]] == [second["id"]] and page["has_more"]
        rest = client.get("/domains", params={"limit": 1, "after": second["id"]}, headers=auth).json()
        assert [d["id"] for d in rest["data"]] == [first["id"]] and not rest["has_more"]
        r = client.get("/domains", params={"limit": 101}, headers=auth)
        assert (r.status_code, r.json()["name"]) == (422, "validation_error") and "100" in r.json()["message"]
        one = client.get(f"/domains/{second['id']}", headers=auth).json()
        assert one["status"] == "pending" and {r["record"] for r in one["records"]} == {"SPF", "DKIM"}
        assert client.get("/domains/nope", headers=auth).status_code == 404
        r = client.get("/domains", headers={"Authorization": "Bearer re_send_only"})
        assert (r.status_code, r.json()["name"]) == (401, "restricted_api_key")
        assert client.get("/domains").json()["name"] == "missing_api_key"
        assert post(client, [email()], auth="re_send_only").status_code == 200  # a sending key still sends
