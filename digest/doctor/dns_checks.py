"""SPF, DKIM and DMARC of the sending domain: the DNS a new newsletter most often lands in spam for.

Each check reads TXT records only (dnspython, through `Context.dns`) and says which record to
add or change, with its name and value, when something is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

from digest.doctor import Check, Context, failed, passed, warned
from digest.doctor.providers import expected
from digest.doctor.resolver import Dns, DnsUnavailable

MAX_SPF_LOOKUPS = 10  # RFC 7208 4.6.4: more DNS-querying terms than this is a permanent error
DNS_FIX = "check the server with --nameserver HOST[:PORT] (or DIGEST_DNS_SERVER), or run again when DNS answers"


def _unavailable(name: str, exc: DnsUnavailable) -> Check:
    return failed(name, f"not checked: {exc}", DNS_FIX)


def spf_records(dns: Dns, name: str) -> list[str]:
    return [r for r in dns.txt(name) if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]


def tags(record: str) -> dict[str, str]:
    """`k=v; k=v` (DKIM and DMARC) → {k: v}, keys lower-case."""
    out: dict[str, str] = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out.setdefault(key.strip().lower(), "".join(value.split()))
    return out


def _spf_walk(dns: Dns, record: str) -> tuple[set[str], int]:
    """Every domain the record includes (or redirects to), followed down; and its DNS-querying terms."""
    seen: set[str] = set()
    lookups = 0
    pending = [record]
    while pending and lookups <= MAX_SPF_LOOKUPS:
        for term in pending.pop().split()[1:]:
            mech = term.lstrip("+-~?").lower()
            kind = mech.split(":", 1)[0].split("=", 1)[0].split("/", 1)[0]
            if kind in ("include", "redirect", "a", "mx", "ptr", "exists"):
                lookups += 1
            target = mech[8:] if kind == "include" else mech[9:] if kind == "redirect" else ""
            if target and "%" not in target and target not in seen:
                seen.add(target)
                found = spf_records(dns, target)
                if len(found) == 1:
                    pending.append(found[0])
    return seen, lookups


def spf(ctx: Context) -> Iterator[Check]:
    exp = expected(ctx.config, ctx.domain)
    host, include = exp.spf_host, exp.spf_include
    wanted = f"v=spf1 include:{include} ~all" if include else "v=spf1 include:<your provider's SPF domain> ~all"
    try:
        records = spf_records(ctx.dns, host)
        if not records:
            yield failed(
                "SPF", f"{host}: no SPF record", f"add a TXT record at {host}: {wanted} (as {exp.records_at} shows)"
            )
            return
        if len(records) > 1:
            yield failed(
                "SPF",
                f"{host}: {len(records)} SPF records; receivers treat that as an error",
                f"merge them into one TXT record at {host} (one v=spf1 ... with every include)",
            )
            return
        record = records[0]
        includes, lookups = _spf_walk(ctx.dns, record)
    except DnsUnavailable as exc:
        yield _unavailable("SPF", exc)
        return
    terms = [t.lower() for t in record.split()[1:]]
    if "all" in terms or "+all" in terms:
        yield failed(
            "SPF",
            f"{host}: {record}: `+all` lets any server on the internet send as {ctx.domain}",
            f"end the record with ~all (or -all) instead: {wanted}",
        )
    elif lookups > MAX_SPF_LOOKUPS:
        yield failed(
            "SPF",
            f"{host}: {record}: needs more than {MAX_SPF_LOOKUPS} DNS look-ups (a permanent error at receivers)",
            "remove includes you no longer send through, or flatten some to ip4:/ip6:",
        )
    elif not include:
        yield warned(
            "SPF",
            f"{host}: {record}; which include {exp.provider.label} needs is not known",
            "set [doctor] spf_include in config.toml to the domain your provider's SPF instructions "
            "include (e.g. _spf.mailgun.org), and spf_domain if it lives on another name",
        )
    elif include in includes:
        yield passed("SPF", f"{host}: {record}")
    else:
        yield failed(
            "SPF",
            f"{host}: {record}: does not include {include}, so {exp.provider.label}'s servers fail SPF",
            f"add include:{include} before the all at the end: "
            f"{' '.join([record.split()[0], f'include:{include}', *record.split()[1:]])}",
        )


def dkim(ctx: Context) -> Iterator[Check]:
    exp = expected(ctx.config, ctx.domain)
    if not exp.dkim_selectors:
        yield warned(
            "DKIM",
            f"no DKIM selector known for transport {ctx.transport}: nothing looked up",
            f"set [doctor] dkim_selectors in config.toml to the selectors {exp.records_at} lists "
            "(the part before ._domainkey)",
        )
        return
    for selector in exp.dkim_selectors:
        name = f"{selector}._domainkey.{ctx.domain}"
        try:
            records = ctx.dns.txt(name)
        except DnsUnavailable as exc:
            yield _unavailable("DKIM", exc)
            return
        keys = [tags(r) for r in records if "p" in tags(r)]
        add = f"add the DKIM TXT record {exp.records_at} lists at {name} (its value holds p=MIG...)"
        if not keys:
            yield failed("DKIM", f"{name}: no DKIM record", add)
        elif not keys[0]["p"]:
            yield failed("DKIM", f"{name}: the key is revoked (empty p=)", add)
        else:
            yield passed("DKIM", f"{name}: key {keys[0]['p'][:12]}… ({keys[0].get('k', 'rsa')})")


def _dmarc_candidates(domain: str) -> list[str]:
    """The domain, then its parents down to two labels: a subdomain inherits the organization's DMARC."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(max(1, len(labels) - 1))]


def dmarc(ctx: Context) -> Iterator[Check]:
    add = (
        f"add a TXT record at _dmarc.{ctx.domain}: v=DMARC1; p=none; rua=mailto:dmarc@{ctx.domain} "
        "(then quarantine once the reports look clean)"
    )
    try:
        for candidate in _dmarc_candidates(ctx.domain):
            name = f"_dmarc.{candidate}"
            records = [r for r in ctx.dns.txt(name) if r.replace(" ", "").lower().startswith("v=dmarc1")]
            if records:
                break
        else:
            yield failed("DMARC", f"_dmarc.{ctx.domain}: no DMARC record", add)
            return
    except DnsUnavailable as exc:
        yield _unavailable("DMARC", exc)
        return
    if len(records) > 1:
        yield failed(
            "DMARC",
            f"{name}: {len(records)} DMARC records; receivers then ignore them all",
            f"keep one TXT record at {name}",
        )
        return
    policy = tags(records[0]).get("p", "").lower()
    inherited = f" (inherited by {ctx.domain})" if candidate != ctx.domain else ""
    if policy not in ("none", "quarantine", "reject"):
        shown = f"p={policy}" if policy else "no p= policy"
        yield failed(
            "DMARC",
            f"{name}: {records[0]}: {shown}",
            f"give it a policy: v=DMARC1; p=none; rua=mailto:dmarc@{candidate}",
        )
    else:
        note = "; monitoring only, quarantine once reports look clean" if policy == "none" else ""
        yield passed("DMARC", f"{name}: p={policy}{inherited}{note}")
