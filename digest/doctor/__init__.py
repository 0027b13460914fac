"""`digest doctor`: is this installation ready to send? One line per check, and what to do.

The checks are small functions of a `Context` (the config, a DNS resolver, timeouts) that
return `Check`s; `run` calls them in the order an operator fixes things and turns a check
that crashed into a failed line, so one surprise never hides the other answers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from digest.config import Config
from digest.doctor.resolver import Dns


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""  # what to do, for a warning or a failure


def passed(name: str, detail: str) -> Check:
    return Check(name, Status.PASS, detail)


def warned(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.WARN, detail, fix)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


@dataclass
class Context:
    config: Config
    dns: Dns
    http_timeout: float = 10.0

    @property
    def from_email(self) -> str:
        return self.config.settings.sender.from_email

    @property
    def domain(self) -> str:
        """The sending domain: the part of sender.from_email after the @."""
        return self.from_email.rpartition("@")[2].lower().rstrip(".")

    @property
    def transport(self) -> str:
        return self.config.transport_kind


CheckFn = Callable[[Context], Iterable[Check]]


def all_checks(config: Config | None = None) -> list[CheckFn]:
    """In the order an operator fixes things; the configured provider's own checks in their places."""
    from digest.doctor import dns_checks, site_checks
    from digest.doctor.providers import NONE, declared

    own = declared(config) if config is not None else NONE
    return [
        site_checks.sender,
        dns_checks.spf,
        dns_checks.dkim,
        dns_checks.dmarc,
        *own.domain,
        site_checks.public_url,
        site_checks.webhooks,
        *own.account,
        site_checks.postal_address,
        site_checks.unsubscribe_mailbox,
        site_checks.bounces,
        site_checks.secret_key,
        site_checks.database,
    ]


def run(ctx: Context, checks: Iterable[CheckFn] | None = None) -> list[Check]:
    results: list[Check] = []
    for check in checks if checks is not None else all_checks(ctx.config):
        try:
            results.extend(check(ctx))
        except Exception as exc:  # noqa: BLE001 - a check that crashed is a failed check, not a traceback
            if os.environ.get("DIGEST_DEBUG"):
                raise
            name = getattr(check, "__name__", "check").replace("_", " ")
            results.append(
                failed(
                    name,
                    f"could not check: {type(exc).__name__}: {exc}",
                    "run again with DIGEST_DEBUG=1 and report the traceback",
                )
            )
    return results
