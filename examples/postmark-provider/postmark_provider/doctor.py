"""The doctor's `webhooks` line for Postmark: the credentials its webhook URL must carry."""

from __future__ import annotations

from collections.abc import Iterator

from digest.doctor import Check, Context, failed, passed
from postmark_provider.webhook import PASSWORD, PROVIDER, USER


def webhook_credentials(ctx: Context) -> Iterator[Check]:
    url = ctx.config.settings.site.public_url.rstrip("/")
    user, password = ctx.config.secret(PROVIDER, USER), ctx.config.secret(PROVIDER, PASSWORD)
    scheme, _, rest = url.partition("://")
    fix = (
        f"set {USER} and {PASSWORD} (a long random password), and at Postmark (Servers → your server → "
        f"Webhooks) add {scheme}://<user>:<password>@{rest}/webhooks/postmark for Bounce, Spam Complaint "
        "and Delivery"
    )
    if not user or not password:
        yield failed(
            "webhooks",
            f"{USER} or {PASSWORD} is not set: Postmark's bounces and complaints are "
            "refused, so dead addresses keep being mailed",
            fix,
        )
    elif len(password) < 16:
        yield failed("webhooks", f"{PASSWORD} has {len(password)} characters: guessable", fix)
    else:
        yield passed("webhooks", f"credentials set; Postmark posts events to {url}/webhooks/postmark")
