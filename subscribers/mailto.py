"""Unsubscribe requests that arrive by email (the `mailto:` half of List-Unsubscribe).

The header is `mailto:<sender.unsubscribe_mailto>?subject=unsubscribe%20<token>`, so a mail
client's "unsubscribe" button sends a message whose subject carries the reader's signed
token. `digest subscribers unsubscribe-mail` reads such messages (.eml files or stdin from
a mail alias/procmail pipe): a valid token, in the subject or the body, unsubscribes its
subscriber, attributed to the issue. Nothing else counts: the From line is trivially forged,
so a message without a valid token changes nothing, and every outcome is the same quiet
success for the mail system (a bounce would tell a stranger who is on the list).
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass

from digest.links import TokenError
from digest.runtime import Runtime
from subscribers import lifecycle

_TOKEN = re.compile(r"unsubscribe\s+([A-Za-z0-9_\-.]{10,300})", re.I)


NOTHING = "no valid unsubscribe token: nothing changed"


@dataclass(frozen=True)
class MailOutcome:
    changed: bool
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
    """Unsubscribe the reader whose signed token the message carries; never raises on a malformed message."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        tokens = _token_in(msg)
    except Exception:  # noqa: BLE001 - anything unparseable is just not a request
        return MailOutcome(False, NOTHING)
    with rt.sessions.begin() as session:
        for token in tokens:
            try:
                claim = lifecycle.read_unsubscribe_token(rt, token)
            except TokenError:
                continue
            sub = lifecycle.subscriber_for(session, claim, lock=True)
            if sub is None:
                return MailOutcome(False, "token of an erased subscriber: nothing changed")
            changed = lifecycle.unsubscribe(session, sub, issue_id=claim.issue_id, method="mailto")
            return MailOutcome(changed, f"{sub.email}: {'unsubscribed' if changed else 'already ' + sub.status}")
    return MailOutcome(False, NOTHING)
