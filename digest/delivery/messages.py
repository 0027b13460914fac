"""Build each reader's copy of a frozen issue: same input, same bytes (stable idempotent retries)."""

from __future__ import annotations

from dataclasses import dataclass

from digest.config import Settings
from digest.mail import OutgoingEmail, sender_address, unsubscribe_headers
from digest.render.personalize import Personalizer
from digest.storage.models import Issue
from subscribers.api import personal_links
from subscribers.tokens import Tokens


@dataclass
class Recipient:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str | None


class IssueMessages:
    """Per-issue state built once (split templates, token signer); `build` runs per reader."""

    def __init__(self, settings: Settings, tokens: Tokens, issue: Issue):
        assert issue.html is not None and issue.text is not None and issue.placeholder_nonce
        self.settings = settings
        self.tokens = tokens
        self.issue_id = issue.id
        self.week = issue.week
        self.subject = issue.subject or settings.site.name
        self.personalizer = Personalizer.build(issue.html, issue.text, issue.placeholder_nonce)
        self.from_addr = sender_address(settings)
        self.reply_to = settings.sender.reply_to or None

    def build(self, r: Recipient, *, subject_prefix: str = "") -> OutgoingEmail:
        links = personal_links(self.settings, self.tokens, r.subscriber_id, r.email, self.issue_id, self.week)
        first = (r.name or "").split(" ")[0]
        html, text = self.personalizer.fill({
            "unsubscribe_url": links["unsubscribe_url"],
            "manage_url": links["manage_url"],
            "view_url": links["view_url"],
            "name": r.name or "",
            "greeting": f"Hi {first}," if first else "Hi there,",
        })
        headers = unsubscribe_headers(self.settings, links["unsubscribe_url"], links["token"])
        return OutgoingEmail(
            to=r.email, subject=subject_prefix + self.subject, html=html, text=text,
            from_addr=self.from_addr, reply_to=self.reply_to, headers=headers,
            tags={"week": self.week.replace("-", "_")}, key=f"d{r.delivery_id}",
        )
