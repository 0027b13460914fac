"""Any SMTP relay: one message at a time over kept-alive connections; bounces come back by mail (VERP)."""

from __future__ import annotations

from typing import Any

from digest.providers.registry import Legacy, Provider
from digest.providers.smtp.transport import CAPABILITIES, PASSWORD, SmtpSection, SmtpTransport


def doctor_checks() -> Any:
    """Its `bounces` line: where bounce mail goes (imported only when the doctor runs)."""
    from digest.doctor.providers import DomainRecords, ProviderChecks
    from digest.providers.smtp import doctor

    return ProviderChecks(
        dns=DomainRecords("your SMTP provider", "{domain}", "", (), "your SMTP provider's domain settings"),
        bounces=doctor.bounce_address,
    )


PROVIDER = Provider(
    "smtp",
    CAPABILITIES,
    SmtpSection,
    SmtpTransport,
    "any SMTP relay, one message at a time over kept-alive connections",
    secrets=(PASSWORD,),
    doctor=doctor_checks,
    legacy=Legacy(table="smtp"),  # `[smtp]`, before transports were plug-ins
)
