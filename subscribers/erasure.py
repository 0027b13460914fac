"""Erasure (`digest subscribers forget`): a person's data goes, the counts stay.

Their subscriber row, consent history, queued mail and preference changes are deleted; their
deliveries lose address and subscriber; their clicks and opens stop naming them; their copies in
the outbox are deleted; the sign-up limits keyed on their mailbox are cleared. Only the
address's hash stays, on the suppression list, so no later import or `add` brings them back by
accident. Every row is found through an index, so erasure takes milliseconds at any age.
"""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from digest.links import email_hash
from digest.reports.clicklog import unlink_clicks
from digest.runtime import Runtime
from digest.storage.db import affected_rows
from digest.storage.models import UNLINKED_DELIVERY, Delivery, RateLimitHit, Subscriber
from subscribers.addresses import AddressError, normalize_email
from subscribers.lifecycle import suppress
from subscribers.ratelimit import MAILBOX_KINDS, mailbox_key


@dataclass(frozen=True)
class ForgetResult:
    email: str
    found: bool
    deliveries_cleared: int
    files_removed: int


def forget(rt: Runtime, raw_email: str) -> ForgetResult:
    """Erase a person: their row, queued mail, address on past deliveries, outbox copies.

    Kept: the address's hash on the suppression list (so no import brings it back by
    accident) and anonymous events, clicks and opens (counts per issue stay right). Every
    row is found through an index, so erasure takes milliseconds however many issues were sent.
    """
    address = normalize_email(raw_email)
    h = email_hash(address)
    with rt.sessions.begin() as session:
        sid = session.scalar(select(Subscriber.id).where(Subscriber.email == address))
        ids = _their_deliveries(session, sid, address)
        # Their clicks and pixel opens stop naming them (digest.reports.clicklog); the deliveries lose
        # address and subscriber, so the provider's open and click stamps on them are nobody's. Counts stay.
        unlink_clicks(session, ids)
        cleared = 0
        for start in range(0, len(ids), 1000):
            cleared += affected_rows(
                session.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(ids[start : start + 1000]))
                    .values(email="", subscriber_id=None)
                    .execution_options(synchronize_session=False)
                )
            )
        if sid is not None:
            from subscribers import preferences

            preferences.erase(session, sid)
            session.execute(
                delete(Subscriber).where(Subscriber.id == sid)
            )  # outgoing mail and consent records cascade; events go anonymous
        # The sign-up limits key on the mailbox (any spelling); `a:` on the address as typed is the old key.
        keys = [f"a:{h[:40]}", *(mailbox_key(kind, address) for kind in MAILBOX_KINDS)]
        session.execute(delete(RateLimitHit).where(RateLimitHit.key.in_(keys)))
        suppress(session, address, "forgotten")
    return ForgetResult(address, sid is not None, cleared, _remove_outbox_copies(rt, address))


def _their_deliveries(session: Session, sid: int | None, address: str) -> list[int]:
    """The person's deliveries, each way through an index.

    A delivery carries its subscriber's address as it was enqueued, and an address only ever
    changed with its deliveries (0003_h17), so a delivery naming this address either is the
    subscriber's or has no subscriber left (a merged spelling's delivery of an issue the kept
    row also got): the second kind is what the partial index `ix_deliveries_unlinked_email` holds.
    """
    ids = set(session.scalars(select(Delivery.id).where(Delivery.subscriber_id == sid))) if sid is not None else set()
    unlinked = text(f"SELECT id FROM deliveries WHERE {UNLINKED_DELIVERY} AND email = :address")
    ids.update(int(i) for i in session.scalars(unlinked, {"address": address}))
    return sorted(ids)


def _remove_outbox_copies(rt: Runtime, address: str) -> int:
    """Delete the outbox files addressed to exactly `address`.

    File names are only a cheap first filter (they are mangled and may share a suffix:
    `bob-a@` ends like `a@`, `zoé` and `zoë` both become `zo_`); the To header decides.
    """
    from digest.delivery.transports.files import file_name_hint

    root = rt.outbox_dir
    if not root.is_dir():
        return 0
    hint = file_name_hint(address)
    removed = 0
    for path in root.rglob("*.eml"):
        if hint in path.name and _addressed_to(path, address):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _addressed_to(path: Path, address: str) -> bool:
    try:
        with open(path, "rb") as fh:
            headers = BytesHeaderParser(policy=email.policy.default).parse(fh)
        recipients = [a.addr_spec for a in headers["To"].addresses] if headers["To"] is not None else []
    except (OSError, ValueError, TypeError, AttributeError, IndexError):
        return False
    return any(_same_address(r, address) for r in recipients)


def _same_address(recipient: str, address: str) -> bool:
    if recipient.lower() == address:
        return True
    try:
        return normalize_email(recipient) == address
    except AddressError:
        return False
