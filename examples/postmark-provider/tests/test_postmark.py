"""Postmark's own tests: the transport against the strict fake, and the webhook's credentials and records.

The shared provider contract (the digest's tests/test_provider_contract.py) sends a whole issue
through it, kills the sender mid-send and applies a bounce; these pin down what Postmark's
documentation says each answer means.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from postmark_provider import PROVIDER
from postmark_provider.fake import TOKEN, FakePostmark, serve
from postmark_provider.testing import bounce_record
from postmark_provider.transport import PostmarkSection, PostmarkTransport
from postmark_provider.webhook import parse, verify

from digest.delivery.events import EventError, EventKind
from digest.delivery.transports.base import ProviderRefusal, TransientError
from digest.mail import OutgoingEmail


def _config(url: str, token: str = TOKEN) -> Any:
    env = {"POSTMARK_API_URL": url, "POSTMARK_SERVER_TOKEN": token}
    return SimpleNamespace(
        env=env,
        secret=lambda provider, name: env.get(name, ""),
        transport_section=lambda name: PostmarkSection(timeout_seconds=2),
    )


def _emails(n: int) -> list[OutgoingEmail]:
    return [
        OutgoingEmail(
            to=f"reader{i}@example.com",
            subject="Verdicts",
            html="<p>hi</p>",
            text="hi",
            from_addr="Verdicts <news@verdicts.example.org>",
            headers={"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            key=f"d{i}",
        )
        for i in range(n)
    ]


def test_the_declaration_says_what_the_sender_needs() -> None:
    caps = PROVIDER.capabilities
    assert (caps.idempotent, caps.key_lifetime_hours, caps.max_batch) == (False, 0, 500)
    assert PROVIDER.webhook is not None and PROVIDER.webhook_path == "/webhooks/postmark"


def test_a_batch_gets_one_result_per_message_in_order() -> None:
    with serve() as (url, state):
        state.inactive.add("reader1@example.com")
        results = PostmarkTransport(_config(url)).send_batch(_emails(3), "k", "2026-W47")
    assert [r.ok for r in results] == [True, False, True]
    assert "406" in (results[1].error or "")
    assert {m["MessageID"] for m in state.accepted} == {results[0].provider_id, results[2].provider_id}
    assert state.accepted[0]["Headers"] == [{"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"}]


def test_the_fake_is_strict_about_token_size_and_fields() -> None:
    with serve() as (url, state):
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        assert httpx.post(url + "/email/batch", json=[], headers=headers).status_code == 401
        headers["X-Postmark-Server-Token"] = TOKEN
        too_many = [{"From": "a@b.org", "To": "c@d.org", "Subject": "s", "TextBody": "t"}] * 501
        answer = httpx.post(url + "/email/batch", json=too_many, headers=headers)
        assert answer.status_code == 422 and answer.json()["ErrorCode"] == 410
        no_body = [{"From": "a@b.org", "To": "c@d.org", "Subject": "s"}]
        assert httpx.post(url + "/email/batch", json=no_body, headers=headers).json()["ErrorCode"] == 300
        assert state.accepted == []


@pytest.mark.parametrize(
    ("status", "raised", "ambiguous"),
    [
        (429, TransientError, False),
        (500, TransientError, False),
        (503, TransientError, False),
        (401, ProviderRefusal, False),
    ],
)
def test_refused_calls(status: int, raised: type[Exception], ambiguous: bool) -> None:
    with serve() as (url, state):
        state.fail(status)
        with pytest.raises(raised) as caught:
            PostmarkTransport(_config(url)).send_batch(_emails(2), "k", "w")
    if isinstance(caught.value, TransientError):
        assert caught.value.ambiguous is ambiguous and caught.value.rate_limited is (status == 429)
    assert state.accepted == []


def test_a_wrong_token_stops_the_send() -> None:
    with serve() as (url, _), pytest.raises(ProviderRefusal, match="POSTMARK_SERVER_TOKEN"):
        PostmarkTransport(_config(url, token="wrong")).send_batch(_emails(1), "k", "w")


def test_an_answer_lost_after_the_batch_was_taken_is_ambiguous() -> None:
    """Postmark keeps no idempotency key: the sender must not resend such a batch blindly."""
    with serve(FakePostmark()) as (url, state):
        state.drop()
        with pytest.raises(TransientError) as caught:
            PostmarkTransport(_config(url)).send_batch(_emails(2), "k", "w")
    assert caught.value.ambiguous and len(state.accepted) == 2


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_webhook_credentials_are_the_signature() -> None:
    verify("hooks", "secret-password", _basic("hooks", "secret-password"))
    for headers in ({}, _basic("hooks", "guess"), _basic("other", "secret-password"), {"authorization": "Basic !!"}):
        with pytest.raises(EventError) as caught:
            verify("hooks", "secret-password", headers)
        assert caught.value.status == 401
    with pytest.raises(EventError) as unset:
        verify("", "", _basic("hooks", "secret-password"))
    assert unset.value.status == 503


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (bounce_record("m1", "a@example.com"), EventKind.HARD_BOUNCE),
        (bounce_record("m1", "a@example.com", "SoftBounce", 4096), EventKind.SOFT_BOUNCE),
        (bounce_record("m1", "a@example.com", "AutoResponder", 64), EventKind.OTHER),
        (
            {**bounce_record("m1", "a@example.com", "SpamComplaint", 100001), "RecordType": "SpamComplaint"},
            EventKind.COMPLAINED,
        ),
        (
            {
                "RecordType": "Delivery",
                "MessageID": "m1",
                "Recipient": "a@example.com",
                "DeliveredAt": "2026-11-18T12:05:00Z",
            },
            EventKind.DELIVERED,
        ),
    ],
)
def test_records_become_delivery_events(record: dict[str, Any], kind: EventKind) -> None:
    (event,) = parse(json.dumps(record).encode())
    assert (event.kind, event.message_id, event.recipient, event.provider) == (kind, "m1", "a@example.com", "postmark")


def test_a_body_that_is_not_a_record_is_400() -> None:
    for body in (b"not json", b"[]", b'{"Type": "HardBounce"}'):
        with pytest.raises(EventError) as caught:
            parse(body)
        assert caught.value.status == 400
