"""Build each reader's copy of a frozen issue: same input, same bytes (stable idempotent retries)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from digest.config import Settings
from digest.delivery.jsonfast import PreEscaped, escape
from digest.delivery.qpfast import QpSplicer, QpText
from digest.links import Tokens, personal_links
from digest.mail import MessageIds, OutgoingEmail, domain_of, sender_address, unsubscribe_headers
from digest.render.personalize import Personalizer, html_values, join_parts
from digest.storage.models import Issue


@dataclass
class Recipient:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str | None


class IssueMessages:
    """Per-issue state built once (split templates, token signer); `build` runs per reader."""

    def __init__(self, settings: Settings, tokens: Tokens, issue: Issue, *, json_bodies: bool = False):
        """`json_bodies`: also join each copy's JSON-escaped form (only the Resend transport sends JSON)."""
        assert issue.html is not None and issue.text is not None and issue.placeholder_nonce
        self.settings = settings
        self.tokens = tokens
        self.issue_id = issue.id
        self.week = issue.week
        self.subject = issue.subject or settings.site.name
        self.personalizer = Personalizer.build(issue.html, issue.text, issue.placeholder_nonce)
        self.from_addr = sender_address(settings)
        self.message_ids = MessageIds(tokens.derived_key(MessageIds.PURPOSE), domain_of(settings.sender.from_email))
        self.reply_to = settings.sender.reply_to or None
        # JSON forms of the fixed parts, escaped once (see digest.delivery.jsonfast).
        p = self.personalizer
        self._html_json = [escape(part) for part in p.html_parts]
        self._text_json = [escape(part) for part in p.text_parts]
        # None: checked against the real thing on the first reader; False: plain strings only.
        self._fast_json: bool | None = None if json_bodies else False
        # Quoted-printable forms of the fixed parts, encoded once (see digest.delivery.qpfast): MIME
        # transports (SMTP, SES, the outbox) splice each reader's body from them.
        self._html_qp = QpSplicer(p.html_parts, p.html_slots)
        self._text_qp = QpSplicer(p.text_parts, p.text_slots)

    def build(self, r: Recipient, *, subject_prefix: str = "") -> OutgoingEmail:
        links = personal_links(self.settings, self.tokens, r.subscriber_id, r.email, self.issue_id, self.week)
        first = (r.name or "").split(" ")[0]
        values = {
            "unsubscribe_url": links["unsubscribe_url"],
            "manage_url": links["manage_url"],
            "view_url": links["view_url"],
            "name": r.name or "",
            "greeting": f"Hi {first}," if first else "Hi there,",
        }
        p = self.personalizer
        escaped = html_values(values)  # Personalizer.fill, keeping the escaped values for the QP form
        html: str = join_parts(p.html_parts, p.html_slots, escaped)
        text: str = join_parts(p.text_parts, p.text_slots, values)
        if self._fast_json is not False:
            html, text = self._with_json(html, text, values, escaped)
        else:  # the JSON forms are for an HTTP API; a MIME transport asks for these (computed when asked)
            html, text = QpText(html, self._html_qp, escaped), QpText(text, self._text_qp, values)
        headers = unsubscribe_headers(self.settings, links["unsubscribe_url"], links["token"])
        return OutgoingEmail(
            to=r.email, subject=subject_prefix + self.subject, html=html, text=text,
            from_addr=self.from_addr, reply_to=self.reply_to, headers=headers,
            tags={"week": self.week.replace("-", "_")}, key=f"d{r.delivery_id}",
            message_id=self.message_ids.make("issue", self.week, str(r.delivery_id), r.email),
        )

    def _with_json(self, html: str, text: str, values: dict[str, str],
                   escaped: dict[str, str]) -> tuple[str, str]:
        """Attach the JSON forms, joined from pre-escaped parts (same rule as Personalizer.fill)."""
        p = self.personalizer
        html_json = join_parts(self._html_json, p.html_slots,
                          {k: escape(v) for k, v in escaped.items()})
        text_json = join_parts(self._text_json, p.text_slots, {k: escape(v) for k, v in values.items()})
        if self._fast_json is None:  # trust it only if it decodes to exactly what fill() made
            self._fast_json = (json.loads(f'"{html_json}"') == html and json.loads(f'"{text_json}"') == text)
            if not self._fast_json:
                return html, text
        return PreEscaped(html, html_json), PreEscaped(text, text_json)
