"""Postmark as a digest provider: one declaration, found through the `digest.providers` entry point.

Everything the digest needs to know about Postmark is here: the transport (its batch API,
500 messages per call, no idempotency keys), the bounce webhook (authenticated with the
HTTP Basic credentials written into the webhook URL), the secrets, the config section
`[transport.postmark]` and the doctor's lines.
"""

from __future__ import annotations

from typing import Any

from digest.providers.registry import Provider, Webhook
from postmark_provider import webhook
from postmark_provider.transport import CAPABILITIES, SERVER_TOKEN, PostmarkSection, PostmarkTransport


def doctor_checks() -> Any:
    """The doctor's lines for Postmark (imported only when the doctor runs)."""
    from digest.doctor.providers import DomainRecords, ProviderChecks
    from digest.doctor.site_checks import reported_by_events
    from postmark_provider import doctor

    return ProviderChecks(
        dns=DomainRecords("Postmark", "{domain}", "", (), "Postmark's Sender Signatures (Domains → {domain})"),
        webhooks=doctor.webhook_credentials,
        bounces=reported_by_events("Postmark"),
    )


PROVIDER = Provider(
    "postmark",
    CAPABILITIES,
    PostmarkSection,
    PostmarkTransport,
    "Postmark's batch API (POSTMARK_SERVER_TOKEN), up to 500 messages per call, no idempotency keys",
    secrets=(SERVER_TOKEN, webhook.USER, webhook.PASSWORD),
    webhook=Webhook(webhook.receive, webhook.OPERATION),
    doctor=doctor_checks,
)
