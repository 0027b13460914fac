"""A confirmation or welcome email, built from its queue row when its turn comes.

Rendered now and its links signed now (not when it was queued), so what a reader gets is
what the templates and the subscriber say at sending time (digest.delivery.mail_queue).
"""

from __future__ import annotations

from digest.links import Tokens, personal_links
from digest.mail import MessageIds, OutgoingEmail, domain_of, sender_address, unsubscribe_headers
from digest.render.transactional import render_transactional
from digest.runtime import Runtime
from digest.storage.installation import message_id_salt
from digest.storage.models import Subscriber


class MailBuilder:
    """Turns a queue row into the email a reader gets (rendered now, links signed now)."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self.settings = rt.settings
        self.tokens = Tokens(rt.secret_key)
        self.from_addr = sender_address(self.settings)
        with rt.sessions.begin() as session:  # once per builder: the Message-IDs of another installation differ
            install = message_id_salt(session, None)
        self.message_ids = MessageIds(
            self.tokens.derived_key(MessageIds.PURPOSE), domain_of(self.settings.sender.from_email), install
        )

    def build(self, mail_id: int, kind: str, sub: Subscriber) -> OutgoingEmail:
        s = self.settings
        base = s.site.public_url
        person = {"email": sub.email, "name": sub.name}
        headers: dict[str, str] = {}
        if kind == "confirm":
            person["name"] = None  # unverified address: a visitor-typed name never reaches it
            token = self.tokens.confirm(sub.id, sub.email)
            context = {
                "subscriber": person,
                "confirm_url": f"{base}/confirm/{token}",
                "expiry_days": s.subscribe.confirm_expiry_days,
            }
        else:
            links = personal_links(s, self.tokens, sub.id, sub.email, None, None)
            context = {
                "subscriber": person,
                "unsubscribe_url": links["unsubscribe_url"],
                "manage_url": links["manage_url"],
                "archive_url": f"{base}/archive",
            }
            headers = unsubscribe_headers(s, links["unsubscribe_url"], links["token"])
        rendered = render_transactional(self.rt.config, kind, context)
        return OutgoingEmail(
            to=sub.email,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            from_addr=self.from_addr,
            reply_to=s.sender.reply_to or None,
            headers=headers,
            tags={"kind": kind},
            key=f"m{mail_id}",
            message_id=self.message_ids.make("mail", kind, str(mail_id), sub.email),
        )
