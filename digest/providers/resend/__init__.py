"""Resend: the batch API (idempotency keys kept 24 h), Svix-signed webhooks, the domain as Resend sees it."""

from __future__ import annotations

from typing import Any

from digest.providers.registry import Legacy, Provider, Webhook
from digest.providers.resend import webhook
from digest.providers.resend.transport import API_KEY, CAPABILITIES, ResendSection, ResendTransport


def doctor_checks() -> Any:
    """What `digest doctor` asks Resend and checks of its webhook (imported only when it runs)."""
    from digest.doctor.providers import DomainRecords, ProviderChecks
    from digest.doctor.site_checks import reported_by_events
    from digest.providers.resend import doctor

    return ProviderChecks(
        dns=DomainRecords(
            "Resend", "send.{domain}", "amazonses.com", ("resend",), "Resend's dashboard (Domains → {domain})"
        ),
        domain=(doctor.domain_status,),
        webhooks=doctor.webhook_secret,
        account=(doctor.webhook_registered,),
        bounces=reported_by_events("Resend"),
    )


PROVIDER = Provider(
    "resend",
    CAPABILITIES,
    ResendSection,
    ResendTransport,
    "Resend's batch API (RESEND_API_KEY), idempotency keys kept 24 h",
    secrets=(API_KEY, webhook.WEBHOOK_SECRET),
    webhook=Webhook(webhook.receive, webhook.OPERATION),
    doctor=doctor_checks,
    # Before transports were plug-ins its settings, and every transport's, lived in `[resend]`.
    legacy=Legacy(
        table="resend",
        shared=("batch_size", "max_attempts", "pause_after_failures", "resume_after_seconds", "resume_max_seconds"),
    ),
)
