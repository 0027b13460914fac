"""Each reader's email of an issue: the issue's copy compiled once per process, built per reader.

Building is deterministic and cheap, so a batch parked for its retry drops its emails and
builds them again, byte for byte the same, when its turn comes: memory stays that of the
batches in flight.
"""

from __future__ import annotations

import threading

from sqlalchemy import select

from digest.delivery.messages import IssueMessages, Recipient
from digest.delivery.transports import capabilities_of
from digest.delivery.transports.base import Transport
from digest.links import Tokens
from digest.mail import OutgoingEmail
from digest.runtime import Runtime
from digest.storage.installation import installation_id, message_id_salt
from digest.storage.models import MAIN_EDITION_KEY, Delivery, DeliveryStatus, Edition, Issue, Subscriber


class IssueCopies:
    """The compiled copies of the issues (and editions) one process sends, shared by its threads."""

    def __init__(self, rt: Runtime, transport: Transport):
        self.rt = rt
        self.transport = transport
        self.tokens = Tokens(rt.secret_key)
        self._messages: dict[tuple[int, int | None], IssueMessages] = {}
        self._lock = threading.Lock()
        self._installation: str | None = None

    def messages_for(self, issue_id: int, edition_id: int | None = None) -> IssueMessages:
        """One edition's compiled copy (edition None: the main one), split once per process."""
        with self._lock:
            if (issue_id, edition_id) not in self._messages:
                with self.rt.sessions.begin() as session:  # its own transaction first (SQLite: one writer)
                    salt = message_id_salt(session, issue_id)
                with self.rt.sessions() as session:
                    issue = session.get(Issue, issue_id)
                    assert issue is not None
                    # Deliveries enqueued before editions (no edition) get the main one, as they always did.
                    edition = (
                        session.get(Edition, edition_id)
                        if edition_id is not None
                        else session.scalar(
                            select(Edition).where(Edition.issue_id == issue_id, Edition.key == MAIN_EDITION_KEY)
                        )
                    )
                    assert edition is not None, f"issue {issue.week} has no edition {edition_id or 'main'}"
                    self._messages[issue_id, edition_id] = IssueMessages(
                        self.rt.settings,
                        self.tokens,
                        issue,
                        edition,
                        installation=salt,
                        json_bodies=capabilities_of(self.transport).json_body,
                        tokens_name_edition=edition_id is not None,
                    )
            return self._messages[issue_id, edition_id]

    def build_all(self, issue_id: int, recipients: list[Recipient]) -> dict[int, OutgoingEmail]:
        """Each reader's copy of their own edition."""
        return {r.delivery_id: self.messages_for(issue_id, r.edition_id).build(r) for r in recipients}

    def recipients(self, issue_id: int, batch_no: int) -> list[Recipient]:
        """The batch's readers still owed the issue."""
        with self.rt.sessions() as session:
            rows = session.execute(
                select(Delivery.id, Delivery.subscriber_id, Delivery.email, Subscriber.name, Delivery.edition_id)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id, isouter=True)
                .where(
                    Delivery.issue_id == issue_id,
                    Delivery.batch_no == batch_no,
                    Delivery.status == DeliveryStatus.QUEUED,
                )
                .order_by(Delivery.id)
            ).all()
        return [Recipient(did, sid or 0, email, name, eid) for did, sid, email, name, eid in rows]

    def installation(self) -> str:
        """This installation's id, part of every idempotency key (read once)."""
        if self._installation is None:
            with self.rt.sessions.begin() as session:
                self._installation = installation_id(session)
        return self._installation
