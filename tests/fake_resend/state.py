"""What the fake Resend knows: keys, rate budget, idempotency store, faults, and what it accepted.

Kept apart from HTTP so tests can read it directly when the server runs in a thread.
Every accepted email is recorded once (a replayed idempotent request records
nothing), which is what the exactly-once checks count.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import random
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

SPEC = Path(os.environ.get("RESEND_OPENAPI_SPEC") or Path(__file__).parent / "resend-openapi" / "resend.yaml")
MAX_BATCH = 100
_TAG_OK = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_NAMED = re.compile(r"^[^<>]*<([^<>]+)>$")


@lru_cache(maxsize=1)
def _spec() -> dict[str, Any]:
    return yaml.load(SPEC.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@cache
def schema_validator(ref: str) -> Draft202012Validator:
    """A schema (`schemas/Domain`) or parameter (`parameters/PaginationLimit`) of Resend's OpenAPI
    description (3.1, so JSON Schema 2020-12)."""
    doc = _spec()
    schema: dict[str, Any] = {"$ref": f"#/components/{ref}", "components": doc["components"]}
    if ref.startswith("parameters/"):
        schema = {**doc["components"]["parameters"][ref.split("/", 1)[1]]["schema"], "components": doc["components"]}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def email_validator() -> Draft202012Validator:
    """SendEmailRequest from Resend's own OpenAPI description."""
    return schema_validator("schemas/SendEmailRequest")


def spec_problem(ref: str, value: Any) -> str | None:
    errors = sorted(schema_validator(ref).iter_errors(value), key=lambda e: list(e.path))
    if not errors:
        return None
    where = "/".join(str(p) for p in errors[0].path) or "body"
    return f"{where}: {errors[0].message}"


_ADDRESS_FORMAT = "The email address needs to follow the `email@example.com` or `Name <email@example.com>` format."


def _address_ok(value: str) -> bool:
    m = _NAMED.match(value.strip())
    return bool(_ADDRESS.match(m.group(1).strip() if m else value.strip()))


def email_problems(email: Any, reject_to: set[str]) -> str | None:
    """Why Resend would refuse this email, or None. Schema first, then Resend's own field rules."""
    errors = sorted(email_validator().iter_errors(email), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "body"
        return f"Invalid `{where}` field: {err.message}"
    if not _address_ok(email["from"]):
        return f"Invalid `from` field. {_ADDRESS_FORMAT}"
    recipients = [email["to"]] if isinstance(email["to"], str) else list(email["to"])
    for to in recipients:
        if not _address_ok(to):
            return f"Invalid `to` field. {_ADDRESS_FORMAT}"
        if to.strip().lower() in reject_to:
            return f"Invalid `to` field. {to} cannot receive email."
    if "html" not in email and "text" not in email and "template" not in email:
        return "Missing `html` or `text` field."
    for tag in email.get("tags") or []:
        if not _TAG_OK.match(str(tag.get("name", ""))) or not _TAG_OK.match(str(tag.get("value", ""))):
            return "Tags should only contain ASCII letters, numbers, underscores, or dashes."
    for name, value in (email.get("headers") or {}).items():
        if not isinstance(value, str):
            return f"Invalid `headers` field: {name} must be a string."
    return None


@dataclass
class Faults:
    """Failures on demand. Rates are shares of calls (drawn from `seed`); `force_status` answers every call."""

    error_rate: float = 0.0  # 500 application_error
    rate_limit_rate: float = 0.0  # 429 rate_limit_exceeded with retry-after
    rate_limit_retry_after: float = 1.0
    drop_rate: float = 0.0  # the connection is cut mid-answer; half of them after the emails were accepted
    slow_rate: float = 0.0  # answer after `slow_seconds`
    slow_seconds: float = 0.0
    # Accept the emails, then hold the answer for `stall_seconds` (past the client's timeout).
    stall_rate: float = 0.0
    stall_seconds: float = 0.0
    # Accept the emails, then cut the connection before any answer.
    accept_then_drop_rate: float = 0.0
    force_status: int | None = None
    force_name: str = "application_error"
    force_message: str = "forced by the test"
    seed: int = 0


@dataclass
class Accepted:
    id: str
    to: str
    subject: str
    key: str | None
    at: float
    tags: dict[str, str]
    headers: dict[str, str]


@dataclass
class Logged:
    at: float  # arrival (seconds since the epoch)
    status: int
    # accepted | replayed | rate_limited | injected_500 | injected_429 | dropped | invalid | auth | conflict ...
    outcome: str
    emails: int
    key: str | None


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # cut the connection instead of answering
    delay: float = 0.0


def error(status: int, name: str, message: str) -> Answer:
    return Answer(status, {"statusCode": status, "message": message, "name": name})


class FakeResend:
    def __init__(
        self,
        *,
        api_keys: set[str] | None = None,
        rate_limit: float | None = None,
        faults: Faults | None = None,
        reject_to: set[str] | None = None,
        sending_keys: set[str] | None = None,
    ):
        self.api_keys = set(api_keys or {"re_test_key"})
        # Keys with "sending access" only: they send, and get 401 restricted_api_key elsewhere.
        self.sending_keys = set(sending_keys or ())
        self.domains: dict[str, dict[str, Any]] = {}  # id -> Domain, as GET /domains/{id} answers it
        self.webhooks: dict[str, dict[str, Any]] = {}  # id -> webhook, as GET /webhooks/{id} answers it
        self.rate_limit = rate_limit
        self.faults = faults or Faults()
        self.reject_to = {a.lower() for a in (reject_to or set())}
        self.records: list[Accepted] = []
        self.log: list[Logged] = []
        self._keys: dict[str, tuple[str, Answer | None]] = {}  # key -> (payload hash, stored answer or in flight)
        self._window: list[float] = []  # arrival times admitted in the last second, sorted
        self._rng = random.Random(self.faults.seed)
        self.lock = threading.Lock()
        # Called (in a server thread) each time a request's emails have been accepted, before the
        # answer leaves: crash tests kill the sender here, the most dangerous moment.
        self.on_accepted: Callable[[], None] | None = None

    # -- configuration from tests ---------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def reset(self) -> None:
        with self.lock:
            self.records.clear()
            self.log.clear()
            self._keys.clear()

    # -- the rules ------------------------------------------------------------------------

    # The limiter counts arrivals the way a provider does: at most `rate_limit` admitted requests
    # in any one-second window, with no burst credit saved up while idle. Refused requests are not
    # counted (they did no work). Reset and retry-after are whole seconds, as HTTP headers are.

    def _in_window(self, now: float) -> list[float]:
        cut = bisect.bisect_right(self._window, now - 1.0)
        del self._window[:cut]
        return self._window

    def _rate_headers(self, now: float) -> dict[str, str]:
        if not self.rate_limit:
            return {}
        window = self._in_window(now)
        limit = max(1, int(self.rate_limit))
        remaining = max(0, limit - sum(1 for a in window if a <= now))
        free_at = window[0] + 1.0 if window else now  # when the oldest arrival leaves the window
        reset = max(1, math.ceil(free_at - now))
        return {"ratelimit-limit": str(limit), "ratelimit-remaining": str(remaining), "ratelimit-reset": str(reset)}

    def _take_slot(self, arrived: float) -> bool:
        if not self.rate_limit:
            return True
        window = self._in_window(arrived)
        if sum(1 for a in window if a <= arrived) >= max(1, int(self.rate_limit)):
            return False
        bisect.insort(window, arrived)
        return True

    def check_auth(self, authorization: str | None) -> Answer | None:
        token = (authorization or "").removeprefix("Bearer").strip()
        if not token or token == "None":
            return error(401, "missing_api_key", "Missing API key in the authorization header.")
        if token not in self.api_keys and token not in self.sending_keys:
            return error(403, "invalid_api_key", "API key is invalid.")
        return None

    # -- domains (GET /domains, GET /domains/{id}) ----------------------------------------

    def add_domain(
        self,
        name: str,
        status: str = "verified",
        records: list[dict[str, Any]] | None = None,
        region: str = "us-east-1",
    ) -> dict[str, Any]:
        """A domain of the account, with Resend's usual records unless given; checked against the spec."""
        if records is None:
            state = "verified" if status == "verified" else "pending"
            records = [
                {
                    "record": "SPF",
                    "name": "send",
                    "type": "MX",
                    "ttl": "Auto",
                    "status": state,
                    "value": f"feedback-smtp.{region}.amazonses.com",
                    "priority": 10,
                },
                {
                    "record": "SPF",
                    "name": "send",
                    "type": "TXT",
                    "ttl": "Auto",
                    "status": state,
                    "value": "v=spf1 include:amazonses.com ~all",
                },
                {
                    "record": "DKIM",
                    "name": "resend._domainkey",
                    "type": "TXT",
                    "ttl": "Auto",
                    "status": state,
                    "value": "p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDtest",
                },
            ]
        domain = {
            "object": "domain",
            "id": str(uuid.uuid4()),
            "name": name,
            "status": status,
            "created_at": "2026-11-01 09:00:00.000000+00",
            "region": region,
            "open_tracking": False,
            "click_tracking": False,
            "capabilities": {"sending": "enabled", "receiving": "disabled"},
            "records": records,
        }
        return self._store(self.domains, domain, "schemas/Domain")

    def _store(self, table: dict[str, dict[str, Any]], item: dict[str, Any], schema: str) -> dict[str, Any]:
        """Keep an item a test set up, after checking it is what Resend's spec says such an answer is."""
        problem = spec_problem(schema, item)
        if problem:
            raise ValueError(f"not a {schema} as Resend's spec describes it: {problem}")
        with self.lock:
            table[item["id"]] = item
        return item

    def _domain_auth(self, authorization: str | None) -> Answer | None:
        answer = self.check_auth(authorization)
        if answer is None and (authorization or "").removeprefix("Bearer").strip() in self.sending_keys:
            return error(401, "restricted_api_key", "This API key is restricted to only send emails.")
        return answer

    def list_domains(self, authorization: str | None, query: dict[str, str]) -> Answer:
        """GET /domains: newest first, `limit`/`after` as the spec's pagination parameters say."""
        keys = ("id", "name", "status", "created_at", "region", "open_tracking", "click_tracking", "capabilities")
        return self._list(authorization, query, self.domains, keys, "schemas/ListDomainsResponse", "domain")

    def _list(
        self,
        authorization: str | None,
        query: dict[str, str],
        table: dict[str, dict[str, Any]],
        keys: tuple[str, ...],
        schema: str,
        what: str,
    ) -> Answer:
        early = self._domain_auth(authorization)
        if early is not None:
            return early
        raw = query.get("limit", "100")
        limit: Any = int(raw) if raw.lstrip("-").isdigit() else raw  # a non-number fails the spec's integer type
        problem = spec_problem("parameters/PaginationLimit", limit)
        if problem:
            return error(422, "validation_error", f"Invalid `limit` parameter: {problem.split(': ', 1)[-1]}")
        with self.lock:
            items = list(reversed(table.values()))
        if query.get("after"):
            ids = [d["id"] for d in items]
            if query["after"] not in ids:
                return error(422, "validation_error", f"Invalid `after` parameter: no such {what}.")
            items = items[ids.index(query["after"]) + 1 :]
        body = {
            "object": "list",
            "has_more": len(items) > int(limit),
            "data": [{k: d[k] for k in keys} for d in items[: int(limit)]],
        }
        problem = spec_problem(schema, body)
        assert problem is None, problem  # the fake answers as the spec says, or the test is wrong
        return Answer(200, body)

    # -- webhooks (GET /webhooks) ---------------------------------------------------------

    def add_webhook(
        self, endpoint: str, events: list[str] | None, status: str = "enabled", signing_secret: str | None = None
    ) -> dict[str, Any]:
        """A webhook of the account (what the dashboard's Webhooks → Add endpoint makes), with its own
        signing secret as Resend gives each; checked against the spec."""
        hook = {
            "object": "webhook",
            "id": str(uuid.uuid4()),
            "endpoint": endpoint,
            "events": events,
            "status": status,
            "created_at": "2026-11-01 09:00:00.000+00",
            "signing_secret": signing_secret or "whsec_" + uuid.uuid4().hex,
        }
        return self._store(self.webhooks, hook, "schemas/GetWebhookResponse")

    def get_webhook(self, authorization: str | None, webhook_id: str) -> Answer:
        """GET /webhooks/{id}: the webhook with its signing secret (the list leaves the secret out)."""
        return self._get(authorization, self.webhooks, webhook_id, "Webhook")

    def list_webhooks(self, authorization: str | None, query: dict[str, str]) -> Answer:
        """GET /webhooks: newest first, paginated like GET /domains; a sending-only key is refused."""
        return self._list(
            authorization,
            query,
            self.webhooks,
            ("id", "endpoint", "events", "status", "created_at"),
            "schemas/ListWebhooksResponse",
            "webhook",
        )

    def get_domain(self, authorization: str | None, domain_id: str) -> Answer:
        return self._get(authorization, self.domains, domain_id, "Domain")

    def _get(self, authorization: str | None, table: dict[str, dict[str, Any]], item_id: str, what: str) -> Answer:
        early = self._domain_auth(authorization)
        if early is not None:
            return early
        with self.lock:
            item = table.get(item_id)
        if item is None:
            return error(404, "not_found", f"{what} not found.")
        return Answer(200, item)

    def _draw(self) -> str | None:
        f = self.faults
        roll = self._rng.random()
        for name, share in (("500", f.error_rate), ("429", f.rate_limit_rate), ("drop", f.drop_rate)):
            if roll < share:
                return name
            roll -= share
        return None

    def admit(self, arrived: float, authorization: str | None, key: str | None) -> Answer | None:
        """Everything decided before the body is read: auth, rate budget, injected faults."""
        with self.lock:
            headers = {}
            answer = self.check_auth(authorization)
            outcome = "auth"
            if answer is None:
                f = self.faults
                if f.force_status is not None:
                    answer, outcome = error(f.force_status, f.force_name, f.force_message), "forced"
                elif not self._take_slot(arrived):
                    answer, outcome = (
                        error(
                            429,
                            "rate_limit_exceeded",
                            f"Too many requests. You can only make {self.rate_limit:g} requests per second.",
                        ),
                        "rate_limited",
                    )
                    headers["retry-after"] = self._rate_headers(arrived)["ratelimit-reset"]
                else:
                    drawn = self._draw()
                    if drawn == "500":
                        answer, outcome = (
                            error(500, "application_error", "Internal server error (injected)."),
                            "injected_500",
                        )
                    elif drawn == "429":
                        answer, outcome = (
                            error(429, "rate_limit_exceeded", "Too many requests (injected)."),
                            "injected_429",
                        )
                        headers["retry-after"] = f"{f.rate_limit_retry_after:g}"
                    elif drawn == "drop" and self._rng.random() < 0.5:
                        answer, outcome = Answer(200, {}, drop=True), "dropped_before"
            if answer is None:
                return None
            answer.headers.update(self._rate_headers(arrived))
            answer.headers.update(headers)
            self.log.append(Logged(arrived, answer.status, outcome, 0, key))
            return answer

    def handle_batch(self, arrived: float, raw: bytes, key: str | None, permissive: bool) -> Answer:
        """The body: shape, size, idempotency, per-email validation, then acceptance."""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return self._logged(arrived, key, 0, "invalid", error(400, "validation_error", "Invalid JSON body."))
        if not isinstance(body, list) or not body:
            return self._logged(
                arrived,
                key,
                0,
                "invalid",
                error(422, "validation_error", "The request body must be a non-empty array of emails."),
            )
        if len(body) > MAX_BATCH:
            return self._logged(
                arrived,
                key,
                len(body),
                "invalid",
                error(422, "validation_error", f"Too many emails in one batch: {len(body)} (at most {MAX_BATCH})."),
            )
        if key is not None and not 1 <= len(key) <= 256:
            return self._logged(
                arrived,
                key,
                len(body),
                "invalid",
                error(400, "invalid_idempotency_key", "The idempotency key must be between 1 and 256 characters."),
            )
        # The payload as sent, byte for byte: a retry must repeat its request exactly.
        digest = hashlib.sha256(raw + (b"|permissive" if permissive else b"|strict")).hexdigest()
        with self.lock:
            if key is not None and key in self._keys:
                stored_hash, stored = self._keys[key]
                if stored is None:
                    return self._logged_locked(
                        arrived,
                        key,
                        len(body),
                        "conflict",
                        error(
                            409,
                            "concurrent_idempotent_requests",
                            "Same idempotency key used while the original request is still in progress.",
                        ),
                    )
                if stored_hash != digest:
                    return self._logged_locked(
                        arrived,
                        key,
                        len(body),
                        "conflict",
                        error(
                            409,
                            "invalid_idempotent_request",
                            "Same idempotency key used with a different request "
                            "payload. Change your idempotency key or payload.",
                        ),
                    )
                return self._logged_locked(
                    arrived, key, len(body), "replayed", Answer(stored.status, stored.body, dict(stored.headers))
                )
            if key is not None:
                self._keys[key] = (digest, None)
        problems = [
            email_problems(e, self.reject_to) if isinstance(e, dict) else "Each email must be an object." for e in body
        ]
        with self.lock:
            if not permissive and any(problems):
                i = next(i for i, p in enumerate(problems) if p)
                if key is not None:
                    self._keys.pop(key, None)  # nothing was sent: the key is not kept
                return self._logged_locked(
                    arrived, key, len(body), "invalid", error(422, "validation_error", f"emails[{i}]: {problems[i]}")
                )
            data, errors = [], []
            for i, (email, problem) in enumerate(zip(body, problems)):
                if problem:
                    errors.append({"index": i, "message": problem})
                    continue
                eid = str(uuid.uuid4())
                to = email["to"] if isinstance(email["to"], str) else ",".join(email["to"])
                tags = {str(t.get("name")): str(t.get("value")) for t in email.get("tags") or []}
                headers = {str(k): str(v) for k, v in (email.get("headers") or {}).items()}
                self.records.append(Accepted(eid, to, email["subject"], key, arrived, tags, headers))
                data.append({"id": eid})
            answer = Answer(200, {"data": data, **({"errors": errors} if permissive else {})})
            if key is not None:
                self._keys[key] = (digest, answer)
            self._logged_locked(arrived, key, len(body), "accepted", answer)
            hook = self.on_accepted
        if hook is not None:
            hook()
        return answer

    def after_accept(self) -> Answer | None:
        """Faults that strike once the emails are in: a cut connection or a slow answer."""
        with self.lock:
            f = self.faults
            roll = self._rng.random()
            if roll < f.accept_then_drop_rate:
                if self.log:
                    self.log[-1].outcome += "+dropped_after"
                return Answer(200, {}, drop=True)
            if roll < f.accept_then_drop_rate + f.stall_rate:
                if self.log:
                    self.log[-1].outcome += "+stalled"
                return Answer(200, {}, delay=f.stall_seconds)
            if f.drop_rate and self._rng.random() < f.drop_rate / 2:
                if self.log:
                    self.log[-1].outcome += "+dropped_after"
                return Answer(200, {}, drop=True)
            if f.slow_rate and self._rng.random() < f.slow_rate:
                return Answer(200, {}, delay=f.slow_seconds)
        return None

    def _logged(self, arrived: float, key: str | None, n: int, outcome: str, answer: Answer) -> Answer:
        with self.lock:
            return self._logged_locked(arrived, key, n, outcome, answer)

    def _logged_locked(self, arrived: float, key: str | None, n: int, outcome: str, answer: Answer) -> Answer:
        answer.headers.update(self._rate_headers(arrived))
        self.log.append(Logged(arrived, answer.status, outcome, n, key))
        return answer

    # -- what tests read ------------------------------------------------------------------

    def copies_by_recipient(self) -> dict[str, int]:
        with self.lock:
            counts: dict[str, int] = {}
            for r in self.records:
                counts[r.to] = counts.get(r.to, 0) + 1
            return counts

    def arrivals(self) -> list[float]:
        with self.lock:
            return sorted(entry.at for entry in self.log)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            outcomes: dict[str, int] = {}
            for entry in self.log:
                outcomes[entry.outcome] = outcomes.get(entry.outcome, 0) + 1
            return {"requests": len(self.log), "accepted_emails": len(self.records), "outcomes": outcomes}

    def dump(self) -> dict[str, Any]:
        with self.lock:
            return {"records": [asdict(r) for r in self.records], "log": [asdict(e) for e in self.log]}
