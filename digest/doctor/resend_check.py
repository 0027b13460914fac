"""With the Resend transport: is the sending domain verified at Resend, and which records are not?"""

from __future__ import annotations

from collections.abc import Iterator

from digest.delivery.transports.resend_domains import DomainLookupError, find_domain
from digest.doctor import Check, Context, failed, passed, warned

NAME = "Resend domain"


def domain_status(ctx: Context) -> Iterator[Check]:
    if ctx.transport != "resend":
        return
    key = ctx.config.resend_api_key.strip()
    if not key:
        yield failed(NAME, "RESEND_API_KEY is not set", "create an API key at Resend (API Keys) and set "
                     "RESEND_API_KEY in the service's environment")
        return
    try:
        domain = find_domain(ctx.config, key, ctx.domain, timeout=ctx.http_timeout)
    except DomainLookupError as exc:
        if exc.restricted:
            yield warned(NAME, f"not checked: {exc} (a sending-only key may not read domains)",
                         f"look at Domains → {ctx.domain} in Resend's dashboard, or run the doctor with a "
                         "full-access key in RESEND_API_KEY")
        else:
            yield failed(NAME, f"not checked: {exc}", "check RESEND_API_KEY (a key of the account that owns "
                         f"{ctx.domain}) and that Resend's API is reachable from here")
        return
    if domain is None:
        yield failed(NAME, f"{ctx.domain} is not a domain of this Resend account, so Resend refuses to send "
                     f"from {ctx.from_email}", f"add {ctx.domain} at Resend (Domains → Add domain), then the "
                     "DNS records it lists, then press Verify")
        return
    waiting = [f"{r.record} {r.name} ({r.status})" for r in domain.records
               if r.record in ("SPF", "DKIM") and r.status != "verified"]
    detail = f"{domain.name}: {domain.status}" + (f"; not verified: {', '.join(waiting)}" if waiting else "")
    fix = (f"add the records Resend lists for {domain.name} (Domains → {domain.name}) exactly as shown, then "
           "press Verify; DNS changes can take a few hours to be seen")
    if domain.status == "verified":
        yield passed(NAME, detail)
    elif domain.status == "partially_verified":
        yield warned(NAME, detail, fix)
    else:
        yield failed(NAME, detail, fix)
