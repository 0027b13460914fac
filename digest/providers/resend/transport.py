"""Resend's batch API through the official SDK: up to 100 emails per call, idempotent retries.

The SDK keeps its settings in module globals (`resend.api_key`, `resend.api_url`,
`resend.default_http_client`), read at import from the process environment; we set
them from the Config instead, so `RESEND_API_URL` in the config's environment points
the transport at a local fake in tests. Our HTTP client keeps connections alive and
applies `resend.timeout_seconds`; it is shared by every transport of the process.

How the SDK reports failures (resend/request.py): any HTTP client exception becomes
ResendError(code=500, error_type="HttpClientError"); an error status becomes a
ResendError subclass carrying `code`, `error_type` (the body's `name`) and `headers`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import resend
from pydantic import Field
from resend.exceptions import ResendError
from resend.http_client import HTTPClient

from digest.config import Config
from digest.delivery import jsonfast
from digest.delivery.transports.base import BaseTransport, OnResult, ProviderRefusal, SendResult, TransientError
from digest.errors import ConfigError
from digest.mail import OutgoingEmail
from digest.providers.registry import Capabilities, TransportSection

DEFAULT_API_URL = "https://api.resend.com"
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_RATE_LIMIT_WAIT = 3600.0
# HTTP client failures that happen before a byte of the request leaves: nothing can have been accepted.
NEVER_SENT = ("ConnectError", "ConnectTimeout", "PoolTimeout")


class _HttpxClient(HTTPClient):
    """Pooled keep-alive connections (one TLS handshake per worker, not per batch), and JSON
    bodies that reuse the pre-escaped HTML of each email (digest.delivery.jsonfast)."""

    def __init__(self, timeout: float, pool: int):
        self._client = httpx.Client(
            timeout=timeout, limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        )
        self._ready = threading.local()

    def use_body(self, body: bytes) -> None:
        """This thread's next JSON request sends `body`, encoded beforehand from the same params."""
        self._ready.body = body

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        json: dict[str, object] | list[object] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        ready, self._ready.body = getattr(self._ready, "body", None), None
        try:
            if json is not None and files is None and data is None:
                body = ready if ready is not None else jsonfast.dumps(json).encode("ascii")
                resp = self._client.request(
                    method, url, content=body, headers={**headers, "Content-Type": "application/json"}
                )
            else:
                resp = self._client.request(method, url, headers=dict(headers), json=json, data=data, files=files)
        except httpx.HTTPError as exc:
            raise RuntimeError(f"{type(exc).__name__}: {exc or 'no detail'}") from exc
        return resp.content, resp.status_code, resp.headers


_shared: dict[float, _HttpxClient] = {}
_shared_lock = threading.Lock()
POOL = 32


def shared_client(timeout: float) -> _HttpxClient:
    """One client per timeout for the whole process, never closed by a transport.

    The SDK sends through a module global, so every transport in the process (the weekly
    send, the confirmation-mail drainer, a test send) shares it; closing it when one of
    them finishes would break the others mid-send.
    """
    with _shared_lock:
        client = _shared.get(timeout)
        if client is None:
            client = _shared[timeout] = _HttpxClient(timeout, POOL)
        return client


def api_url(config: Config) -> str:
    """RESEND_API_URL (the tests' fake), else Resend's own."""
    return (config.env.get("RESEND_API_URL", "").strip() or DEFAULT_API_URL).rstrip("/")


def use_sdk(config: Config, key: str, timeout: float) -> _HttpxClient:
    """Point the SDK's module globals at this config's API and key, through the shared client."""
    resend.api_key = key
    resend.api_url = api_url(config)
    client = resend.default_http_client = shared_client(timeout)
    return client


def tag_value(value: str) -> str:
    """Resend tag names and values allow ASCII letters, digits, `_` and `-` only."""
    return _TAG_UNSAFE.sub("_", value)[:256] or "_"


def email_params(email: OutgoingEmail) -> dict[str, Any]:
    params: dict[str, Any] = {
        "from": email.from_addr,
        "to": [email.to],
        "subject": email.subject,
        "html": email.html,
        "text": email.text,
        "headers": dict(email.headers),
        "tags": [{"name": tag_value(k), "value": tag_value(v)} for k, v in email.tags.items()],
    }
    if email.reply_to:
        params["reply_to"] = email.reply_to
    return params


def _seconds(headers: Mapping[str, str], *names: str) -> float | None:
    lower = {k.lower(): v for k, v in headers.items()}
    for name in names:
        try:
            return max(0.0, float(lower[name]))
        except (KeyError, ValueError):
            continue
    return None


def _code(exc: ResendError) -> int:
    try:
        return int(exc.code)
    except (TypeError, ValueError):
        return 500


def map_results(count: int, response: Mapping[str, Any]) -> list[SendResult]:
    """Permissive mode: `data` holds the ids of the accepted emails in order, `errors` the rest by index."""
    errors = {int(e.get("index", -1)): str(e.get("message") or "rejected") for e in response.get("errors") or []}
    ids = iter(str(d.get("id")) for d in response.get("data") or [] if isinstance(d, Mapping))
    return [
        SendResult(ok=False, error=f"rejected by Resend: {errors[i]}")
        if i in errors
        else SendResult(ok=True, provider_id=next(ids, None))
        for i in range(count)
    ]


class ResendSection(TransportSection):
    """`[transport.resend]`; the API key comes from RESEND_API_KEY."""

    requests_per_second: float = Field(2.0, gt=0, le=1000)  # the team's limit, shared by all workers
    timeout_seconds: float = Field(30, gt=0)
    concurrency: int = Field(4, ge=1, le=32)  # batch requests in flight per sending process


CAPABILITIES = Capabilities(
    idempotent=True,
    key_lifetime_hours=24,
    max_batch=100,
    json_body=True,
    rate=lambda section: section.requests_per_second,
    # Delivery events it measures: all of them, through Resend's webhooks.
    reports=frozenset({"delivered", "bounced", "complained", "opened", "clicked"}),
)


API_KEY = "RESEND_API_KEY"


class ResendTransport(BaseTransport):
    name = "resend"

    def __init__(self, config: Config):
        key = config.secret("resend", API_KEY).strip()
        if not key:
            raise ConfigError("RESEND_API_KEY is not set; the resend transport needs the API key in the environment")
        settings = config.transport_section("resend")
        self.max_in_flight = settings.concurrency
        self.requests_per_second = settings.requests_per_second
        self.api_url = api_url(config)
        self._client = use_sdk(config, key, settings.timeout_seconds)
        self._prepared = threading.local()
        # Told the headers of every answer (ratelimit-limit/remaining/reset); the sender's limiter listens.
        self.on_rate: Callable[[Mapping[str, str]], None] | None = None

    def prepare(self, emails: list[OutgoingEmail], idempotency_key: str) -> None:
        """Build the request body now, before a rate slot is reserved, so the request leaves right
        at its slot; this thread's next send_batch of the same batch uses it."""
        params = [email_params(e) for e in emails]
        self._prepared.batch = (idempotency_key, len(emails), params, jsonfast.dumps(params).encode("ascii"))

    def send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, folder: str, on_result: OnResult | None = None
    ) -> list[SendResult]:
        if not emails:
            return []
        if len(emails) > 100:
            raise ValueError("Resend takes at most 100 emails per batch call")
        ready, self._prepared.batch = getattr(self._prepared, "batch", None), None
        if ready is not None and ready[:2] == (idempotency_key, len(emails)):
            params = ready[2]
            self._client.use_body(ready[3])
        else:
            params = [email_params(e) for e in emails]
        try:
            response = resend.Batch.send(
                params, options={"idempotency_key": idempotency_key, "batch_validation": "permissive"}
            )
        except ResendError as exc:
            self._tell_rate(exc.headers)
            return self._failed(exc, len(emails), idempotency_key)
        self._tell_rate(response.get("http_headers") if isinstance(response, Mapping) else None)
        return map_results(len(emails), response)

    def _tell_rate(self, headers: Mapping[str, str] | None) -> None:
        if headers and self.on_rate is not None:
            self.on_rate(headers)

    def _failed(self, exc: ResendError, count: int, key: str) -> list[SendResult]:
        code, kind, message = _code(exc), str(exc.error_type or ""), str(exc.message or exc).strip().rstrip(".")
        what = f"Resend {code} {kind}: {message}".strip()
        if kind == "HttpClientError":
            raise TransientError(what, ambiguous=not message.startswith(NEVER_SENT))
        if code >= 500:  # the provider answered with an error: it did not take the batch (504: a gateway did)
            raise TransientError(what, ambiguous=code == 504)
        if code == 429:
            wait = _seconds(exc.headers, "retry-after", "ratelimit-reset")
            if kind in ("daily_quota_exceeded", "monthly_quota_exceeded") or (wait or 0) > MAX_RATE_LIMIT_WAIT:
                raise ProviderRefusal(f"{what}. Sending stopped; run the send again once the quota allows it")
            raise TransientError(what, retry_after=1.0 if wait is None else wait, rate_limited=True)
        if code in (401, 403):
            raise ProviderRefusal(
                f"{what}. Check RESEND_API_KEY (a sending key of this account) and that "
                f"sender.from_email's domain is verified at Resend"
            )
        if code == 409 and kind == "concurrent_idempotent_requests":
            raise TransientError(what, retry_after=1.0)
        if code == 409:
            what = (
                f"{what} (key {key}: the provider holds an earlier, different request under this key, "
                f"so this batch may already have gone out; not resent)"
            )
            return [SendResult(ok=False, error=what[:2000], unconfirmed=True) for _ in range(count)]
        return [SendResult(ok=False, error=what[:2000]) for _ in range(count)]

    def close(self) -> None:
        """Nothing to release: the HTTP client is shared by the process (see shared_client)."""
