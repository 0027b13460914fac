"""Amazon SES v2 through boto3: one `SendEmail` call per reader, with our own raw MIME.

Why Raw and one message per call: every reader's message is personal (their
unsubscribe link and the RFC 8058 `List-Unsubscribe` headers in it), so SES's
templates and bulk call would save nothing we could use, and Simple content
would let SES write the headers. Raw keeps the exact bytes the other transports
send (to_mime), headers included.

SES has no idempotency keys, so the transport declares itself not idempotent,
with batches of one message and a key lifetime of zero: the sender commits each
attempt before the call and records the accepted MessageId at once; a call whose
answer was lost (a timeout, a cut connection) or a process killed mid-call leaves
that one reader `unconfirmed` for the operator instead of being sent again
(invariant 6). botocore's own retries are off for the same reason.

Credentials and region come from the standard AWS environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_PROFILE, an instance
role ...); AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_SESV2) points it elsewhere (the
tests use moto's server). boto3 is imported when the transport is built.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from pydantic import Field

from digest.delivery.transports.base import BaseTransport, OnResult, ProviderRefusal, SendResult, TransientError
from digest.delivery.transports.smtp_wire import from_domain, message_bytes
from digest.errors import ConfigError
from digest.mail import OutgoingEmail, to_mime
from digest.providers.registry import Capabilities, TransportSection


class SesSection(TransportSection):
    """`[transport.ses]`; credentials come from the standard AWS environment."""

    region: str = ""  # empty: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1
    # Your account's maximum send rate (SES console: "Sending statistics"); 14/s is SES's default.
    max_send_rate: float = Field(14.0, gt=0, le=10000)
    configuration_set: str = Field("", pattern=r"^[A-Za-z0-9_-]{0,64}$")  # publishes events to SNS
    timeout_seconds: float = Field(30, gt=0)
    concurrency: int = Field(4, ge=1, le=64)  # calls in flight per sending process


CAPABILITIES = Capabilities(
    idempotent=False,
    key_lifetime_hours=0,
    max_batch=1,
    per_message_results=True,
    rate=lambda section: section.max_send_rate,
    # Through a configuration set's event destination (SNS), parsed by the SES events module.
    reports=frozenset({"delivered", "bounced", "complained", "opened", "clicked"}),
)

# Answers that stop the whole send: nothing more can go out until the operator acts.
_STOP = {
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "LimitExceededException",
    "NotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "InvalidSignatureException",
}
_THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
_TAG = re.compile(r"[^A-Za-z0-9_-]+")


class SesTransport(BaseTransport):
    name = "ses"

    def __init__(self, config: Any):
        import boto3
        import botocore.config

        settings: SesSection = config.transport_section("ses")
        env = config.env
        self.max_in_flight = settings.concurrency
        self.configuration_set = settings.configuration_set
        region = settings.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        endpoint = (env.get("AWS_ENDPOINT_URL_SESV2") or env.get("AWS_ENDPOINT_URL") or "").strip() or None
        if endpoint is not None and not re.match(r"^https?://[^\s/]+", endpoint):
            raise ConfigError(f"AWS_ENDPOINT_URL: {endpoint!r} is not an http(s) URL")
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            profile_name=env.get("AWS_PROFILE") or None,
            region_name=region,
        )
        # No automatic retries: a retried call whose first answer was lost could send twice.
        self._client = session.client(
            "sesv2",
            endpoint_url=endpoint,
            config=botocore.config.Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=min(10.0, settings.timeout_seconds),
                read_timeout=settings.timeout_seconds,
                max_pool_connections=max(10, settings.concurrency),
            ),
        )
        self._lock = threading.Lock()

    def raw(self, email: OutgoingEmail) -> bytes:
        """The message's bytes, exactly as SMTP would send them (headers are ours: RFC 8058)."""
        domain = from_domain(email.from_addr)
        wire = message_bytes(email, domain)
        return wire.data if wire is not None else to_mime(email, domain).as_bytes()

    def _request(self, email: OutgoingEmail, folder: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "FromEmailAddress": email.from_addr,
            "Destination": {"ToAddresses": [email.to]},
            "Content": {"Raw": {"Data": self.raw(email)}},
            "EmailTags": [{"Name": "week", "Value": _TAG.sub("_", folder)[:256] or "none"}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        return request

    def send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, folder: str, on_result: OnResult | None = None
    ) -> list[SendResult]:
        """Each message on its own call, reported through `on_result` before the next goes out."""
        results: list[SendResult] = []
        for i, email in enumerate(emails):
            try:
                result = self._send_one(email, folder)
            except TransientError as exc:
                if not results or exc.ambiguous:
                    raise  # an ambiguous call mid-batch: the sender marks what is left unconfirmed
                results.extend(
                    SendResult(ok=False, error=f"not sent yet: {exc}"[:2000], retry=True) for _ in emails[i:]
                )
                return results
            results.append(result)
            if on_result is not None:
                on_result(i, result)
        return results

    def _send_one(self, email: OutgoingEmail, folder: str) -> SendResult:
        import botocore.exceptions as bx

        try:
            answer = self._client.send_email(**self._request(email, folder))
        except bx.ClientError as exc:
            return _client_error(exc)
        except (bx.ReadTimeoutError, bx.ConnectionClosedError) as exc:
            raise TransientError(
                f"SES: no answer ({exc}); the message may have been accepted", ambiguous=True
            ) from None
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError) as exc:
            raise TransientError(f"SES unreachable: {exc}") from None
        except bx.NoCredentialsError:
            raise ProviderRefusal(
                "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role"
            ) from None
        except bx.BotoCoreError as exc:
            raise TransientError(f"SES: {exc}", ambiguous=True) from None
        return SendResult(ok=True, provider_id=str(answer.get("MessageId") or "")[:100] or None)

    def close(self) -> None:
        self._client.close()


def _client_error(exc: Any) -> SendResult:
    """SES answered with an error: nothing was sent. Stop, retry later, or fail this reader."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or code)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _THROTTLED or status == 429:
        raise TransientError(f"SES throttled the request: {message}", rate_limited=True) from None
    if code in _STOP or status in (401, 403) or "authority to send" in message or "not verified" in message:
        raise ProviderRefusal(f"SES refused to send: {code}: {message}") from None
    if status >= 500 or not status:
        raise TransientError(f"SES error {status or ''} {code}: {message}".strip()) from None
    return SendResult(ok=False, error=f"rejected by SES: {code}: {message}"[:2000])
