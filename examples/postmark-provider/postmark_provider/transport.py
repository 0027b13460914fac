"""Postmark's batch API: POST /email/batch, up to 500 messages per call, one result per message.

From Postmark's documentation (developer/user-guide/send-email-with-api/batch-emails, and
the API overview's error codes): the request is a JSON array of messages authenticated by the
`X-Postmark-Server-Token` header; the answer to an accepted call is 200 with a JSON array in the
same order, each element carrying `ErrorCode` (0: accepted), `Message` and, when accepted,
`MessageID` (what bounce webhooks name). A call refused as a whole is 401 (bad or missing token),
422 with one `{ErrorCode, Message}` (invalid request, sender not confirmed, account may not send),
429 (rate limit) or 500/503 (Postmark's trouble, maintenance).

Postmark has no idempotency keys: the provider declares itself not idempotent, with a key
lifetime of zero, so a call whose answer was lost is never repeated (its batch is left
`unconfirmed` for the operator) and one refused outright is retried (invariant 6).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import Field

from digest.delivery.transports.base import BaseTransport, OnResult, ProviderRefusal, SendResult, TransientError
from digest.errors import ConfigError
from digest.mail import OutgoingEmail
from digest.providers.registry import Capabilities, TransportSection

DEFAULT_API_URL = "https://api.postmarkapp.com"
SERVER_TOKEN = "POSTMARK_SERVER_TOKEN"
MAX_BATCH = 500  # Postmark: "up to 500 messages per API call"
# 422 ErrorCodes that no retry fixes for any message: the account or the sender cannot send now.
STOP_CODES = {
    10: "bad or missing server token",
    400: "sender signature not found",
    401: "sender signature not confirmed",
    405: "not allowed to send",
    412: "account is pending",
    413: "account may not send",
}
MAX_RATE_LIMIT_WAIT = 3600.0


class PostmarkSection(TransportSection):
    """`[transport.postmark]`; the server token comes from POSTMARK_SERVER_TOKEN."""

    # Newsletters belong in a Broadcast stream (Postmark keeps transactional reputation apart).
    message_stream: str = Field("broadcast", pattern=r"^[a-z0-9-]{1,100}$")
    requests_per_second: float = Field(5.0, gt=0, le=1000)  # shared by all workers
    timeout_seconds: float = Field(60, gt=0)
    concurrency: int = Field(2, ge=1, le=32)  # batch calls in flight per sending process


CAPABILITIES = Capabilities(
    idempotent=False,
    key_lifetime_hours=0,
    max_batch=MAX_BATCH,
    rate=lambda section: section.requests_per_second,
    reports=frozenset({"delivered", "bounced", "complained"}),  # the Delivery, Bounce and SpamComplaint webhooks
)


def api_url(env: Mapping[str, str]) -> str:
    """POSTMARK_API_URL (a local fake in tests), else Postmark's own."""
    return (env.get("POSTMARK_API_URL", "").strip() or DEFAULT_API_URL).rstrip("/")


def message(email: OutgoingEmail, stream: str) -> dict[str, Any]:
    """One message of the batch, in Postmark's field names."""
    body: dict[str, Any] = {
        "From": email.from_addr,
        "To": email.to,
        "Subject": email.subject,
        "HtmlBody": email.html,
        "TextBody": email.text,
        "MessageStream": stream,
        "Headers": [{"Name": k, "Value": v} for k, v in email.headers.items()],
        "Metadata": {k[:20]: v[:80] for k, v in list(email.tags.items())[:10]},
    }
    if email.reply_to:
        body["ReplyTo"] = email.reply_to
    return body


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def results(count: int, answer: Any) -> list[SendResult]:
    """The 200 answer: one element per message, in order (ErrorCode 0 is accepted)."""
    if not isinstance(answer, list) or len(answer) != count:
        raise TransientError(
            f"Postmark answered 200 with {type(answer).__name__} instead of {count} results", ambiguous=True
        )
    out = []
    for item in answer:
        item = item if isinstance(item, dict) else {}
        code = _number(item.get("ErrorCode"))
        if code == 0 and item.get("MessageID"):
            out.append(SendResult(ok=True, provider_id=str(item["MessageID"])[:100]))
        else:
            out.append(
                SendResult(ok=False, error=f"rejected by Postmark: {code} {item.get('Message') or ''}".strip()[:2000])
            )
    return out


def _refused(status: int, body: Any, count: int, headers: Mapping[str, str]) -> list[SendResult]:
    """A call refused as a whole: stop, retry later, or fail every message of it with the reason."""
    body = body if isinstance(body, dict) else {}
    code, text = _number(body.get("ErrorCode")), str(body.get("Message") or "").strip()
    what = f"Postmark {status} (ErrorCode {code}): {text}".strip()
    if status == 401 or code in STOP_CODES:
        raise ProviderRefusal(
            f"{what}. Check {SERVER_TOKEN} (a server token of the sending server) and that "
            f"sender.from_email is a confirmed sender signature at Postmark"
        )
    if status == 429:
        wait = _seconds(headers.get("retry-after"))
        if wait is not None and wait > MAX_RATE_LIMIT_WAIT:
            raise ProviderRefusal(f"{what}. Sending stopped; run the send again later")
        raise TransientError(what, retry_after=1.0 if wait is None else wait, rate_limited=True)
    if status >= 500:  # Postmark answered: it did not take the batch (504: a gateway did, it may have)
        raise TransientError(what, ambiguous=status == 504)
    return [SendResult(ok=False, error=what[:2000]) for _ in range(count)]


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class PostmarkTransport(BaseTransport):
    name = "postmark"

    def __init__(self, config: Any):
        self.token = config.secret("postmark", SERVER_TOKEN).strip()
        if not self.token:
            raise ConfigError(f"{SERVER_TOKEN} is not set; the postmark transport needs the server token")
        settings: PostmarkSection = config.transport_section("postmark")
        self.stream = settings.message_stream
        self.max_in_flight = settings.concurrency
        self.url = api_url(config.env) + "/email/batch"
        self._client = httpx.Client(
            timeout=settings.timeout_seconds, limits=httpx.Limits(max_connections=settings.concurrency)
        )
        self._lock = threading.Lock()

    def send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, folder: str, on_result: OnResult | None = None
    ) -> list[SendResult]:
        """One call for the whole batch; the key is not sent (Postmark has none), the sender keeps it."""
        if not emails:
            return []
        if len(emails) > MAX_BATCH:
            raise ValueError(f"Postmark takes at most {MAX_BATCH} messages per batch call")
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Postmark-Server-Token": self.token,
        }
        try:
            response = self._client.post(self.url, json=[message(e, self.stream) for e in emails], headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientError(f"Postmark unreachable: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:  # the request may have arrived and been accepted
            raise TransientError(
                f"Postmark: no answer ({type(exc).__name__}: {exc}); the batch may have been accepted", ambiguous=True
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200:
            return results(len(emails), body)
        return _refused(response.status_code, body, len(emails), response.headers)

    def close(self) -> None:
        self._client.close()
