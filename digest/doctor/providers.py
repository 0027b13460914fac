"""What a provider declares for the doctor (`ProviderChecks`), and the DNS it asks for.

Each provider's declaration (digest.providers.registry.Provider.doctor) says what its sending
domain needs in DNS and which checks of its own run where in the doctor's list: the domain as
the provider sees it (after the DNS checks), the `webhooks` line (are its events reaching us?),
its account's webhook settings, and the `bounces` line. A provider that declares nothing gets
the neutral answers, and `[doctor]` in config.toml names the DNS the transport does not say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from digest.config import Config

if TYPE_CHECKING:
    from digest.doctor import Check, Context

    CheckFn = Callable[[Context], Iterable[Check]]


@dataclass(frozen=True)
class DomainRecords:
    """The DNS a provider asks for in the sending domain."""

    label: str
    spf_host: str  # where the SPF record lives; {domain} is the sending domain
    spf_include: str  # what it must include; "" when the transport alone does not say
    dkim_selectors: tuple[str, ...]
    records_at: str  # where the operator finds the records to add; {domain} is the sending domain


OTHER = DomainRecords("your email provider", "{domain}", "", (), "your email provider's domain settings")


@dataclass(frozen=True)
class ProviderChecks:
    dns: DomainRecords = OTHER
    domain: tuple[CheckFn, ...] = ()  # right after the DNS checks: the domain as the provider sees it
    webhooks: CheckFn | None = None  # the `webhooks` line; none: "not needed"
    account: tuple[CheckFn, ...] = ()  # after the `webhooks` line: the account's own webhook settings
    bounces: CheckFn | None = None  # the `bounces` line; none: "not needed"


NONE = ProviderChecks()


def declared(config: Config) -> ProviderChecks:
    """The configured transport's provider's checks (the neutral ones when it declares none)."""
    make = config.transport_spec.doctor
    checks = make() if make is not None else None
    return checks if isinstance(checks, ProviderChecks) else NONE


@dataclass(frozen=True)
class Expected:
    """The DNS the doctor looks for: the transport's defaults, overridden by `[doctor]`."""

    provider: DomainRecords
    spf_host: str
    spf_include: str
    dkim_selectors: tuple[str, ...]
    records_at: str


def expected(config: Config, domain: str) -> Expected:
    provider = declared(config).dns
    settings = config.settings.doctor
    host = (settings.spf_domain or provider.spf_host.format(domain=domain)).lower().rstrip(".")
    return Expected(
        provider,
        host,
        settings.spf_include or provider.spf_include,
        tuple(settings.dkim_selectors) or provider.dkim_selectors,
        provider.records_at.format(domain=domain),
    )
