"""What Resend says about a sending domain (its verification status and the state of each DNS
record) and about the account's webhooks (where Resend posts bounces and complaints).

Read through the official SDK (GET /domains, then GET /domains/{id}; GET /webhooks), at
RESEND_API_URL like the transport. A sending-only API key may not read either: that is a
`DomainLookupError` with `restricted` set, so the doctor can say so instead of calling the key wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import resend
from resend.exceptions import ResendError

from digest.config import Config
from digest.providers.resend.transport import api_url, use_sdk

MAX_PAGES = 20  # 100 a page: far more domains or webhooks than one account holds


@dataclass(frozen=True)
class DomainRecord:
    record: str  # SPF, DKIM, Receiving, Tracking ...
    name: str
    type: str
    status: str
    value: str


@dataclass(frozen=True)
class ResendDomain:
    id: str
    name: str
    status: str  # pending, verified, failed, not_started, partially_verified, partially_failed
    records: tuple[DomainRecord, ...]


class DomainLookupError(Exception):
    def __init__(self, message: str, restricted: bool = False):
        super().__init__(message)
        self.restricted = restricted


def _error(exc: ResendError, url: str) -> DomainLookupError:
    kind = str(exc.error_type or "")
    message = str(exc.message or exc).strip().rstrip(".")
    if kind == "HttpClientError":
        return DomainLookupError(f"Resend's API at {url} did not answer: {message}")
    return DomainLookupError(f"Resend answered {exc.code} {kind}: {message}", restricted=kind == "restricted_api_key")


def _pages(list_page: Callable[[dict[str, Any]], Any]) -> Iterator[list[Mapping[str, Any]]]:
    """Each page's items of a Resend list endpoint (`limit`/`after` pagination), up to MAX_PAGES."""
    after: str | None = None
    for _ in range(MAX_PAGES):
        page = cast(Mapping[str, Any], list_page({"limit": 100, **({"after": after} if after else {})}))
        items = [d for d in page.get("data") or [] if isinstance(d, Mapping)]
        yield items
        if not page.get("has_more") or not items:
            return
        after = str(items[-1].get("id"))


def find_domain(config: Config, key: str, name: str, timeout: float = 10.0) -> ResendDomain | None:
    """The account's domain called `name` with its records, or None when the account has no such domain."""
    use_sdk(config, key, timeout)
    wanted = name.lower().rstrip(".")
    try:
        for items in _pages(lambda params: resend.Domains.list(cast(resend.Domains.ListParams, params))):
            match = next((d for d in items if str(d.get("name", "")).lower() == wanted), None)
            if match is not None:
                return _domain(cast(Mapping[str, Any], resend.Domains.get(str(match["id"]))))
    except ResendError as exc:
        raise _error(exc, api_url(config)) from None
    return None


@dataclass(frozen=True)
class ResendWebhook:
    id: str
    endpoint: str
    status: str  # enabled, disabled
    events: tuple[str, ...] | None  # None: the API did not list them


def signing_secret(config: Config, key: str, webhook_id: str, timeout: float = 10.0) -> str | None:
    """The webhook's own signing secret (GET /webhooks/{id}; each webhook has its own), or None when not given."""
    use_sdk(config, key, timeout)
    try:
        body = cast(Mapping[str, Any], resend.Webhooks.get(webhook_id))
    except ResendError as exc:
        raise _error(exc, api_url(config)) from None
    secret = body.get("signing_secret")
    return str(secret) if secret else None


def list_webhooks(config: Config, key: str, timeout: float = 10.0) -> list[ResendWebhook]:
    """Every webhook of the account: where Resend posts events, which ones, and whether it is on."""
    use_sdk(config, key, timeout)
    out: list[ResendWebhook] = []
    try:
        for items in _pages(lambda params: resend.Webhooks.list(cast(resend.Webhooks.ListParams, params))):
            out.extend(
                ResendWebhook(
                    str(w.get("id", "")),
                    str(w.get("endpoint", "")),
                    str(w.get("status", "")),
                    None if w.get("events") is None else tuple(str(e) for e in w["events"]),
                )
                for w in items
            )
    except ResendError as exc:
        raise _error(exc, api_url(config)) from None
    return out


def _domain(body: Mapping[str, Any]) -> ResendDomain:
    records = tuple(
        DomainRecord(
            str(r.get("record", "")),
            str(r.get("name", "")),
            str(r.get("type", "")),
            str(r.get("status", "")),
            str(r.get("value", "")),
        )
        for r in body.get("records") or []
        if isinstance(r, Mapping)
    )
    return ResendDomain(str(body.get("id", "")), str(body.get("name", "")), str(body.get("status", "")), records)
