"""The doctor's checks of settings and services: sender, public URL, webhooks, mailboxes, key, database.

None of them changes anything: the key file is read, never generated; a SQLite file that
does not exist yet is reported, not created; the database is asked its revision, not upgraded.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from digest import defaults
from digest.config import MIN_SECRET_KEY, SiteSettings
from digest.doctor import Check, CheckFn, Context, failed, passed, warned
from digest.doctor.providers import declared
from digest.providers import registry
from digest.storage.db import current_revision, head_revision, make_engine

# RFC 2606 / RFC 6761: names no one can receive mail at or verify for sending.
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
EXAMPLE_TLDS = ("example", "test", "invalid", "localhost")
STRONG_KEY = 32  # characters of a random key: ~190 bits from token_urlsafe
NEW_KEY = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


def is_placeholder(address_or_domain: str) -> bool:
    domain = address_or_domain.rpartition("@")[2].lower().rstrip(".")
    return (
        domain in EXAMPLE_DOMAINS
        or domain.endswith(tuple("." + d for d in EXAMPLE_DOMAINS))
        or domain.rpartition(".")[2] in EXAMPLE_TLDS
    )


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    """The default config.toml as shipped, to tell an operator's value from the example one."""
    try:
        return tomllib.loads(defaults.CONFIG.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def sender(ctx: Context) -> Iterator[Check]:
    spec = ctx.config.transport_spec
    if spec.capabilities.writes_files:
        senders = [p.name for p in registry.providers() if not p.capabilities.writes_files]
        yield warned(
            "transport",
            f"{ctx.transport}: messages are written as files, nobody receives them",
            f"set transport.kind in config.toml (or DIGEST_TRANSPORT) to {_one_of(senders)} to send",
        )
    else:
        yield passed("transport", f"{ctx.transport}: {spec.summary}" if spec.summary else ctx.transport)
    if is_placeholder(ctx.from_email):
        yield failed(
            "sender",
            f"sender.from_email {ctx.from_email} is on a domain reserved for examples; no provider sends from it",
            "set sender.from_email in config.toml to an address on your own "
            "domain (e.g. news@yourdomain.com); the DNS checks below are for that domain",
        )
    else:
        yield passed("sender", f"{ctx.from_email} (sending domain {ctx.domain})")


def _one_of(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names) or "a provider's"


def public_url(ctx: Context) -> Iterator[Check]:
    url = ctx.config.settings.site.public_url
    if not url.lower().startswith("https://"):
        yield failed(
            "public URL",
            f"site.public_url {url} is not https: every confirm and unsubscribe link "
            "would be plain http, and mailbox providers want https for one-click unsubscribe",
            "put `digest serve` behind a TLS reverse proxy and set site.public_url to its https address",
        )
        return
    probe = f"{url}/healthz/live"
    try:
        response = httpx.get(probe, timeout=ctx.http_timeout, follow_redirects=False)
    except httpx.HTTPError as exc:
        reason = str(exc).strip() or type(exc).__name__
        tls = "certificate" in reason.lower() or "ssl" in reason.lower()
        yield failed(
            "public URL",
            f"{probe}: not reachable: {reason}",
            "give that host a valid TLS certificate (e.g. Let's Encrypt at your reverse proxy)"
            if tls
            else "start `digest serve` and route site.public_url to it (DNS, firewall, reverse proxy)",
        )
        return
    if response.status_code == 200:
        yield passed("public URL", f"{url}: https, and `digest serve` answers at {probe}")
    elif response.status_code == 503:
        yield failed(
            "public URL",
            f"{probe}: 503: the service is up but cannot reach its database",
            "check DIGEST_DATABASE_URL of `digest serve` and that the database runs",
        )
    else:
        yield failed(
            "public URL",
            f"{probe}: answered {response.status_code}, not `digest serve`'s 200",
            "route site.public_url (the whole path) to `digest serve`; /healthz/live must reach it",
        )


def webhooks(ctx: Context) -> Iterator[Check]:
    """The provider's own line (its secret, its topics), or none needed when it reports nothing."""
    check = declared(ctx.config).webhooks
    if check is not None:
        yield from check(ctx)
    else:
        yield passed("webhooks", f"not needed: transport {ctx.transport} reports nothing by webhook")


def postal_address(ctx: Context) -> Iterator[Check]:
    address = ctx.config.settings.site.postal_address.strip()
    examples = {SiteSettings.model_fields["postal_address"].default, _shipped().get("site", {}).get("postal_address")}
    fix = "set site.postal_address in config.toml to your real postal address (CAN-SPAM: in every email's footer)"
    if not address:
        yield failed("postal address", "site.postal_address is empty", fix)
    elif address in examples:
        yield failed("postal address", f"site.postal_address is still the example: {address}", fix)
    else:
        yield passed("postal address", address)


def unsubscribe_mailbox(ctx: Context) -> Iterator[Check]:
    mailbox = ctx.config.settings.sender.unsubscribe_mailto.strip()
    pipe = "deliver its mail to `digest subscribers unsubscribe-mail -` (a pipe alias of your mail server)"
    if not mailbox:
        yield warned(
            "unsubscribe mailbox",
            "sender.unsubscribe_mailto is empty: List-Unsubscribe offers only "
            "the https link, and some mail clients show no unsubscribe button without a mailto",
            f"set sender.unsubscribe_mailto to a mailbox on your domain and {pipe}",
        )
    elif is_placeholder(mailbox):
        yield failed(
            "unsubscribe mailbox",
            f"sender.unsubscribe_mailto {mailbox} is an example address: unsubscribe requests mailed there are lost",
            f"set it to a mailbox on your domain and {pipe}",
        )
    else:
        yield passed("unsubscribe mailbox", f"{mailbox} (mailto: of every List-Unsubscribe header)")


def bounces(ctx: Context) -> Iterator[Check]:
    """The provider says how bounces reach us (its events, or bounce mail); none: nothing is sent."""
    check = declared(ctx.config).bounces
    if check is not None:
        yield from check(ctx)
    else:
        yield passed("bounces", f"not needed: transport {ctx.transport} sends nothing")


def reported_by_events(label: str) -> CheckFn:
    """The `bounces` line of a provider that reports bounces and complaints through its webhook."""

    def bounces(ctx: Context) -> Iterator[Check]:
        yield passed("bounces", f"reported by {label}'s events (see webhooks)")

    return bounces


def secret_key(ctx: Context) -> Iterator[Check]:
    config = ctx.config
    raw = config.env.get("DIGEST_SECRET_KEY", "").strip()
    where = "DIGEST_SECRET_KEY"
    path = config.secret_key_path
    if not raw:
        where = str(path)
        if not path.exists():
            yield warned(
                "secret key",
                f"no key yet: DIGEST_SECRET_KEY is unset and {path} does not exist; the first command generates it",
                f"keep a backup of {path} once it exists (losing it breaks "
                "every unsubscribe link already sent), or set DIGEST_SECRET_KEY from {NEW_KEY}",
            )
            return
        try:
            raw = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            yield failed("secret key", f"{path}: cannot be read ({exc})", "restore it from a backup")
            return
    fix = f"set DIGEST_SECRET_KEY to a random one ({NEW_KEY}); links already sent stop working, so do it before"
    if len(raw) < MIN_SECRET_KEY:
        yield failed("secret key", f"{where}: {len(raw)} characters; at least {MIN_SECRET_KEY} are required", fix)
    elif len(set(raw)) < 10:
        yield failed("secret key", f"{where}: only {len(set(raw))} different characters: guessable", fix)
    elif len(raw) < STRONG_KEY:
        yield warned("secret key", f"{where}: {len(raw)} characters; {STRONG_KEY} or more random ones are safe", fix)
    elif where != "DIGEST_SECRET_KEY" and os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        yield warned(
            "secret key",
            f"{path}: readable by other users of this machine",
            f"chmod 600 {path} (anyone holding the key can forge unsubscribe links)",
        )
    else:
        yield passed("secret key", f"{where}: {len(raw)} characters")


def database(ctx: Context) -> Iterator[Check]:
    url = ctx.config.database_url
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not os.path.exists(parsed.database):
        yield failed("database", f"{parsed.database}: no database yet", "run `digest db upgrade` (or `digest demo`)")
        return
    engine = make_engine(url)
    try:
        current, head = current_revision(engine), head_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any driver error: the database cannot be asked
        orig = getattr(exc, "orig", None) or exc
        reason = (str(orig).strip().splitlines() or [type(exc).__name__])[0]
        yield failed(
            "database",
            f"{shown}: cannot connect: {reason}",
            "check DIGEST_DATABASE_URL and that the database server runs and accepts this user",
        )
        return
    finally:
        engine.dispose()
    if current == head:
        yield passed("database", f"{shown}: migrated (revision {head})")
    else:
        yield failed(
            "database",
            f"{shown}: at revision {current or 'none (empty)'}, this version needs {head}",
            "run `digest db upgrade` (back the database up first)",
        )
