"""Unsubscribe requests that arrive by email (the `mailto:` half of List-Unsubscribe).

The header is `mailto:<sender.unsubscribe_mailto>?subject=unsubscribe%20<token>`, so a mail
client's "unsubscribe" button sends a message whose subject carries the reader's signed
token. `digest subscribers unsubscribe-mail` reads such messages (.eml files or stdin from
a mail alias/procmail pipe): a valid token unsubscribes its subscriber, attributed to the
issue; without one, the From address is unsubscribed if it is on the list (the common
practice of list servers; at worst someone forging From stops a newsletter).
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.utils import parseaddr

from sqlalchemy import select

from digest.runtime import Runtime
from digest.storage.models import Subscriber
from subscribers import lifecycle
from subscribers.addresses import AddressError, normalize_email
from subscribers.tokens import TokenError

_TOKEN = re.compile(r"unsubscribe\s+([A-Za-z0-9_\-.]{10,300})", re.I)


@dataclass(frozen=True)
class MailOutcome:
    ok: bool
    message: str


def _token_in(msg: email.message.EmailMessage) -> list[str]:
    found = _TOKEN.findall(str(msg.get("Subject", "")))
    body = msg.get_body(preferencelist=("plain",))
    if body is not None:
        try:
            found += _TOKEN.findall(body.get_content()[:20000])
        except (LookupError, UnicodeError):
            pass
    return found


def process_unsubscribe_mail(rt: Runtime, raw: bytes) -> MailOutcome:
    """Unsubscribe whoever the message names; never raises on a malformed message."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # noqa: BLE001 - anything unparseable is just not a request
        return MailOutcome(False, "not an email message")
    with rt.sessions.begin() as session:
        for token in _token_in(msg):  # type: ignore[arg-type]
            try:
                claim = lifecycle.read_unsubscribe_token(rt, token)
            except TokenError:
                continue
            sub = lifecycle.subscriber_for(session, claim)
            if sub is None:
                return MailOutcome(True, "token of an erased subscriber: nothing to do")
            changed = lifecycle.unsubscribe(session, sub, issue_id=claim.issue_id, method="mailto")
            return MailOutcome(True, f"{sub.email}: {'unsubscribed' if changed else 'already ' + sub.status}")
        _, sender = parseaddr(str(msg.get("From", "")))
        try:
            address = normalize_email(sender)
        except AddressError:
            return MailOutcome(False, "no valid unsubscribe token and no usable From address")
        sub = session.scalar(select(Subscriber).where(Subscriber.email == address))
        if sub is None:
            return MailOutcome(False, f"{address}: not on the list and no valid token")
        changed = lifecycle.unsubscribe(session, sub, issue_id=None, method="mailto-from")
        return MailOutcome(True, f"{sub.email}: {'unsubscribed (by From address)' if changed else 'already ' + sub.status}")
