"""Confirm and welcome emails: rendered per subscriber (they are one-off, not per-issue).

Template context contract (kept by templates/email/{confirm,welcome}.{mjml,txt}.j2):
  site, sender, schedule  the config sections
  subject, preheader      set here
  subscriber.email/.name  the reader (name is None for confirm: the address is not verified yet)
  confirm_url, expiry_days              (confirm)
  unsubscribe_url, manage_url, archive_url   (welcome)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from digest.config import Config
from digest.render.issue_email import render_pair

SUBJECTS = {"confirm": "Confirm your subscription to {site}", "welcome": "Welcome to {site}"}
PREHEADERS = {
    "confirm": "Confirm your address and the next issue is yours.",
    "welcome": "Every week, the AI tool comparisons worth your time.",
}


@dataclass
class RenderedMail:
    subject: str
    html: str
    text: str


def render_transactional(config: Config, kind: str, context: dict[str, Any]) -> RenderedMail:
    s = config.settings
    subject = SUBJECTS[kind].format(site=s.site.name)
    ctx = {
        "site": s.site,
        "sender": s.sender,
        "schedule": s.schedule,
        "subject": subject,
        "preheader": PREHEADERS[kind],
        **context,
    }
    html, text = render_pair(config, kind, ctx)
    return RenderedMail(subject, html, text)
