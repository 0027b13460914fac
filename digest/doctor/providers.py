"""What each transport's provider asks for in the sending domain's DNS, for the doctor's checks.

Resend sends from a return-path subdomain (`send.<domain>`, SPF `include:amazonses.com`) and
signs with the DKIM selector `resend`. Amazon SES's DKIM selectors are three per-identity
tokens and its SPF only matters for a custom MAIL FROM domain; an SMTP server's are whatever
its operator set up: `[doctor]` in config.toml names them.
"""

from __future__ import annotations

from dataclasses import dataclass

from digest.config import Config


@dataclass(frozen=True)
class Provider:
    label: str
    spf_host: str  # where the SPF record lives; {domain} is the sending domain
    spf_include: str  # what it must include; "" when the transport alone does not say
    dkim_selectors: tuple[str, ...]
    records_at: str  # where the operator finds the records to add; {domain} is the sending domain


PROVIDERS = {
    "resend": Provider("Resend", "send.{domain}", "amazonses.com", ("resend",),
                       "Resend's dashboard (Domains → {domain})"),
    "ses": Provider("Amazon SES", "{domain}", "", (), "the SES console (Identities → {domain})"),
    "smtp": Provider("your SMTP provider", "{domain}", "", (), "your SMTP provider's domain settings"),
}
OTHER = Provider("your email provider", "{domain}", "", (), "your email provider's domain settings")


@dataclass(frozen=True)
class Expected:
    """The DNS the doctor looks for: the transport's defaults, overridden by `[doctor]`."""

    provider: Provider
    spf_host: str
    spf_include: str
    dkim_selectors: tuple[str, ...]
    records_at: str


def expected(config: Config, domain: str) -> Expected:
    provider = PROVIDERS.get(config.transport_kind, OTHER)
    settings = config.settings.doctor
    host = (settings.spf_domain or provider.spf_host.format(domain=domain)).lower().rstrip(".")
    return Expected(provider, host, settings.spf_include or provider.spf_include,
                    tuple(settings.dkim_selectors) or provider.dkim_selectors,
                    provider.records_at.format(domain=domain))
