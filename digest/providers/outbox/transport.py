"""Local outbox: one RFC 5322 .eml file per message, the embedded default (no account, no network)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from digest.delivery.transports.base import BaseTransport, OnResult, SendResult
from digest.delivery.transports.files import safe_name
from digest.delivery.transports.smtp_wire import from_domain, message_bytes
from digest.delivery.verp import Verp, from_config
from digest.mail import OutgoingEmail, to_mime
from digest.providers.registry import Capabilities, TransportSection


class OutboxSection(TransportSection):
    """`[transport.outbox]`."""

    dir: str = "var/outbox"  # where the .eml files go, relative to the config file


# The file name is each message's idempotency key, kept as long as the file is.
CAPABILITIES = Capabilities(idempotent=True, key_lifetime_hours=None, max_batch=100, writes_files=True)


class OutboxTransport(BaseTransport):
    name = "outbox"

    def __init__(self, root: Path, verp: Verp | None = None):
        self.root = root
        self.verp = verp  # writes the Return-Path an SMTP send would have (a mail server adds it on delivery)

    def path_for(self, email: OutgoingEmail, folder: str) -> Path:
        return self.root / safe_name(folder) / f"{safe_name(email.key)}-{safe_name(email.to)}.eml"

    def send_batch(
        self, emails: list[OutgoingEmail], idempotency_key: str, folder: str, on_result: OnResult | None = None
    ) -> list[SendResult]:
        results = []
        for email in emails:
            path = self.path_for(email, folder)
            if not path.exists():  # the file name is the idempotency key of each message
                path.parent.mkdir(parents=True, exist_ok=True)
                # The message SMTP would send (the same builder), with the newline line ends .eml files have
                # always had here; the email package's own for an SMTPUTF8 address.
                domain = from_domain(email.from_addr)
                wire = message_bytes(email, domain)
                data = wire.data.replace(b"\r\n", b"\n") if wire is not None else to_mime(email, domain).as_bytes()
                if self.verp is not None:
                    data = f"Return-Path: <{self.verp.address(email.key, email.to)}>\n".encode("ascii") + data
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            results.append(SendResult(ok=True, provider_id=f"outbox:{path.name}"[:100]))
        return results


def build(config: Any) -> OutboxTransport:
    return OutboxTransport(config.outbox_dir, from_config(config))
