"""With the Resend transport: is the sending domain verified at Resend, and which records are not?
Does one of the account's webhooks post bounces and complaints to this service?"""

from __future__ import annotations

from collections.abc import Iterator

from digest.doctor import Check, Context, failed, passed, warned
from digest.providers.resend.account import DomainLookupError, find_domain, list_webhooks, signing_secret
from digest.providers.resend.transport import API_KEY
from digest.providers.resend.webhook import WEBHOOK_SECRET

NAME = "Resend domain"


def _not_checked(name: str, exc: DomainLookupError, what: str, where: str, whose: str) -> Check:
    """Resend's API did not tell: a sending-only key only warns (it may not read `what`); anything else fails."""
    if exc.restricted:
        return warned(
            name,
            f"not checked: {exc} (a sending-only key may not read {what})",
            f"look at {where} in Resend's dashboard, or run the doctor with a full-access key in RESEND_API_KEY",
        )
    return failed(
        name, f"not checked: {exc}", f"check RESEND_API_KEY ({whose}) and that Resend's API is reachable from here"
    )


def _key(ctx: Context) -> str:
    return ctx.config.secret("resend", API_KEY).strip()


def _webhook_secret(ctx: Context) -> str:
    return ctx.config.secret("resend", WEBHOOK_SECRET).strip()


def domain_status(ctx: Context) -> Iterator[Check]:
    if ctx.transport != "resend":
        return
    key = _key(ctx)
    if not key:
        yield failed(
            NAME,
            "RESEND_API_KEY is not set",
            "create an API key at Resend (API Keys) and set RESEND_API_KEY in the service's environment",
        )
        return
    try:
        domain = find_domain(ctx.config, key, ctx.domain, timeout=ctx.http_timeout)
    except DomainLookupError as exc:
        yield _not_checked(
            NAME, exc, "domains", f"Domains → {ctx.domain}", f"a key of the account that owns {ctx.domain}"
        )
        return
    if domain is None:
        yield failed(
            NAME,
            f"{ctx.domain} is not a domain of this Resend account, so Resend refuses to send from {ctx.from_email}",
            f"add {ctx.domain} at Resend (Domains → Add domain), then the DNS records it lists, then press Verify",
        )
        return
    waiting = [
        f"{r.record} {r.name} ({r.status})"
        for r in domain.records
        if r.record in ("SPF", "DKIM") and r.status != "verified"
    ]
    detail = f"{domain.name}: {domain.status}" + (f"; not verified: {', '.join(waiting)}" if waiting else "")
    fix = (
        f"add the records Resend lists for {domain.name} (Domains → {domain.name}) exactly as shown, then "
        "press Verify; DNS changes can take a few hours to be seen"
    )
    if domain.status == "verified":
        yield passed(NAME, detail)
    elif domain.status == "partially_verified":
        yield warned(NAME, detail, fix)
    else:
        yield failed(NAME, detail, fix)


WEBHOOK = "Resend webhook"
NEEDED = ("email.bounced", "email.complained")  # without them dead addresses and complainers keep being mailed
WANTED = ("email.delivered",)  # without it `digest stats` cannot say what was delivered


def _same_url(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def webhook_registered(ctx: Context) -> Iterator[Check]:
    """Long because each answer of Resend's webhook API is its own check, told in order."""
    if ctx.transport != "resend" or not _key(ctx):
        return  # no key: the domain check already says so
    endpoint = ctx.config.settings.site.public_url.rstrip("/") + "/webhooks/resend"
    fix = (
        f"at Resend add a webhook (Webhooks → Add endpoint) to {endpoint} for {', '.join(NEEDED + WANTED)}, "
        "and set RESEND_WEBHOOK_SECRET to its signing secret"
    )
    try:
        hooks = list_webhooks(ctx.config, _key(ctx), timeout=ctx.http_timeout)
    except DomainLookupError as exc:
        yield _not_checked(WEBHOOK, exc, "webhooks", f"Webhooks → {endpoint}", "a key of the account that sends")
        return
    ours = [h for h in hooks if _same_url(h.endpoint, endpoint)]
    if not ours:
        elsewhere = f"; the account's webhooks post to {', '.join(h.endpoint for h in hooks[:3])}" if hooks else ""
        yield failed(
            WEBHOOK,
            f"no webhook of this Resend account posts to {endpoint}: bounces and complaints "
            f"never reach this service{elsewhere}",
            fix,
        )
        return
    enabled = [h for h in ours if h.status == "enabled"]
    if not enabled:
        yield failed(
            WEBHOOK,
            f"the webhook to {endpoint} is {ours[0].status}: Resend posts nothing",
            f"enable it at Resend (Webhooks → {endpoint})",
        )
        return
    # Each webhook signs its posts with its own secret and the service checks one (RESEND_WEBHOOK_SECRET):
    # only the webhook with that secret delivers, so its events alone count.
    secret = _webhook_secret(ctx)
    try:
        secrets = {h.id: signing_secret(ctx.config, _key(ctx), h.id, ctx.http_timeout) for h in enabled}
    except DomainLookupError as exc:
        yield _not_checked(WEBHOOK, exc, "webhooks", f"Webhooks → {endpoint}", "a key of the account that sends")
        return
    if any(secrets.values()):
        enabled = [h for h in enabled if secrets[h.id] == secret]
        if not enabled:
            yield failed(
                WEBHOOK,
                f"RESEND_WEBHOOK_SECRET is not the signing secret of the webhook to {endpoint}: "
                "the service refuses its posts (401), so bounces and complaints never count",
                f"open it at Resend (Webhooks → {endpoint}) and copy its signing secret into RESEND_WEBHOOK_SECRET",
            )
            return
    best = max(enabled, key=lambda h: len(set(h.events or ()) & set(NEEDED + WANTED)))
    if best.events is None:
        yield warned(
            WEBHOOK,
            f"{endpoint} ({best.id}) is enabled; Resend did not say which events it sends",
            f"make sure it sends {', '.join(NEEDED + WANTED)} (Webhooks → {endpoint})",
        )
        return
    missing = [e for e in NEEDED if e not in best.events]
    if missing:
        yield failed(
            WEBHOOK,
            f"{endpoint} does not get {', '.join(missing)}: those addresses keep being mailed",
            f"add {', '.join(missing)} to its events at Resend (Webhooks → {endpoint})",
        )
        return
    lacking = [e for e in WANTED if e not in best.events]
    if lacking:
        yield warned(
            WEBHOOK,
            f"{endpoint} gets bounces and complaints but not {', '.join(lacking)}: "
            "`digest stats` cannot count deliveries",
            f"add {', '.join(lacking)} to its events at Resend",
        )
        return
    yield passed(WEBHOOK, f"{endpoint} gets {', '.join(e for e in NEEDED + WANTED)} (enabled)")


def webhook_secret(ctx: Context) -> Iterator[Check]:
    """The `webhooks` line: without the signing secret every event is refused."""
    url = ctx.config.settings.site.public_url
    secret = _webhook_secret(ctx)
    fix = (
        f"at Resend add a webhook to {url}/webhooks/resend (bounced, complained, delivered, opened, clicked) "
        "and set RESEND_WEBHOOK_SECRET to its signing secret (whsec_...)"
    )
    if not secret:
        yield failed(
            "webhooks",
            "RESEND_WEBHOOK_SECRET is not set: bounces and complaints are refused, so dead addresses keep being mailed",
            fix,
        )
    elif not secret.startswith("whsec_"):
        yield failed("webhooks", "RESEND_WEBHOOK_SECRET is not a signing secret (it starts with whsec_)", fix)
    else:
        yield passed("webhooks", f"RESEND_WEBHOOK_SECRET is set; Resend posts events to {url}/webhooks/resend")
