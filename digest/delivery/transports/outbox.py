"""Local outbox: one RFC 5322 .eml file per message, the embedded default (no account, no network)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from digest.delivery.transports.base import OnResult, SendResult
from digest.mail import OutgoingEmail, domain_of, to_mime


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+-]+", "_", name)[:120]


def file_name_hint(address: str) -> str:
    """The part of an outbox file name that comes from the recipient's address.

    Names are mangled (and may be shared: `zoé` and `zoë` both give `zo_`), so this is a cheap
    first filter for finding a person's copies; the To header inside the file decides.
    """
    return _safe(address)


class OutboxTransport:
    name = "outbox"
    reports: frozenset[str] = frozenset()  # delivery events measured (files on disk: nothing comes back)
    max_in_flight = 1
    reports_each_result = False

    def __init__(self, root: Path):
        self.root = root

    def path_for(self, email: OutgoingEmail, folder: str) -> Path:
        return self.root / _safe(folder) / f"{_safe(email.key)}-{_safe(email.to)}.eml"

    def send_batch(self, emails: list[OutgoingEmail], idempotency_key: str, folder: str,
                   on_result: OnResult | None = None) -> list[SendResult]:
        results = []
        for email in emails:
            path = self.path_for(email, folder)
            if not path.exists():  # the file name is the idempotency key of each message
                path.parent.mkdir(parents=True, exist_ok=True)
                data = to_mime(email, domain_of(email.from_addr.split("<")[-1].rstrip(">"))).as_bytes()
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            results.append(SendResult(ok=True, provider_id=f"outbox:{path.name}"[:100]))
        return results

    def close(self) -> None:
        pass
