"""The doctor's `bounces` line for SMTP: a relay mails bounces back to the VERP envelope sender."""

from __future__ import annotations

from collections.abc import Iterator

from digest.doctor import Check, Context, failed, passed, warned
from digest.doctor.site_checks import is_placeholder


def bounce_address(ctx: Context) -> Iterator[Check]:
    address = ctx.config.transport_section("smtp").bounce_address
    mailbox = ctx.config.settings.bounces.imap_host
    fix = (
        "set [transport.smtp] bounce_address to a mailbox on your domain and deliver its mail to "
        "`digest subscribers bounce-mail -`, or set [bounces] imap_* and `digest serve` polls it"
    )
    if not address:
        yield warned(
            "bounces",
            "[transport.smtp] bounce_address is empty: SMTP bounces and complaints are not "
            "processed, so dead addresses keep being mailed",
            fix,
        )
    elif is_placeholder(address):
        yield failed("bounces", f"[transport.smtp] bounce_address {address} is an example address", fix)
    else:
        every = ctx.config.settings.bounces.poll_seconds
        how = (
            (
                f"polled over IMAP at {mailbox} by `digest serve` every {every} s"
                if every
                else f"polled over IMAP at {mailbox} by `digest subscribers bounce-poll` (poll_seconds = 0)"
            )
            if mailbox
            else "read by `digest subscribers bounce-mail`"
        )
        yield passed("bounces", f"VERP envelope sender {address}, {how}")
