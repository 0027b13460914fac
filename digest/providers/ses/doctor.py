"""The doctor's `webhooks` line for SES: its events arrive only from the SNS topics listed."""

from __future__ import annotations

from collections.abc import Iterator

from digest.doctor import Check, Context, failed, passed


def sns_topics(ctx: Context) -> Iterator[Check]:
    url = ctx.config.settings.site.public_url
    topics = ctx.config.settings.webhooks.sns_topic_arns
    if topics:
        yield passed("webhooks", f"SES events accepted from {len(topics)} SNS topic(s) at {url}/webhooks/ses")
    else:
        yield failed(
            "webhooks",
            "webhooks.sns_topic_arns is empty: SES bounces and complaints are refused",
            f"subscribe {url}/webhooks/ses (HTTPS) to the SNS topic of your configuration set's "
            "event destination and list its ARN in webhooks.sns_topic_arns",
        )
