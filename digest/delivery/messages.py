"""Build each reader's copy of a frozen issue: same input, same bytes (stable idempotent retries)."""

from __future__ import annotations

import html as htmlmod
import json
from dataclasses import dataclass

from digest.config import Settings
from digest.delivery.jsonfast import PreEscaped, escape
from digest.delivery.qpfast import QpSplicer, QpText
from digest.links import ClickTokens, Tokens, personal_links
from digest.mail import MessageIds, OutgoingEmail, domain_of, sender_address, unsubscribe_headers
from digest.render.personalize import Personalizer, filled_values, join_parts
from digest.render.tracked import BLANK_GIF_URL, direct_values, slot
from digest.storage.models import Edition, Issue


@dataclass
class Recipient:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str | None
    edition_id: int | None = None  # None: enqueued before editions; such a reader gets the main edition


class IssueMessages:
    """Per-issue state built once (split templates, token signer); `build` runs per reader."""

    def __init__(
        self,
        settings: Settings,
        tokens: Tokens,
        issue: Issue,
        edition: Edition,
        *,
        installation: str,
        json_bodies: bool = False,
        tokens_name_edition: bool = True,
    ):
        """`edition`: the issue's edition these copies are of (its compile is the only one there is).
        `installation`: this installation's id (digest.storage.installation), read once per send: it keeps the
        Message-IDs of installations sharing a secret apart. `json_bodies`: also join each copy's
        JSON-escaped form (only the Resend transport sends JSON). `tokens_name_edition`: False for
        deliveries enqueued before editions: their click tokens named none (the redirect reads the main
        edition's links then), and a batch retried must send the bytes it first sent."""
        compiled = edition
        assert compiled.html is not None and compiled.text is not None and compiled.placeholder_nonce
        self.settings = settings
        self.tokens = tokens
        self.issue_id = issue.id
        self.week = issue.week
        self.subject = compiled.subject or settings.site.name
        self.personalizer = Personalizer.build(compiled.html, compiled.text, compiled.placeholder_nonce)
        self.from_addr = sender_address(settings)
        self.message_ids = MessageIds(
            tokens.derived_key(MessageIds.PURPOSE), domain_of(settings.sender.from_email), installation
        )
        self.reply_to = settings.sender.reply_to or None
        # JSON forms of the fixed parts, escaped once (see digest.delivery.jsonfast).
        p = self.personalizer
        self._html_json = [escape(part) for part in p.html_parts]
        self._text_json = [escape(part) for part in p.text_parts]
        # None: checked against the real thing on the first reader; False: plain strings only.
        self._fast_json: bool | None = None if json_bodies else False
        # Tracked links (digest.render.tracked): each reader's /c/<token> URLs; the destinations
        # themselves for a copy that is no delivery (preview, test send).
        links = list(edition.links or [])
        self._link_count = len(links)
        self._edition_id = edition.id if tokens_name_edition else None  # the tokens name the links' edition
        self._link_slots = [slot(i) for i in range(len(links))]
        self._direct = direct_values(links)
        self._click_base = f"{settings.site.public_url}/c/"
        self._clicks = ClickTokens(tokens)
        self._click_leads = self._clicks.leads(self._click_base)
        # `[tracking] open_pixel`: the compiled issue has an image slot only when it was on.
        self._pixel = ClickTokens(tokens, "digest.open") if "open_url" in self.personalizer.html_slots else None
        self._pixel_base = f"{settings.site.public_url}/o/"
        # Tokens are URL-safe; the base is checked once, so per-reader links skip escaping.
        self._base_safe = htmlmod.escape(self._click_base) == self._click_base == escape(self._click_base)
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
        safe = None
        if self._pixel is not None:  # a transparent image of our own (delivery 0: no delivery, no image)
            values["open_url"] = (
                self._pixel_base + self._pixel.for_message(self.issue_id, r.delivery_id, 1)[0]
                if r.delivery_id
                else BLANK_GIF_URL
            )
        if self._link_count:
            if r.delivery_id:
                safe = dict(
                    zip(
                        self._link_slots,
                        self._clicks.for_message(
                            self.issue_id, r.delivery_id, self._link_count, self._click_leads, self._edition_id
                        ),
                    )
                )
                if not self._base_safe:
                    values.update(safe)
                    safe = None
            else:
                values.update(self._direct)
        escaped, values = filled_values(values, safe)  # Personalizer.fill, keeping both for the QP form
        p = self.personalizer
        html: str = join_parts(p.html_parts, p.html_slots, escaped)
        text: str = join_parts(p.text_parts, p.text_slots, values)
        if self._fast_json is not False:
            html, text = self._with_json(html, text, values, escaped)
        else:  # the JSON forms are for an HTTP API; a MIME transport asks for these (computed when asked)
            html, text = QpText(html, self._html_qp, escaped), QpText(text, self._text_qp, values)
        headers = unsubscribe_headers(self.settings, links["unsubscribe_url"], links["token"])
        return OutgoingEmail(
            to=r.email,
            subject=subject_prefix + self.subject,
            html=html,
            text=text,
            from_addr=self.from_addr,
            reply_to=self.reply_to,
            headers=headers,
            tags={"week": self.week.replace("-", "_")},
            key=f"d{r.delivery_id}",
            message_id=self.message_ids.make("issue", self.week, str(r.delivery_id), r.email),
        )

    def _with_json(self, html: str, text: str, values: dict[str, str], escaped: dict[str, str]) -> tuple[str, str]:
        """Attach the JSON forms, joined from pre-escaped parts (same rule as Personalizer.fill)."""
        p = self.personalizer
        html_json = join_parts(self._html_json, p.html_slots, {k: escape(v) for k, v in escaped.items()})
        text_json = join_parts(self._text_json, p.text_slots, {k: escape(v) for k, v in values.items()})
        if self._fast_json is None:  # trust it only if it decodes to exactly what fill() made
            self._fast_json = json.loads(f'"{html_json}"') == html and json.loads(f'"{text_json}"') == text
            if not self._fast_json:
                return html, text
        return PreEscaped(html, html_json), PreEscaped(text, text_json)
