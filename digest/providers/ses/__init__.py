"""Amazon SES v2: one raw message per call (no idempotency keys), events through SNS."""

from __future__ import annotations

from typing import Any

from digest.providers.registry import Provider, Webhook
from digest.providers.ses import webhook
from digest.providers.ses.transport import CAPABILITIES, SesSection, SesTransport


def doctor_checks() -> Any:
    """The DNS SES asks for and its `webhooks` line (imported only when the doctor runs)."""
    from digest.doctor.providers import DomainRecords, ProviderChecks
    from digest.doctor.site_checks import reported_by_events
    from digest.providers.ses import doctor

    return ProviderChecks(
        dns=DomainRecords("Amazon SES", "{domain}", "", (), "the SES console (Identities → {domain})"),
        webhooks=doctor.sns_topics,
        bounces=reported_by_events("SES"),
    )


PROVIDER = Provider(
    "ses",
    CAPABILITIES,
    SesSection,
    SesTransport,
    "Amazon SES v2 (standard AWS environment), one raw message per reader",
    # Read by boto3 from the config's environment (the standard AWS chain also finds a profile or a role).
    secrets=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    webhook=Webhook(webhook.receive, webhook.OPERATION, max_body=webhook.MAX_BODY),
    doctor=doctor_checks,
)
